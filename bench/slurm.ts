// A Slurm job through wnod against the same job bare, on a REAL Slurm (scripts/slurm-local.sh, one node of 4 cpus,
// `wnod install slurm --apply`): wall time from `sbatch` (as an unprivileged user) until slurmctld reports the job
// ended — Prolog, the job, Epilog and Slurm's own scheduling included. Series, interleaved in rotating order:
//   bare     the job in partition `batch` (no wnod hook acts on it: it runs natively)
//   restore  the job in partition `wnod` with a ticket, its VM restored from the warm snapshot template
//   cold     the same with vm.snapshots off (a cold boot of the minimal kernel)
// each one job at a time (--n rounds) and 4 at once (--rounds4 rounds), medians. Prints one JSON object.
// slurmctld starts pending jobs on its background loop's tick (about once a second, batch_sched_delay=0), so
// sbatch → allocation is 0–1 s of Slurm's own, and a series submitted right after the one before would see the same
// phase of that tick every time: each run starts after a random 0–1 s pause, and the figures are also given from
// the allocation (slurmctld's log, `sched: Allocate JobId=N`, ms) to the end, which leaves that tick out.
//   bash scripts/bench.sh slurm [--n 5] [--rounds4 3] [--accel tcg|auto|kvm] [--port 17850] [--cluster wnodbench] [--user wnodbench] [--keep]
// Targets (issue 11): restore ≤ bare + 1.0 s per job under TCG; 4 restores at once ≤ 1.5 × one restore.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { buildTestImage } from '../src/guest/testImage.js';
import { signTicket, newNonce } from '../src/ticket/index.js';
import { loadConfig } from '../src/config/load.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { ensureTestUser } from '../test/kit/pbsmom.js';
import { ensureBuilt } from '../test/kit/cli.js';
import { reachableRepo } from '../test/kit/reachable.js';
import { parseScontrolJob } from '../test/kit/slurm.js';
import { makeSlurmSite } from '../test/kit/slurmSite.js';
import { median } from './lib/stats.js';
import { readRecords } from '../src/accounting/store.js';

const { values } = parseArgs({ options: {
  n: { type: 'string', default: '5' }, rounds4: { type: 'string', default: '3' }, accel: { type: 'string', default: 'tcg' },
  port: { type: 'string', default: '17850' }, cluster: { type: 'string', default: 'wnodbench' }, user: { type: 'string', default: 'wnodbench' },
  keep: { type: 'boolean', default: false },
} });
const N = Number(values.n);
const R4 = Number(values.rounds4);
const PORT = Number(values.port);
if (!Number.isSafeInteger(N) || N < 1 || !Number.isSafeInteger(R4) || R4 < 0 || !Number.isSafeInteger(PORT) || !['tcg', 'auto', 'kvm'].includes(values.accel!)) {
  process.stderr.write('usage: slurm.ts [--n N>=1] [--rounds4 R>=0] [--accel tcg|auto|kvm] [--port P] [--cluster NAME] [--user NAME]\n');
  process.exit(2);
}
const JOB_SLEEP_S = 1; // the job's own work: wall time that emulation does not stretch
const r1 = (x: number): number => Number(x.toFixed(1));
const r3 = (x: number): number => Number(x.toFixed(3));

await ensureBuilt();
const loadBefore = loadavg().map(r3);
const img = await buildTestImage({ kernel: 'mini' }); // warm snapshots need a kernel image without a root disk
const user = await ensureTestUser(values.user!);
const dir = await mkdtemp(join(tmpdir(), 'wnod-bench-slurm-'));
await chmod(dir, 0o755); // the job user and slurmstepd (as the user) reach the hooks and the site inside
const ss = await makeSlurmSite({
  dir: join(dir, 'site'), repo: reachableRepo(), img, basePort: PORT, cluster: values.cluster!, nodes: 1, cpus: 4,
  site: { vm: { accel: values.accel, snapshots: true } },
});
const { fx, site } = ss;
const cfg = await loadConfig(site.configPath);
const work = join(dir, 'work');
await mkdir(work, { mode: 0o755 });
await chown(work, user.uid, user.gid);
const script = join(work, 'job.sh');
await writeFile(script, `#!/bin/sh\nsleep ${JOB_SLEEP_S}\necho done\n`, { mode: 0o755 });

/** Switch warm snapshots on (restore) or off (cold) in the site config: the Prolog reads it for every job. */
async function snapshots(on: boolean): Promise<void> {
  const doc = parseDocument(await readFile(site.configPath, 'utf8'));
  doc.setIn(['vm', 'snapshots'], on);
  await writeFileAtomic(site.configPath, doc.toString(), 0o644);
}

const ticket = (): string => {
  const image = cfg.images.find((i) => i.id === site.imageId)!;
  const now = Math.floor(Date.now() / 1000);
  return signTicket({ v: 1, image: image.id, digest: image.digest, account: user.name, dn: '/CN=bench', fqan: '/testvo', vo: 'testvo', cpus: 1, memoryMB: 256, rule: 'testvo', ce: 'ce.test', iat: now, exp: now + 3600, nonce: newNonce() }, site.key);
};

