// Benchmark: what QEMU's drop to the job user (-runas, issue: QEMU as root behind 9p passthrough) costs per job.
// One job (fresh VM → `true` inside → VM gone) of uid 0 (no -runas, the baseline) against the same job of the
// nobody user (-runas 65534:65534), restored from a snapshot template and cold booted, interleaved run by run.
//
//   bash scripts/bench.sh qemu-runas [--runs N (default 9, at least 5)]
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { QemuDriver } from '../src/vm/qemu.js';
import type { RunOnceResult } from '../src/vm/session.js';
import { trueJob } from './lib/vmJob.js';
import { buildTemplate } from '../src/vm/snapshot.js';
import type { UnixUser, VmSpec } from '../src/vm/driver.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '9' } } });
const runs = Math.max(5, Number(values.runs));
const ROOT: UnixUser = { name: 'root', uid: 0, gid: 0 };
const NOBODY: UnixUser = { name: 'nobody', uid: 65534, gid: 65534 };

const img = await buildTestImage({ kernel: 'mini' });
const stateDir = await mkdtemp(join(tmpdir(), 'wnod-bench-runas-'));
const templates = join(stateDir, 'templates');
const cold = new QemuDriver({ stateDir, accel: 'tcg' });
const warm = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: templates, restoreTimeoutMs: 60_000 } });
let seq = 0;

const spec = (image: TestImage, user: UnixUser): VmSpec => {
  const id = `runas-${process.pid}-${seq++}`;
  return { id, image: testVmImage(image), cpus: 1, memoryMB: 256, hostname: id, user, env: {}, network: { mode: 'none' }, accel: 'tcg' };
};

async function job(driver: QemuDriver, user: UnixUser, want: 'restore' | 'cold'): Promise<RunOnceResult> {
  return trueJob(driver, spec(img, user), want);
}

const built = await buildTemplate({ dir: templates, qemu: 'qemu-system-x86_64', spec: spec(img, ROOT), accel: 'tcg' });
if (built.status !== 'built') throw new Error(`template: ${JSON.stringify(built)}`);
const kinds = {
  restoreRoot: () => job(warm, ROOT, 'restore'), restoreRunas: () => job(warm, NOBODY, 'restore'),
  coldRoot: () => job(cold, ROOT, 'cold'), coldRunas: () => job(cold, NOBODY, 'cold'),
};
type Kind = keyof typeof kinds;
const loadBefore = loadavg();
for (const k of Object.keys(kinds) as Kind[]) await kinds[k](); // warm the page cache
const res: Record<Kind, RunOnceResult[]> = { restoreRoot: [], restoreRunas: [], coldRoot: [], coldRunas: [] };
for (let i = 0; i < runs; i++) {
  const order = Object.keys(kinds) as Kind[];
  for (let j = 0; j < i % order.length; j++) order.push(order.shift()!); // rotate: nobody always follows the same
  for (const k of order) res[k].push(await kinds[k]());
}
await rm(stateDir, { recursive: true, force: true });

const r = (x: number) => Math.round(x);
const summary = (xs: RunOnceResult[]) => ({ medianMs: r(median(xs.map((x) => x.timings.total))), startMedianMs: r(median(xs.map((x) => x.timings.start))),
  minMs: r(Math.min(...xs.map((x) => x.timings.total))), maxMs: r(Math.max(...xs.map((x) => x.timings.total))) });
const out = Object.fromEntries((Object.keys(res) as Kind[]).map((k) => [k, summary(res[k])]));
console.log(JSON.stringify({
  bench: 'qemu-runas', runs, kernel: 'mini', accel: 'tcg', ...out,
  restoreDeltaMs: out.restoreRunas!.medianMs - out.restoreRoot!.medianMs, coldDeltaMs: out.coldRunas!.medianMs - out.coldRoot!.medianMs,
  loadavg: { before: loadBefore.map((x) => +x.toFixed(2)), after: loadavg().map((x) => +x.toFixed(2)) },
}, null, 2));
