// Leases: `wnod lease create` → ssh answers `hostname` inside the lease's VM, as a user sees it (the CLI as an
// unprivileged user, a fake Torque server running the pilot through the pbs_mom harness and the installed hooks,
// a real VM of the ssh test image under TCG). Baseline, interleaved in the same run: a plain batch job that runs
// `hostname` in its VM (qsub → job ended) through the same batch system and hooks.
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/lease.ts [--n 5] [--burst 8]
// (as root, after a build; or `bash scripts/bench.sh lease`). Prints one JSON object; times in seconds, medians.
// The seed's figures on hardware virtualisation: 8 s for 1 workspace, 12 s for 16.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeLeaseSite, type LeaseSite } from '../test/kit/leaseSite.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '5' }, burst: { type: 'string', default: '8' } } });
const N = Number(values.n);
const BURST = Number(values.burst);
if (!Number.isSafeInteger(N) || N < 1 || !Number.isSafeInteger(BURST) || BURST < 0) {
  process.stderr.write('usage: lease.ts [--n N>=1] [--burst B>=0]\n');
  process.exit(2);
}
const r2 = (x: number): number => Number(x.toFixed(2));

const s: LeaseSite = await makeLeaseSite({ userName: 'wnodbench' });
const work = join(s.dir, 'jobs');
await mkdir(work);
await chown(work, s.user.uid, s.user.gid);

/** create → ssh hostname answered; the lease is deleted afterwards (not timed). */
async function oneLease(): Promise<{ s: number; createS: number }> {
  const t0 = performance.now();
  const r = await s.lease(['create', '--image', 'vm_test', '--ssh-key', s.pubKey, '--json', '--wait', '600']);
  const l = JSON.parse(r.stdout) as { id: string; state: string; address?: string; hostKey?: string };
  const t1 = performance.now();
  if (l.state !== 'ready') throw new Error(`lease ${l.id} is ${l.state}: ${r.stdout} ${r.stderr}`);
  const ssh = await s.ssh(l.address!, l.hostKey!, 'hostname');
  if (ssh.exitCode !== 0 || !/^vm-/.test(ssh.stdout)) throw new Error(`ssh to ${l.address} failed: ${ssh.stderr}`);
  const t2 = performance.now();
  await deleteAll([l.id]);
  return { s: (t2 - t0) / 1000, createS: (t1 - t0) / 1000 };
}

async function deleteAll(ids: string[]): Promise<void> {
  await Promise.all(ids.map(async (id) => {
    const d = await s.lease(['delete', id, '--json']);
    if (JSON.parse(d.stdout).state !== 'released') throw new Error(`delete ${id}: ${d.stdout}`);
  }));
}

/** qsub a plain job running hostname in its VM; qsub → the job ended (epilogue done). */
async function oneJob(i: number): Promise<number> {
  const dir = join(work, `j${i}`);
  await mkdir(dir);
  await chown(dir, s.user.uid, s.user.gid);
  const script = join(dir, 'job.sh');
  await writeFile(script, '#!/bin/sh\nhostname\n', { mode: 0o644 });
  const t0 = performance.now();
  const q = await s.asUser(join(s.lrm.binDir, 'qsub'), ['-l', 'walltime=00:10:00,nodes=1:ppn=1,mem=256mb', '-T', 'wnod', '-q', 'wnod', script], 30_000, dir);
  const id = q.stdout.trim();
  for (let k = 0; k < 100 && !s.lrm.ids().includes(id); k++) await new Promise((r) => setTimeout(r, 20));
  const res = await s.lrm.wait(id);
  if (res?.exitStatus !== 0 || !/^vm-/.test(res.stdout)) throw new Error(`job ${id}: ${JSON.stringify(res)}`);
  return (performance.now() - t0) / 1000;
}

try {
  const lease: number[] = [];
  const create: number[] = [];
  const job: number[] = [];
  let n = 0;
  await oneLease(); // warm-up: page cache, compiled config
  for (let i = 0; i < N; i++) {
    // alternate which goes first within a round
    const order = i % 2 === 0 ? ['lease', 'job'] : ['job', 'lease'];
    for (const what of order) {
      if (what === 'lease') { const r = await oneLease(); lease.push(r.s); create.push(r.createS); } else job.push(await oneJob(n++));
    }
  }
  let burst: Record<string, unknown> = {};
  if (BURST > 0) {
    const t0 = performance.now();
    const ls = await Promise.all(Array.from({ length: BURST }, async () => {
      const r = await s.lease(['create', '--image', 'vm_test', '--ssh-key', s.pubKey, '--json', '--wait', '900'], 1_200_000);
      const l = JSON.parse(r.stdout) as { id: string; state: string; address?: string; hostKey?: string };
      if (l.state !== 'ready') throw new Error(`burst lease ${l.id} is ${l.state}`);
      const ssh = await s.ssh(l.address!, l.hostKey!, 'hostname');
      if (ssh.exitCode !== 0) throw new Error(`ssh ${l.address}: ${ssh.stderr}`);
      return { id: l.id, s: (performance.now() - t0) / 1000 };
    }));
    const wall = (performance.now() - t0) / 1000;
    await deleteAll(ls.map((l) => l.id));
    const t1 = performance.now();
    await Promise.all(Array.from({ length: BURST }, () => oneJob(n++)));
    const jobWall = (performance.now() - t1) / 1000;
    burst = { [`leases_${BURST}_wall_s`]: r2(wall), [`leases_${BURST}_each_median_s`]: r2(median(ls.map((l) => l.s))), [`jobs_${BURST}_wall_s`]: r2(jobWall) };
  }
  process.stdout.write(JSON.stringify({
    bench: 'lease', n: N, accel: 'tcg',
    lease_create_to_ssh_median_s: r2(median(lease)), lease_create_ready_median_s: r2(median(create)), vm_job_median_s: r2(median(job)),
    lease_over_job_s: r2(median(lease) - median(job)),
    samples: { lease: lease.map(r2), job: job.map(r2) },
    ...burst,
  }) + '\n');
} finally {
  await s.close();
  await rm(s.registry, { recursive: true, force: true });
}
