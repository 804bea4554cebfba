// Benchmark: host memory per idle VM, read from each QEMU's /proc/<pid>/smaps_rollup (PSS: the pages it shares with
// other processes count by their share, so summed over VMs it is what they really take). 256 MB guests of the test
// image (mini kernel), TCG: a cold-booted VM alone (the baseline), a VM restored from the warm snapshot template
// alone, interleaved round by round, then N restored VMs up at once. Each VM is read once its agent has answered and
// the guest has idled for --settle seconds; every VM is destroyed. Prints one JSON object. The split (anon, file,
// shmem) says where the memory sits: a cold VM's guest RAM is a shared memfd (shmem), a restored clone's is private
// anonymous memory (src/vm/qemuArgs.ts).
//
//   bash scripts/bench.sh vm-memory [--n 16] [--rounds 3] [--memory 256] [--settle 3]
import { parseArgs } from 'node:util';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir, loadavg, cpus } from 'node:os';
import { join } from 'node:path';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { QemuDriver } from '../src/vm/qemu.js';
import { buildTemplate } from '../src/vm/snapshot.js';
import type { VmSpec, VmState } from '../src/vm/driver.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: {
  n: { type: 'string', default: '16' }, rounds: { type: 'string', default: '3' }, memory: { type: 'string', default: '256' },
  settle: { type: 'string', default: '3' },
} });
const wantN = Math.max(1, Number(values.n));
const rounds = Math.max(1, Number(values.rounds));
const memoryMB = Number(values.memory);
const settleMs = Math.max(0, Number(values.settle)) * 1000;

/** The kB fields of smaps_rollup (Rss, Pss, Pss_Anon, Pss_File, Pss_Shmem, …), in MB. */
async function rollup(pid: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await readFile(`/proc/${pid}/smaps_rollup`, 'utf8')).split('\n')) {
    const m = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]) / 1024;
  }
  if (out.Pss === undefined || out.Rss === undefined) throw new Error(`pid ${pid}: no Pss/Rss in smaps_rollup`);
  return out;
}
/** MemAvailable of the host, MB: its drop while VMs are up cross-checks the summed PSS. */
async function memAvailableMB(): Promise<number> {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(await readFile('/proc/meminfo', 'utf8'));
  return Number(m![1]) / 1024;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const img = await buildTestImage({ kernel: 'mini' });
const stateDir = await mkdtemp(join(tmpdir(), 'wps-vmmem-'));
const templates = join(stateDir, 'templates');
const cold = new QemuDriver({ stateDir, accel: 'tcg' });
const warm = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: templates, restoreTimeoutMs: 300_000 } });
let seq = 0;
const spec = (image: TestImage): VmSpec => {
  const id = `mem-${process.pid}-${seq++}`;
  return { id, image: testVmImage(image), cpus: 1, memoryMB, hostname: id, user: { name: 'root', uid: 0, gid: 0 }, env: {}, network: { mode: 'none' }, accel: 'tcg' };
};

const up = new Set<{ d: QemuDriver; s: VmState }>();
/** Boot one VM the `want` way and leave it running; throws (after destroying it) if it took the other path. */
async function boot(d: QemuDriver, want: 'restore' | 'cold'): Promise<{ d: QemuDriver; s: VmState }> {
  const s = await d.prepare(spec(img));
  const vm = { d, s };
  up.add(vm);
  await d.start(s);
  await d.waitReady(s, 300_000);
  const got = s.extra?.boot ?? 'cold';
  if (got !== want) throw new Error(`VM ${s.id}: wanted ${want}, got ${got} (${s.extra?.coldReason ?? ''})`);
  return vm;
}
async function destroy(vm: { d: QemuDriver; s: VmState }): Promise<void> {
  await vm.d.destroy(vm.s);
  up.delete(vm);
}
type Sample = Record<string, number>;
/** One VM alone: boot, idle, read, destroy. */
async function alone(d: QemuDriver, want: 'restore' | 'cold'): Promise<Sample> {
  const vm = await boot(d, want);
  try {
    await sleep(settleMs);
    return await rollup(vm.s.pids.qemu!.pid);
  } finally {
    await destroy(vm);
  }
}

