// Benchmark: one job (fresh VM → `true` inside → VM gone) restored from a warm snapshot template, against the cold
// boot of the Debian-kernel test image (the baseline) and the cold boot of the same image, interleaved run by run
// so that all see the same host load; then 16 restored jobs at once (wall time). Prints one JSON object.
//
//   bash scripts/bench.sh snapshot-restore [--runs N (default 9, at least 7)] [--kernel mini|debian] [--memory MB] [--parallel N]
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, loadavg, cpus } from 'node:os';
import { join } from 'node:path';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { QemuDriver } from '../src/vm/qemu.js';
import type { RunOnceResult } from '../src/vm/session.js';
import { trueJob } from './lib/vmJob.js';
import { buildTemplate } from '../src/vm/snapshot.js';
import type { VmSpec } from '../src/vm/driver.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '9' }, kernel: { type: 'string', default: 'mini' }, memory: { type: 'string', default: '256' },
  parallel: { type: 'string', default: '16' },
} });
const runs = Math.max(7, Number(values.runs));
const kernel = values.kernel === 'debian' ? 'debian' : 'mini';
const memoryMB = Number(values.memory);
const parallel = Math.max(1, Number(values.parallel));

const debianImg = await buildTestImage();
const warmImg = kernel === 'mini' ? await buildTestImage({ kernel: 'mini' }) : debianImg;
const stateDir = await mkdtemp(join(tmpdir(), 'wnod-bench-snap-'));
const templates = join(stateDir, 'templates');
const cold = new QemuDriver({ stateDir, accel: 'tcg' });
const warm = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: templates, restoreTimeoutMs: 60_000 } });
let seq = 0;

const spec = (img: TestImage): VmSpec => {
  const id = `snap-${process.pid}-${seq++}`;
  return { id, image: testVmImage(img), cpus: 1, memoryMB, hostname: id, user: { name: 'root', uid: 0, gid: 0 }, env: {}, network: { mode: 'none' }, accel: 'tcg' };
};

async function job(driver: QemuDriver, img: TestImage, want: 'restore' | 'cold'): Promise<RunOnceResult> {
  return trueJob(driver, spec(img), want);
}

const t0 = performance.now();
const built = await buildTemplate({ dir: templates, qemu: 'qemu-system-x86_64', spec: spec(warmImg), accel: 'tcg' });
const buildMs = performance.now() - t0;
if (built.status !== 'built') throw new Error(`template: ${JSON.stringify(built)}`);

const loadBefore = loadavg();
await job(warm, warmImg, 'restore'); // warm the page cache
await job(cold, debianImg, 'cold');
const kinds = ['restore', 'coldDebian', ...(kernel === 'mini' ? ['coldSame'] : [])] as const;
type Kind = (typeof kinds)[number];
const res: Record<string, RunOnceResult[]> = { restore: [], coldDebian: [], coldSame: [] };
const runKind = (k: Kind) => (k === 'restore' ? job(warm, warmImg, 'restore') : job(cold, k === 'coldDebian' ? debianImg : warmImg, 'cold'));
for (let i = 0; i < runs; i++) {
  const order = [...kinds];
  for (let j = 0; j < i % order.length; j++) order.push(order.shift()!); // rotate: nobody always follows the same
  for (const k of order) res[k]!.push(await runKind(k));
}

const w0 = performance.now();
const many = await Promise.all(Array.from({ length: parallel }, () => job(warm, warmImg, 'restore')));
const wallMs = performance.now() - w0;
await rm(stateDir, { recursive: true, force: true });

const r = (x: number) => Math.round(x);
const summary = (xs: RunOnceResult[]) => {
  const pick = (s: keyof RunOnceResult['timings']) => r(median(xs.map((x) => x.timings[s])));
  return { medianMs: pick('total'), minMs: r(Math.min(...xs.map((x) => x.timings.total))), maxMs: r(Math.max(...xs.map((x) => x.timings.total))),
    steps: { prepare: pick('prepare'), start: pick('start'), ready: pick('ready'), exec: pick('exec'), destroy: pick('destroy') } };
};
const restore = summary(res.restore!);
const coldDebian = summary(res.coldDebian!);
const coldSame = res.coldSame!.length ? summary(res.coldSame!) : undefined;
process.stdout.write(JSON.stringify({
  bench: 'snapshot-restore', accel: 'tcg', runs, memoryMB, kernel, host: { cpus: cpus().length, loadavgBefore: loadBefore, loadavgAfter: loadavg() },
  template: { buildMs: r(buildMs), snapshotMB: Number((built.bytes / 1e6).toFixed(1)) },
  restore: { ...restore, targetMs: 400, meetsTarget: restore.medianMs <= 400 },
  coldDebian, ...(coldSame ? { coldSameImage: coldSame } : {}),
  ratioRestoreToColdDebian: Number((restore.medianMs / coldDebian.medianMs).toFixed(2)),
  ...(coldSame ? { ratioRestoreToColdSameImage: Number((restore.medianMs / coldSame.medianMs).toFixed(2)) } : {}),
  parallel: { jobs: parallel, wallMs: r(wallMs), medianJobMs: r(median(many.map((x) => x.timings.total))), targetMs: 6000, meetsTarget: wallMs <= 6000,
    ratioToColdDebianSerial: Number((wallMs / (coldDebian.medianMs * parallel)).toFixed(2)) },
}, null, 2) + '\n');
