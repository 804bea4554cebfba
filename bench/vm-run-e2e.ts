// `wnod vm run --test-image -- true` end to end (a fresh `node` process each time, as a user types it), printing JSON.
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/vm-run-e2e.ts [--rounds 5] [--cache-dir DIR]
// Variants, interleaved round by round (the order rotates each round):
//   warm   as typed: the VM restored from the warm template of the image and shape (the default of `vm run`)
//   cold   `--cold`: the VM cold boots (Debian's cloud kernel under TCG), as every run did before
//   node   `wnod vm --help`: the CLI's start-up alone (the floor of any wnod command)
// A warm-up run before the rounds (not counted) builds the test image if need be and then the template. The
// template lives in a state dir of the bench's own. Root only.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { DEFAULT_TEST_IMAGE_CACHE } from '../src/guest/testImage.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, 'cache-dir': { type: 'string', default: DEFAULT_TEST_IMAGE_CACHE } } });
const ROUNDS = Number(values.rounds);
if (!Number.isSafeInteger(ROUNDS) || ROUNDS < 1) {
  process.stderr.write('usage: vm-run-e2e.ts [--rounds R] [--cache-dir DIR]\n');
  process.exit(2);
}
const cacheDir = values['cache-dir']!;
const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const stateDir = await mkdtemp(join(tmpdir(), 'wnod-bench-vmrun-'));
const vmRun = ['vm', 'run', '--test-image', '--cache-dir', cacheDir, '--state-dir', stateDir, '--', 'true'];
const vmRunCold = ['vm', 'run', '--test-image', '--cache-dir', cacheDir, '--state-dir', stateDir, '--cold', '--', 'true'];

async function timed(args: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await execa(process.execPath, [cli, ...args], { reject: false, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - t0;
  if (r.exitCode !== 0) throw new Error(`wnod ${args.join(' ')}: exit ${r.exitCode}: ${String(r.stderr).slice(-500)}`);
  return ms;
}

type Variant = 'warm' | 'cold' | 'node';
const variants: Record<Variant, () => Promise<number>> = {
  warm: () => timed(vmRun),
  cold: () => timed(vmRunCold),
  node: () => timed(['vm', '--help']),
};
const names = Object.keys(variants) as Variant[];
const samples: Record<Variant, number[]> = { warm: [], cold: [], node: [] };
const load: number[] = [loadavg()[0]!];

await timed(vmRun); // builds the image if need be, then the template
for (let r = 0; r < ROUNDS; r++) {
  const order = names.map((_, k) => names[(k + r) % names.length]!);
  for (const v of order) samples[v].push(await variants[v]());
  load.push(loadavg()[0]!);
}
await rm(stateDir, { recursive: true, force: true });
const med = Object.fromEntries(names.map((v) => [v, Math.round(median(samples[v]))])) as Record<Variant, number>;
const TARGET_MS = 2000;
process.stdout.write(JSON.stringify({
  bench: 'vm-run-e2e', command: `wnod ${vmRun.join(' ')}`, rounds: ROUNDS, medianMs: med,
  ratio: { warm_vs_cold: Number((med.warm / med.cold).toFixed(3)), warm_vs_node: Number((med.warm / med.node).toFixed(3)) },
  savedMs: med.cold - med.warm,
  load: { start: load[0], end: load.at(-1), median: Number(median(load).toFixed(2)) },
  target: { warmMs: TARGET_MS, met: med.warm <= TARGET_MS },
  samplesMs: Object.fromEntries(names.map((v) => [v, samples[v].map(Math.round)])),
}, null, 2) + '\n');
