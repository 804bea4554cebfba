// End-to-end virtual cluster (issue 13): wall time from `sbatch -N n` until the job's script in vm0 has run a command
// through ssh on EVERY VM of its cluster (the runner has already waited for each VM's ssh banner), against the same
// number of single-VM jobs submitted at once in the same run (until every one's script has started). A REAL Slurm
// whose slurmd are separate network stacks (test/kit/slurmNetnsNodes.ts, up to 16): one VM per node per job, so the
// cluster sizes are node counts (16 VMs of one job take 16 nodes). Interleaved rounds, medians, load average;
// host memory per VM: PSS of each QEMU (/proc/<pid>/smaps_rollup) while the cluster is up. Prints one JSON object.
//   bash scripts/bench.sh cluster [--sizes 1,3] [--nodes 3] [--rounds 3] [--port 17660] [--net 66] [--tag cb2] [--user wcbbench]
// Targets (issue 13): 16 VMs ready ≤ 12 s under TCG, 1 VM ≤ 2 s.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { loadavg, tmpdir } from 'node:os';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildSshTestImage } from '../test/kit/sshImage.js';
import { ensureTestUser } from '../test/kit/pbsmom.js';
import { ensureBuilt } from '../test/kit/cli.js';
import { reachableRepo } from '../test/kit/reachable.js';
import { hypervisorsOf } from '../test/kit/hypervisors.js';
import { makeSlurmSite } from '../test/kit/slurmSite.js';
import { netnsNodes } from '../test/kit/slurmNetnsNodes.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: {
  sizes: { type: 'string', default: '1,3' }, nodes: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' },
  port: { type: 'string', default: '17660' }, net: { type: 'string', default: '66' }, tag: { type: 'string', default: 'cb2' },
  user: { type: 'string', default: 'wcbbench' },
} });
const NODES = Number(values.nodes);
const ROUNDS = Number(values.rounds);
const SIZES = values.sizes!.split(',').map(Number);
if (!Number.isInteger(NODES) || NODES < 1 || NODES > 16 || !Number.isInteger(ROUNDS) || ROUNDS < 1 || SIZES.some((s) => !Number.isInteger(s) || s < 1 || s > NODES)) {
  process.stderr.write('usage: cluster.ts [--sizes 1,3 (each ≤ nodes)] [--nodes 1..16] [--rounds R]\n');
  process.exit(2);
}
const r2 = (x: number): number => Number(x.toFixed(2));

await ensureBuilt();
const loadBefore = loadavg().map(r2);
const img = await buildSshTestImage({ kernel: 'mini' });
const user = await ensureTestUser(values.user!);
const dir = await mkdtemp(join(tmpdir(), 'wcb-bench-'));
await chmod(dir, 0o755);
const nodes = await netnsNodes(dir, values.tag!, Number(values.net), NODES);
const names = Array.from({ length: NODES }, (_, i) => `n${i + 1}`);
const secret = join(dir, 'jobnet.secret');
await writeFile(secret, randomBytes(32), { mode: 0o600 });
const ss = await makeSlurmSite({
  dir: join(dir, 'site'), repo: reachableRepo(), img, basePort: Number(values.port), cluster: 'wcbb', nodes: NODES, cpus: 2, net: nodes.net,
  site: {
    rules: [{ name: 'clusters', group: user.group, images: ['vm_test'], default: 'vm_test' }], policy: { no_ticket: 'group-default' },
    vm: { state_dir: join(nodes.sharedPath, 'state'), ready_timeout_s: 240 },
    sections: { job_network: {
      nodes: Object.fromEntries(names.map((n, i) => [n, nodes.underlay[i]])), vni: { first: 12000, count: 1000 }, private_range: '10.244.0.0/16',
      secret_file: secret, claim_dir: join(nodes.sharedPath, 'claims'),
    } },
  },
});
const { fx } = ss;
const work = join(dir, 'work');
await mkdir(work, { mode: 0o755 });
await chown(work, user.uid, user.gid);
const perNode = ['-p', 'wnod', '--ntasks-per-node', '1', '--cpus-per-task', '1', '--mem', '256M'];
// the script: ssh to every VM of the cluster (none for a single VM), then say so and hold the VMs until cancelled
const script = join(work, 'job.sh');
await writeFile(script, '#!/bin/sh\nfor h in $(cat "$WNOD_NODEFILE" 2>/dev/null); do [ "$h" = "$(hostname)" ] || ssh "$h" true || echo "ssh-failed $h"; done\necho all-ready\nwhile :; do sleep 1; done\n', { mode: 0o755 });
await chown(script, user.uid, user.gid);