type Kind = 'bare' | 'restore' | 'cold';
let seq = 0;

/** Submit one job of `kind`; resolves once slurmctld reports it ended (COMPLETING counts as not yet). */
async function oneJob(kind: Kind): Promise<{ ms: number; id: string; endedAt: number }> {
  const out = join(work, `j${++seq}.out`);
  const args = kind === 'bare' ? ['-p', 'batch'] : ['-p', 'wnod', `--comment=${ticket()}`];
  const t0 = performance.now();
  const id = await fx.sbatch(user.name, [...args, '-c', '1', '--mem=256M', '-o', out, script], work);
  for (;;) {
    const f = parseScontrolJob((await execa('scontrol', ['show', 'job', '-o', id], { env: fx.env, reject: false })).stdout);
    const st = f.JobState ?? '';
    if (st && !['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING'].includes(st)) {
      const ms = performance.now() - t0;
      const endedAt = Date.now();
      if (st !== 'COMPLETED' || !(await readFile(out, 'utf8')).includes('done')) throw new Error(`${kind} job ${id} ended ${st} ${f.ExitCode}; see ${site.dir}/wnod.log`);
      return { ms, id, endedAt };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The boot mode the Prolog logged for each job id (restore, or cold). */
async function bootModes(): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const line of (await readFile(cfg.logFile, 'utf8').catch(() => '')).split('\n')) {
    if (!line.includes('"vm-ready"')) continue;
    const o = JSON.parse(line) as { job?: string; boot?: { mode?: string } };
    if (o.job) m.set(o.job, o.boot?.mode ?? 'cold');
  }
  return m;
}

/** When slurmctld allocated each job (epoch ms, from its log's `[YYYY-MM-DDTHH:MM:SS.mmm] sched: Allocate JobId=N`
 * or `sched/backfill: _start_job: Started JobId=N`). */
async function allocations(): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  ctldLog = await readFile(join(fx.dir, 'log', 'slurmctld.log'), 'utf8');
  for (const line of ctldLog.split('\n')) {
    // the main scheduler's `sched: Allocate JobId=N`, or the backfill scheduler's `… Started JobId=N` when it did
    const x = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\] [^\]]*\b(?:Allocate|Started) JobId=(\d+) /.exec(line);
    if (x) m.set(x[2]!, new Date(x[1]!).getTime()); // slurmctld logs local time, as Date reads a string without zone
  }
  return m;
}

interface Run { wall: number; per: Array<{ ms: number; id: string; endedAt: number }> }

async function run(kind: Kind, at: number): Promise<Run> {
  if (kind !== 'bare') await snapshots(kind === 'restore');
  await new Promise((r) => setTimeout(r, Math.random() * 1000)); // a random phase of slurmctld's tick
  const t0 = performance.now();
  const per = await Promise.all(Array.from({ length: at }, () => oneJob(kind)));
  return { wall: performance.now() - t0, per };
}

let ctldLog = '';
const ctldSaid = (jobIds: string[]) => ctldLog.split('\n').filter((l) => jobIds.some((id) => l.includes(`JobId=${id} `))).slice(0, 12).join('\n');

/** A run's wall time from slurmctld's first allocation of its jobs to the last job's end. */
function fromAllocation(r: Run, alloc: Map<string, number>): number {
  const starts = r.per.map((p) => alloc.get(p.id));
  if (starts.some((a) => a === undefined)) throw new Error(`no allocation logged for a job of ${r.per.map((p) => p.id).join(',')}; slurmctld said:\n${ctldSaid(r.per.map((p) => p.id))}`);
  return Math.max(...r.per.map((p) => p.endedAt)) - Math.min(...(starts as number[]));
}

