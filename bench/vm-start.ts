// Benchmark: one job = fresh VM → `true` inside → destroyed, with the QEMU direct driver and the builder's test image
// (Debian cloud kernel, TCG unless --accel kvm). Prints one JSON object.
//
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/vm-start.ts
//   options: --runs N (default 10) --concurrency 1,4,16 --accel tcg|kvm --state-dir DIR
//
// Baseline in the same run, interleaved with the VM jobs: a bare QEMU start → exit of the same kernel with no
// initramfs (it panics at once and -no-reboot ends QEMU), i.e. what QEMU + kernel entry cost on this host right now;
// the ratio shows how much of a job start is ours (init, modules, agent, protocol, teardown) rather than the host's.
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, loadavg, cpus } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { execa } from 'execa';
import { buildTestImage, testVmImage } from '../src/guest/testImage.js';
import { QemuDriver } from '../src/vm/qemu.js';
import { runOnce, type RunOnceResult } from '../src/vm/session.js';
import { kernelCmdline, tscKhzFromCpuinfo } from '../src/vm/qemuArgs.js';
import { readFile } from 'node:fs/promises';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '1,4,16' },
  accel: { type: 'string', default: 'tcg' }, 'state-dir': { type: 'string' },
} });
const runs = Number(values.runs);
const levels = values.concurrency!.split(',').map(Number);
const accel = values.accel === 'kvm' ? 'kvm' : 'tcg';

const round = (x: number) => Math.round(x);
const sink = () => new Writable({ write(_c, _e, cb) { cb(); } });

const img = await buildTestImage();
const stateDir = values['state-dir'] ?? await mkdtemp(join(tmpdir(), 'wnod-bench-'));
const driver = new QemuDriver({ stateDir, accel });
let seq = 0;

async function job(): Promise<RunOnceResult> {
  const id = `bench-${process.pid}-${seq++}`;
  const r = await runOnce(driver, {
    id, image: testVmImage(img), cpus: 1, memoryMB: 256, hostname: id, user: { name: 'root', uid: 0, gid: 0 },
    env: {}, network: { mode: 'none' },
  }, { argv: ['/bin/true'], stdout: sink(), stderr: sink(), readyTimeoutMs: 300_000 });
  if (r.exitCode !== 0) throw new Error(`job ${id}: exit ${r.exitCode}`);
  return r;
}

const khz = tscKhzFromCpuinfo(await readFile('/proc/cpuinfo', 'utf8'));
/** Baseline: QEMU + the same kernel, no initramfs → immediate panic → QEMU exits (panic=-1, -no-reboot). */
async function baseline(): Promise<number> {
  const t0 = performance.now();
  await execa('qemu-system-x86_64', ['-M', 'microvm,x-option-roms=off', '-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none',
    '-accel', accel, '-m', '256M', '-kernel', img.kernel, '-append', kernelCmdline(accel, khz, 'root=/dev/nonexistent rootwait=0'), '-serial', 'none'],
  { timeout: 120_000, reject: false });
  return performance.now() - t0;
}

const out: Record<string, unknown> = {
  bench: 'vm-start', accel, image: { key: img.key, kernel: img.kernelPackage }, host: { cpus: cpus().length, loadavgBefore: loadavg() },
};

// single jobs, interleaved with the baseline
const single: RunOnceResult[] = [];
const base: number[] = [];
for (let i = 0; i < runs; i++) {
  base.push(await baseline());
  single.push(await job());
}
const pick = (k: keyof RunOnceResult['timings']) => round(median(single.map((r) => r.timings[k])));
out.single = {
  runs, medianMs: pick('total'), minMs: round(Math.min(...single.map((r) => r.timings.total))), maxMs: round(Math.max(...single.map((r) => r.timings.total))),
  steps: { prepare: pick('prepare'), start: pick('start'), ready: pick('ready'), exec: pick('exec'), destroy: pick('destroy') },
  baselineKernelPanicMedianMs: round(median(base)), ratioToBaseline: Number((median(single.map((r) => r.timings.total)) / median(base)).toFixed(2)),
};

// concurrent jobs: wall time until all are done, and the teardown times
const conc: Record<string, unknown> = {};
for (const n of levels.filter((x) => x > 1)) {
  const t0 = performance.now();
  const rs = await Promise.all(Array.from({ length: n }, () => job()));
  conc[String(n)] = { wallMs: round(performance.now() - t0), medianJobMs: round(median(rs.map((r) => r.timings.total))),
    medianDestroyMs: round(median(rs.map((r) => r.timings.destroy))) };
}
out.concurrent = conc;
out.host = { ...(out.host as object), loadavgAfter: loadavg() };
if (!values['state-dir']) await rm(stateDir, { recursive: true, force: true });
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