let seq = 0;
/** Submit jobs at once (each `nodeCount` nodes), wait until every one's script printed all-ready: seconds, PSS per VM. */
async function round(jobs: number, nodeCount: number): Promise<{ s: number; pssMB: number[] }> {
  const outs = Array.from({ length: jobs }, () => join(work, `o${seq++}.out`));
  const t0 = performance.now();
  const ids = await Promise.all(outs.map((o) => fx.sbatch(user.name, [...perNode, '-N', String(nodeCount), '-o', o, script], work)));
  const until = Date.now() + 600_000;
  const ready = async () => (await Promise.all(outs.map((o) => readFile(o, 'utf8').catch(() => '')))).every((s) => s.includes('all-ready'));
  while (!(await ready())) {
    if (Date.now() > until) throw new Error(`jobs ${ids.join(',')} not ready in 600 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const s = (performance.now() - t0) / 1000;
  const failed = (await Promise.all(outs.map((o) => readFile(o, 'utf8')))).some((x) => x.includes('ssh-failed'));
  if (failed) throw new Error('a VM did not answer ssh');
  const pssMB: number[] = [];
  for (const pid of await hypervisorsOf(nodes.sharedPath)) {
    if (!(await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('qemu-system')) continue;
    const kb = /^Pss:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => ''))?.[1];
    if (kb) pssMB.push(Number(kb) / 1024);
  }
  await fx.asUser(user.name, 'scancel', ids);
  for (const id of ids) await fx.waitDone(id);
  return { s, pssMB };
}

const series: Record<string, { s: number[]; pssMB: number[] }> = {};
const add = (k: string, r: { s: number; pssMB: number[] }) => { (series[k] ??= { s: [], pssMB: [] }).s.push(r.s); series[k].pssMB.push(...r.pssMB); };
try {
  await round(1, 1); // warm-up: caches, first Prolog
  for (let r = 0; r < ROUNDS; r++) {
    // interleaved, rotating order: the cluster of n and n single-VM jobs at once
    const arms = SIZES.flatMap((n) => [[`cluster${n}`, 1, n], [`single×${n}`, n, 1]] as Array<[string, number, number]>);
    for (let i = 0; i < arms.length; i++) {
      const [k, jobs, nn] = arms[(i + r) % arms.length]!;
      add(k, await round(jobs, nn));
    }
  }
} finally {
  await ss.stop();
  for (let i = 0; i < NODES; i++) await execa(process.execPath, [join(reachableRepo(), 'dist', 'cli', 'main.js'), 'kill-all', '--state-dir', join(nodes.nodeDir(i), 'state')], { reject: false });
  await nodes.teardown();
  await rm(dir, { recursive: true, force: true });
}
const result = Object.fromEntries(Object.entries(series).map(([k, v]) => [k, { rounds: v.s.map(r2), median_s: r2(median(v.s)), pss_mb_per_vm_median: v.pssMB.length ? r2(median(v.pssMB)) : null }]));
const ratios = Object.fromEntries(SIZES.map((n) => [`cluster${n}/single×${n}`, r2(result[`cluster${n}`]!.median_s / result[`single×${n}`]!.median_s)]));
process.stdout.write(`${JSON.stringify({
  bench: 'cluster', date: new Date().toISOString(), accel: 'tcg', nodes: NODES, rounds: ROUNDS, vm: { cpus: 1, memory_mb: 256 },
  load_before: loadBefore, load_after: loadavg().map(r2), series: result, ratios,
}, null, 2)}\n`);