const kinds: Kind[] = ['bare', 'restore', 'cold'];
const one: Record<Kind, number[]> = { bare: [], restore: [], cold: [] };
const four: Record<Kind, number[]> = { bare: [], restore: [], cold: [] };
const ids: Record<Kind, string[]> = { bare: [], restore: [], cold: [] };
const runs1: Record<Kind, Run[]> = { bare: [], restore: [], cold: [] };
const runs4: Record<Kind, Run[]> = { bare: [], restore: [], cold: [] };
try {
  // warm-up: stage the image, and have the first job's Prolog build the template; wait until a job restores
  const until = Date.now() + 600_000;
  for (;;) {
    const { per } = await run('restore', 1);
    if ((await bootModes()).get(per[0]!.id) === 'restore') break;
    if (Date.now() > until) throw new Error('no job restored from a template within 10 min');
    await new Promise((r) => setTimeout(r, 2000));
  }
  for (let i = 0; i < N; i++) {
    for (let k = 0; k < kinds.length; k++) {
      const kind = kinds[(i + k) % kinds.length]!;
      const r = await run(kind, 1);
      runs1[kind].push(r);
      one[kind].push(r.wall);
      ids[kind].push(...r.per.map((p) => p.id));
    }
  }
  for (let i = 0; i < R4; i++) {
    for (let k = 0; k < kinds.length; k++) {
      const kind = kinds[(i + k) % kinds.length]!;
      const r = await run(kind, 4);
      runs4[kind].push(r);
      four[kind].push(r.wall);
      ids[kind].push(...r.per.map((p) => p.id));
    }
  }
  // what each wnod job really got: a restore series that cold booted would be measured under a false name
  const modes = await bootModes();
  const booted = (k: Kind) => Object.fromEntries(['restore', 'cold'].map((m) => [m, ids[k].filter((id) => modes.get(id) === m).length]));
  // where a wnod job's time goes (the Epilog's accounting record): VM start in the Prolog, the run, the teardown
  const recs = new Map((await readRecords(cfg.accountingFile)).records.map((r) => [r.jobId, r]));
  const parts = (k: Kind) => {
    const rs = ids[k].map((id) => recs.get(id)).filter((r) => r !== undefined);
    return rs.length ? { boot_s: r3(median(rs.map((r) => r.bootS))), run_s: r3(median(rs.map((r) => r.runS))), teardown_s: r3(median(rs.map((r) => r.teardownS))) } : null;
  };
  const m1 = (k: Kind) => median(one[k]);
  const m4 = (k: Kind) => (R4 ? median(four[k]) : NaN);
  const alloc = await allocations();
  const a1 = Object.fromEntries(kinds.map((k) => [k, runs1[k].map((r) => fromAllocation(r, alloc))])) as Record<Kind, number[]>;
  const a4 = Object.fromEntries(kinds.map((k) => [k, runs4[k].map((r) => fromAllocation(r, alloc))])) as Record<Kind, number[]>;
  const ma1 = (k: Kind) => median(a1[k]);
  const ma4 = (k: Kind) => (R4 ? median(a4[k]) : NaN);
  process.stdout.write(JSON.stringify({
    bench: 'slurm', accel: cfg.vm.accel, cores: availableParallelism(), n: N, rounds4: R4, job_sleep_s: JOB_SLEEP_S,
    load_before: loadBefore, load_after: loadavg().map(r3),
    one: {
      bare_ms: r1(m1('bare')), restore_ms: r1(m1('restore')), cold_ms: r1(m1('cold')),
      restore_overhead_ms: r1(m1('restore') - m1('bare')), cold_overhead_ms: r1(m1('cold') - m1('bare')),
      ratio_restore_to_bare: r3(m1('restore') / m1('bare')), ratio_cold_to_bare: r3(m1('cold') / m1('bare')),
    },
    // the same jobs from their allocation to their end: Slurm's scheduling tick left out
    from_allocation: {
      bare_ms: r1(ma1('bare')), restore_ms: r1(ma1('restore')), cold_ms: r1(ma1('cold')),
      restore_overhead_ms: r1(ma1('restore') - ma1('bare')), cold_overhead_ms: r1(ma1('cold') - ma1('bare')),
      four: R4 ? { bare_wall_ms: r1(ma4('bare')), restore_wall_ms: r1(ma4('restore')), cold_wall_ms: r1(ma4('cold')),
        ratio_restore4_to_restore1: r3(ma4('restore') / ma1('restore')) } : null,
      raw_ms: { one: Object.fromEntries(kinds.map((k) => [k, a1[k].map(r1)])), four: Object.fromEntries(kinds.map((k) => [k, a4[k].map(r1)])) },
    },
    four: R4 ? {
      bare_wall_ms: r1(m4('bare')), restore_wall_ms: r1(m4('restore')), cold_wall_ms: r1(m4('cold')),
      ratio_restore4_to_restore1: r3(m4('restore') / m1('restore')), ratio_cold4_to_cold1: r3(m4('cold') / m1('cold')),
      ratio_bare4_to_bare1: r3(m4('bare') / m1('bare')),
    } : null,
    targets: {
      restore_within_bare_plus_1s: m1('restore') - m1('bare') <= 1000,
      restore4_within_1_5x_one: R4 ? m4('restore') / m1('restore') <= 1.5 : null,
      from_allocation: {
        restore_within_bare_plus_1s: ma1('restore') - ma1('bare') <= 1000,
        restore4_within_1_5x_one: R4 ? ma4('restore') / ma1('restore') <= 1.5 : null,
      },
    },
    boots: { restore_series: booted('restore'), cold_series: booted('cold') },
    accounted: { restore: parts('restore'), cold: parts('cold') },
    raw_ms: { one: Object.fromEntries(kinds.map((k) => [k, one[k].map(r1)])), four: Object.fromEntries(kinds.map((k) => [k, four[k].map(r1)])) },
  }) + '\n');
} finally {
  await ss.stop();
  if (values.keep) process.stderr.write(`slurm bench: kept ${dir} (the root log: ${cfg.logFile})\n`);
  else await rm(dir, { recursive: true, force: true });
}
