// End-to-end virtual cluster (issue 13): wall time from `sbatch -N n` until the job's script in vm0 has run a command
// through ssh on EVERY VM of its cluster (the runner has already waited for each VM's ssh banner), against the same
// number of single-VM jobs submitted at once in the same run (until every one's script has started). A REAL Slurm
// whose slurmd are separate network stacks (test/kit/slurmNetnsNodes.ts, up to 16): one VM per node per job, so the
// cluster sizes are node counts (16 VMs of one job take 16 nodes). Interleaved rounds, medians, load average;
// host memory per VM: PSS of each QEMU (/proc/<pid>/smaps_rollup) while the cluster is up. Prints one JSON object.
// With --snapshots (issue 14) the same-run baseline is the same n-node job cold booted: vm.snapshots is switched off
// and on in the site's config before each round, the templates are built first (warm-up until a job of every node
// is restored), and each round's boot modes are checked from the site log.
//   bash scripts/bench.sh cluster [--sizes 1,3] [--nodes 3] [--rounds 3] [--port 17660] [--net 66] [--tag cb2] [--user wcbbench] [--snapshots]
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
  user: { type: 'string', default: 'wcbbench' }, snapshots: { type: 'boolean', default: false },
} });
const SNAPSHOTS = values.snapshots === true;
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
    vm: { state_dir: join(nodes.sharedPath, 'state'), ready_timeout_s: 240, ...(SNAPSHOTS ? { snapshots: true } : {}) },
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

/** --snapshots: switch warm snapshots on or off for the next jobs (the hooks read the config per job). */
async function setSnapshots(on: boolean): Promise<void> {
  const text = await readFile(ss.site.configPath, 'utf8');
  if (!/^\s+snapshots: (true|false)$/m.test(text)) throw new Error(`no vm.snapshots in ${ss.site.configPath}`);
  await writeFile(ss.site.configPath, text.replace(/^(\s+snapshots:) (true|false)$/m, `$1 ${on}`));
}
/** How each VM of these jobs booted (vm-ready in the site log: cold or restore, with a cold boot's reason). */
async function bootModes(ids: string[]): Promise<string[]> {
  return (await readFile(join(ss.site.dir, 'wnod.log'), 'utf8')).split('\n').filter((l) => l.includes('"vm-ready"'))
    .map((l) => JSON.parse(l) as { job: string; boot?: { mode?: string; coldReason?: string } }).filter((o) => ids.includes(o.job))
    .map((o) => (o.boot?.mode === 'restore' ? 'restore' : `cold${o.boot?.coldReason ? `: ${o.boot.coldReason.slice(0, 120)}` : ''}`));
}

let seq = 0;
/** Submit jobs at once (each `nodeCount` nodes), wait until every one's script printed all-ready: seconds, PSS per VM. */
async function round(jobs: number, nodeCount: number): Promise<{ s: number; pssMB: number[]; boots: string[] }> {
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
  return { s, pssMB, boots: await bootModes(ids) };
}

const series: Record<string, { s: number[]; pssMB: number[]; boots: string[] }> = {};
const add = (k: string, r: { s: number; pssMB: number[]; boots: string[] }) => {
  const e = (series[k] ??= { s: [], pssMB: [], boots: [] });
  e.s.push(r.s); e.pssMB.push(...r.pssMB); e.boots.push(...r.boots);
};
let warmUps = 0;
try {
  await round(1, 1); // warm-up: caches, first Prolog
  // --snapshots: a template on every node before measuring (each node builds its own after a cold boot)
  while (SNAPSHOTS && warmUps < 15) {
    warmUps++;
    const w = await round(1, NODES);
    if (w.boots.length === NODES && w.boots.every((b) => b === 'restore')) break;
    await new Promise((r) => setTimeout(r, 5000));
  }
  for (let r = 0; r < ROUNDS; r++) {
    // interleaved, rotating order: the cluster of n and n single-VM jobs at once (--snapshots: the cluster of n
    // cold booted and restored)
    const arms = SIZES.flatMap((n) => (SNAPSHOTS ? [[`cold${n}`, 1, n, false], [`restore${n}`, 1, n, true]] : [[`cluster${n}`, 1, n, false], [`single×${n}`, n, 1, false]]) as Array<[string, number, number, boolean]>);
    for (let i = 0; i < arms.length; i++) {
      const [k, jobs, nn, warm] = arms[(i + r) % arms.length]!;
      if (SNAPSHOTS) await setSnapshots(warm);
      add(k, await round(jobs, nn));
    }
  }
} finally {
  await ss.stop();
  for (let i = 0; i < NODES; i++) await execa(process.execPath, [join(reachableRepo(), 'dist', 'cli', 'main.js'), 'kill-all', '--state-dir', join(nodes.nodeDir(i), 'state')], { reject: false });
  await nodes.teardown();
  await rm(dir, { recursive: true, force: true });
}
const result = Object.fromEntries(Object.entries(series).map(([k, v]) => [k, { rounds: v.s.map(r2), median_s: r2(median(v.s)), pss_mb_per_vm_median: v.pssMB.length ? r2(median(v.pssMB)) : null,
  boots: v.boots.reduce<Record<string, number>>((n, b) => ({ ...n, [b]: (n[b] ?? 0) + 1 }), {}) }]));
const ratios = Object.fromEntries(SIZES.map((n) => SNAPSHOTS ? [`restore${n}/cold${n}`, r2(result[`restore${n}`]!.median_s / result[`cold${n}`]!.median_s)]
  : [`cluster${n}/single×${n}`, r2(result[`cluster${n}`]!.median_s / result[`single×${n}`]!.median_s)]));
process.stdout.write(`${JSON.stringify({
  bench: 'cluster', date: new Date().toISOString(), accel: 'tcg', nodes: NODES, rounds: ROUNDS, vm: { cpus: 1, memory_mb: 256 }, snapshots: SNAPSHOTS, warm_ups: warmUps,
  load_before: loadBefore, load_after: loadavg().map(r2), series: result, ratios,
}, null, 2)}\n`);
