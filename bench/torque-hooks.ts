// Cost of the wnod Torque hooks as pbs_mom pays it (no VM engine yet: decision, ticket, records, accounting).
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/torque-hooks.ts [--n 20]   (as root, after a build)
// Each round runs, interleaved: the installed wnod prologue shim (node + config + ticket verify + nonce + job record),
// the wnod epilogue shim (record + accounting append under lock + cleanup), and two baselines with the same argv:
// an empty sh hook (pbs_mom's floor) and `node -e ''` behind the same sh shim (node's own start-up).
// Prints JSON: medians and p90 in ms, and the ratios of each hook to the node baseline.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { mkdtemp, mkdir, readFile, writeFile, chmod, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseDocument } from 'yaml';
import { loadConfig } from '../src/config/load.js';
import { signTicket, newNonce } from '../src/ticket/index.js';
import { run as installTorque } from '../src/cli/install-torque.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '20' } } });
const N = Number(values.n);
if (!Number.isSafeInteger(N) || N < 3) {
  process.stderr.write('usage: torque-hooks.ts [--n N>=3]\n');
  process.exit(2);
}
const repo = join(import.meta.dirname, '..');
const dir = await mkdtemp(join(tmpdir(), 'wnod-bench-torque-'));
await chmod(dir, 0o755);
const momPriv = join(dir, 'pbs', 'mom_priv');
await mkdir(join(momPriv, 'jobs'), { recursive: true });
const key = randomBytes(32);
await writeFile(join(dir, 'ticket.key'), key, { mode: 0o600 });
const doc = parseDocument(await readFile(join(repo, 'etc', 'wnod.yaml'), 'utf8'));
for (const [p, v] of [[['lrm', 'mom_priv'], momPriv], [['vm', 'state_dir'], join(dir, 'state')], [['log_file'], join(dir, 'log', 'wnod.log')],
  [['accounting_file'], join(dir, 'acct.jsonl')], [['ticket', 'key_file'], join(dir, 'ticket.key')]] as [string[], string][]) doc.setIn(p, v);
const cfgPath = join(dir, 'wnod.yaml');
await writeFile(cfgPath, doc.toString());
const cfg = await loadConfig(cfgPath);
const out = process.stdout.write.bind(process.stdout);
process.stdout.write = (() => true) as typeof process.stdout.write; // the installer's report is not a figure
await installTorque(['--mom-priv', momPriv, '--config', cfgPath, '--prefix', repo]);
process.stdout.write = out;
const suffix = cfg.lrm.jobClass ? `.${cfg.lrm.jobClass}` : '';
await writeFile(join(dir, 'empty.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
await writeFile(join(dir, 'node.sh'), `#!/bin/sh\nexec ${process.execPath} -e '' "$@"\n`, { mode: 0o755 });

const img = cfg.images[0]!;
const env = { PATH: '/bin:/usr/bin', LANG: 'C.UTF-8' };
const times: Record<string, number[]> = { prologue: [], epilogue: [], baselineSh: [], baselineNode: [] };

async function timed(name: string, file: string, args: string[]): Promise<void> {
  const t0 = performance.now();
  const r = await execa(file, args, { env, extendEnv: false, reject: false, stdin: 'ignore', timeout: 60_000 });
  times[name]!.push(performance.now() - t0);
  if (r.exitCode !== 0 && name !== 'baselineNode') throw new Error(`${name} exited ${r.exitCode}: ${r.stdout} ${r.stderr}`);
}

for (let i = 0; i < N; i++) {
  const id = `${1000 + i}.bench`;
  const script = join(momPriv, 'jobs', `${id}.SC`);
  const now = Math.floor(Date.now() / 1000);
  const tok = signTicket({ v: 1, image: img.id, digest: img.digest, account: 'nobody', dn: '/CN=bench', fqan: '/dteam', vo: 'dteam', cpus: 1,
    memoryMB: img.memoryMB.default, rule: 'dteam', ce: 'ce', iat: now, exp: now + 3600, nonce: newNonce() }, key);
  await writeFile(script, `#!/bin/bash\n# wnod-ticket: ${tok}\necho hi\n`, { mode: 0o500 });
  const pro = [id, 'nobody', 'nogroup', 'STDIN', 'walltime=00:05:00,nodes=1', 'wnod', '', script];
  const epi = [id, 'nobody', 'nogroup', 'STDIN', '123', 'walltime=00:05:00,nodes=1', 'cput=00:00:01,mem=0kb,vmem=0kb,walltime=00:00:05', 'wnod', '', '0', script];
  // rotate the order each round so no variant always runs first (warm caches, page cache)
  const steps: [string, () => Promise<void>][] = [
    ['baselineSh', () => timed('baselineSh', join(dir, 'empty.sh'), pro)],
    ['baselineNode', () => timed('baselineNode', join(dir, 'node.sh'), pro)],
    ['prologue', async () => { await timed('prologue', join(momPriv, `prologue${suffix}`), pro); await timed('epilogue', join(momPriv, `epilogue${suffix}`), epi); }],
  ];
  for (let k = 0; k < steps.length; k++) await steps[(k + i) % steps.length]![1]();
  await rm(script, { force: true });
}

const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.9) - 1)]!;
const fig = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, { medianMs: +median(v).toFixed(1), p90Ms: +p90(v).toFixed(1) }]));
const accounted = (await readFile(cfg.accountingFile, 'utf8')).trim().split('\n').length;
process.stdout.write(JSON.stringify({
  bench: 'torque-hooks', n: N, ...fig, accountedRecords: accounted,
  ratios: {
    prologueVsNode: +(median(times.prologue!) / median(times.baselineNode!)).toFixed(2),
    epilogueVsNode: +(median(times.epilogue!) / median(times.baselineNode!)).toFixed(2),
    prologueOverNodeMs: +(median(times.prologue!) - median(times.baselineNode!)).toFixed(1),
  },
}) + '\n');
await rm(dir, { recursive: true, force: true });