const r1 = (x: number) => Number(x.toFixed(1));
const summary = (xs: Sample[]) => ({
  vms: xs.length, pssMedianMB: r1(median(xs.map((x) => x.Pss!))), rssMedianMB: r1(median(xs.map((x) => x.Rss!))),
  pssAnonMedianMB: xs[0]!.Pss_Anon === undefined ? undefined : r1(median(xs.map((x) => x.Pss_Anon!))),
  pssFileMedianMB: xs[0]!.Pss_File === undefined ? undefined : r1(median(xs.map((x) => x.Pss_File!))),
  pssShmemMedianMB: xs[0]!.Pss_Shmem === undefined ? undefined : r1(median(xs.map((x) => x.Pss_Shmem!))),
  pssTotalMB: r1(xs.reduce((a, x) => a + x.Pss!, 0)), rssTotalMB: r1(xs.reduce((a, x) => a + x.Rss!, 0)),
});

const loadBefore = loadavg();
const result: Record<string, unknown> = { bench: 'vm-memory', accel: 'tcg', memoryMB, kernel: 'mini', settleMs, rounds };
try {
  const built = await buildTemplate({ dir: templates, qemu: 'qemu-system-x86_64', spec: spec(img), accel: 'tcg' });
  if (built.status !== 'built') throw new Error(`template: ${JSON.stringify(built)}`);
  result.template = { snapshotMB: r1(built.bytes / 1e6) };

  const single: Record<'cold' | 'restore', Sample[]> = { cold: [], restore: [] };
  for (let i = 0; i < rounds; i++) {
    for (const k of (i % 2 ? ['restore', 'cold'] : ['cold', 'restore']) as Array<'cold' | 'restore'>) {
      single[k].push(await alone(k === 'cold' ? cold : warm, k));
    }
  }

  // N restored at once, as many as the host's memory holds with a guest's full RAM each and 1 GB to spare
  const availBefore = await memAvailableMB();
  const fits = Math.max(1, Math.floor((availBefore - 1024) / (memoryMB + 64)));
  const n = Math.min(wantN, fits);
  const settled = await Promise.allSettled(Array.from({ length: n }, () => boot(warm, 'restore')));
  const failed = settled.filter((x) => x.status === 'rejected').map((x) => String((x as PromiseRejectedResult).reason));
  if (failed.length) throw new Error(`${failed.length} of ${n} restores failed: ${failed[0]}`);
  const vms = settled.map((x) => (x as PromiseFulfilledResult<{ d: QemuDriver; s: VmState }>).value);
  await sleep(settleMs);
  const many = await Promise.all(vms.map((vm) => rollup(vm.s.pids.qemu!.pid)));
  const availUp = await memAvailableMB();
  await Promise.all(vms.map(destroy));

  const c = summary(single.cold);
  const r = summary(single.restore);
  const m = summary(many);
  Object.assign(result, {
    coldAlone: c, restoredAlone: r,
    restoredAtOnce: { ...m, requested: wantN, ...(n < wantN ? { limitedTo: n, why: `MemAvailable ${Math.round(availBefore)} MB holds ${fits} guests of ${memoryMB} MB` } : {}),
      hostMemAvailableDropMB: Math.round(availBefore - availUp) },
    ratioRestoredToColdPss: Number((r.pssMedianMB / c.pssMedianMB).toFixed(2)),
    ratioRestoredAtOnceToColdPss: Number((m.pssMedianMB / c.pssMedianMB).toFixed(2)),
    targetPssMB: 40, meetsTarget: m.pssMedianMB <= 40 && r.pssMedianMB <= 40,
  });
} finally {
  for (const vm of [...up]) await destroy(vm).catch(() => {});
  await rm(stateDir, { recursive: true, force: true });
}
result.host = { cpus: cpus().length, loadavgBefore: loadBefore.map(r1), loadavgAfter: loadavg().map(r1) };
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
