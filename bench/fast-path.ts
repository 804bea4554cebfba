// Benchmark: the fast path of one job = fresh VM → `true` inside → VM gone (as bench/vm-start.ts measures it), with
// the test image on Debian's cloud kernel (the baseline) and on wnod's minimal kernel, interleaved run by run so
// both see the same host load. Prints one JSON object with medians and the ratio mini/Debian.
//
//   bash scripts/bench.sh fast-path [--runs N (default 9, at least 7)] [--accel tcg|kvm] [--memory MB]
import { parseArgs } from 'node:util';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir, loadavg, cpus } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { QemuDriver } from '../src/vm/qemu.js';
import { runOnce, type RunOnceResult } from '../src/vm/session.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '9' }, accel: { type: 'string', default: 'tcg' }, memory: { type: 'string', default: '256' },
} });
const runs = Math.max(7, Number(values.runs));
const accel = values.accel === 'kvm' ? 'kvm' : 'tcg';
const memoryMB = Number(values.memory);

const sink = () => new Writable({ write(_c, _e, cb) { cb(); } });
const images = { debian: await buildTestImage(), mini: await buildTestImage({ kernel: 'mini' }) };
const stateDir = await mkdtemp(join(tmpdir(), 'wnod-bench-'));
const driver = new QemuDriver({ stateDir, accel });
let seq = 0;

async function job(img: TestImage): Promise<RunOnceResult> {
  const id = `fast-${process.pid}-${seq++}`;
  const r = await runOnce(driver, {
    id, image: testVmImage(img), cpus: 1, memoryMB, hostname: id, user: { name: 'root', uid: 0, gid: 0 }, env: {}, network: { mode: 'none' },
  }, { argv: ['/bin/true'], stdout: sink(), stderr: sink(), readyTimeoutMs: 300_000 });
  if (r.exitCode !== 0) throw new Error(`job ${id} (${img.kernelFlavor}): exit ${r.exitCode}`);
  return r;
}

const loadBefore = loadavg();
await job(images.mini); // warm the page cache for both kernels before measuring
await job(images.debian);
const res: Record<'debian' | 'mini', RunOnceResult[]> = { debian: [], mini: [] };
for (let i = 0; i < runs; i++) {
  // alternate which goes first, so neither always follows the other's teardown
  const order = i % 2 ? (['mini', 'debian'] as const) : (['debian', 'mini'] as const);
  for (const k of order) res[k].push(await job(images[k]));
}
await rm(stateDir, { recursive: true, force: true });

const r = (x: number) => Math.round(x);
const summary = async (k: 'debian' | 'mini') => {
  const xs = res[k];
  const pick = (s: keyof RunOnceResult['timings']) => r(median(xs.map((x) => x.timings[s])));
  return { image: images[k].kernelPackage, vmlinuxBytes: (await stat(images[k].kernel)).size, medianMs: pick('total'),
    minMs: r(Math.min(...xs.map((x) => x.timings.total))), maxMs: r(Math.max(...xs.map((x) => x.timings.total))),
    steps: { prepare: pick('prepare'), start: pick('start'), ready: pick('ready'), exec: pick('exec'), destroy: pick('destroy') } };
};
const debian = await summary('debian');
const mini = await summary('mini');
process.stdout.write(JSON.stringify({
  bench: 'fast-path', accel, runs, memoryMB, host: { cpus: cpus().length, loadavgBefore: loadBefore, loadavgAfter: loadavg() },
  coldBoot: { debian, mini, ratioMiniToDebian: Number((mini.medianMs / debian.medianMs).toFixed(2)), targetMs: 1000,
    miniMeetsTarget: mini.medianMs <= 1000 },
}, null, 2) + '\n');
