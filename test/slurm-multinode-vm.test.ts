// Multi-node wnod jobs on a REAL Slurm (scripts/slurm-local.sh) whose three slurmd are separate nodes as far as the
// network goes: each in a network namespace of its own with its own address on a site network (test/kit/
// slurmNetnsNodes.ts), so the job's VXLAN packets cross a switch between network stacks as between real worker
// nodes. `sbatch -N 3` in the wnod partition: each node's Prolog boots its VM on the job's private network, the
// script runs in vm0, runs a command on every VM by ssh (the job's own key) and sends data from vm0 to vm1 (checked on
// both ends); the Epilog leaves nothing on any node. A node that cannot make its part fails the job with the reason;
// scancel of a multi-node job leaves nothing either. VMs booted: 6 (TCG, the minimal kernel, 256 MB, 1 cpu).
import t, { type Test } from 'tap';
import { readFile } from 'node:fs/promises';
import { userWorkdir } from './kit/userWork.js';
import { join } from 'node:path';
import { execa } from 'execa';
import { slurmMissing } from './kit/slurm.js';
import { checkClusterProbe, clusterProbeLines, makeNetnsSlurmSite, nothingLeftOnNodes } from './kit/slurmNetnsNodes.js';
import { inNode } from './kit/siteNodes.js';
import { jobSlot } from '../src/cluster/jobNetPlan.js';
import { NODE_FAULT_EXIT } from '../src/job/outcome.js';

const skip = (await slurmMissing()) ?? ((await execa('/usr/sbin/nft', ['--version'], { reject: false })).exitCode !== 0 ? 'needs nft' : undefined);

t.test('multi-node wnod jobs on a real Slurm with nodes in their own network namespaces', { skip: skip ?? false }, async (t) => {
  const site = await makeNetnsSlurmSite({ prefix: 'wmn', tag: String(process.pid % 100000), net: 77, basePort: 17700, cluster: 'wmn', userName: 'wmnjob',
    vni: { first: 9000, count: 1000 }, privateRange: '10.242.0.0/16' });
  t.teardown(site.close);
  const { user, nodes, ss } = site;
  const { fx } = ss;
  const { dir: work, script } = await userWorkdir(t, user, 'wmn-w-');
  const perNode = ['-p', 'wnod', '--ntasks-per-node', '1', '--cpus-per-task', '1', '--mem', '256M'];
  const twoNodes = [...perNode, '-N', '2', '-w', 'n[1-2]'];

  const nothingLeft = (t: Test, what: string) => nothingLeftOnNodes(t, nodes!, what);

  await t.test('a 3-node job: its script in vm0 runs a command on every VM by ssh and sends data to vm1 over the private network', async (t) => {
    const s = await script('cluster.sh', [
      'echo "list=$SLURM_JOB_NODELIST nodefile=$(tr "\\n" " " < "$WNOD_NODEFILE") mpich=$(tr "\\n" " " < "$WNOD_HOSTFILE_MPICH")"',
      ...clusterProbeLines(['vm0', 'vm1', 'vm2'], '10.242'),
    ].join('\n'));
    const id = await fx.sbatch(user.name, [...perNode, '-N', '3', '-o', 'cluster.out', '-e', 'cluster.err', s], work);
    const done = await fx.waitDone(id, 600_000);
    const out = await readFile(join(work, 'cluster.out'), 'utf8').catch(() => '');
    const err = await readFile(join(work, 'cluster.err'), 'utf8').catch(() => '');
    t.equal(done.state, 'COMPLETED', `the job completed (stderr: ${err.slice(0, 600)})`);
    t.equal(done.fields.NodeList, 'n[1-3]', 'Slurm gave it three nodes');
    t.match(out, /^list=vm\[0-2\] nodefile=vm0 vm1 vm2  mpich=vm0:1 vm1:1 vm2:1 $/m, 'the script sees its cluster of VMs');
    checkClusterProbe(t, out, user.name, ['vm0', 'vm1', 'vm2'], '10.242');
    await nothingLeft(t, 'after the job');
  });

  await t.test('a node whose part of the job fails: the job fails with the reason, its script never runs, nothing is left', async (t) => {
    // node n2 holds an interface with the job's bridge name that no job claims: it refuses to reuse it (a collision
    // the node cannot resolve), its Prolog refuses the job; n1 boots vm0, the runner finds vm1 missing
    const s = await script('half.sh', 'echo should-not-run');
    const id = await fx.sbatch(user.name, [...twoNodes, '--hold', '-o', 'half.out', '-e', 'half.err', s], work);
    const { vni } = jobSlot({ vni: { first: 9000, count: 1000 }, port: 4789, underlayMtu: 1500, privateRange: '10.242.0.0/16', subnetPrefix: 24 }, id);
    const stray = `wnb${vni.toString(16).padStart(6, '0')}`;
    t.equal((await inNode(nodes!.namespaces[1]!, '/usr/sbin/ip', ['link', 'add', stray, 'type', 'bridge'])).exitCode, 0);
    await fx.asUser(user.name, 'scontrol', ['release', id]);
    const done = await fx.waitDone(id, 600_000);
    t.equal(done.state, 'FAILED');
    t.equal(done.exitCode, `${NODE_FAULT_EXIT}:0`, 'the node-fault status: the job is not at fault');
    t.match(await readFile(join(work, 'half.err'), 'utf8'), /^wnod: the job's virtual machine vm1 on its other node did not come up/m);
    t.notMatch(await readFile(join(work, 'half.out'), 'utf8').catch(() => ''), /should-not-run/);
    const log = await readFile(join(ss!.site.dir, 'wnod.log'), 'utf8');
    t.match(log, new RegExp(`"job":"${id}".*"code":"jobnet-collision".*interfaces ${stray} exist on this node but no job claims`), 'n2 said why, in the site log');
    t.match(await fx.nodeState('n2'), /^(idle|mixed)$/, 'n2 not drained');
    t.equal((await inNode(nodes!.namespaces[1]!, '/usr/sbin/ip', ['link', 'del', stray])).exitCode, 0, 'the stray bridge was left alone');
    await nothingLeft(t, 'after the failed job');
  });

  await t.test('scancel of a 2-node job: the job ends, nothing is left on either node', async (t) => {
    const s = await script('long.sh', 'echo started; ssh vm1 "echo peer-up"; while :; do sleep 1; done');
    const id = await fx.sbatch(user.name, [...twoNodes, '-o', 'long.out', s], work);
    const until = Date.now() + 600_000;
    const running = async () => (await fx.asUser(user.name, 'squeue', ['-h', '-j', id, '-o', '%T'])).stdout.trim().match(/^(PENDING|CONFIGURING|RUNNING)$/);
    while (Date.now() < until && !(await readFile(join(work, 'long.out'), 'utf8').catch(() => '')).includes('peer-up') && await running()) await new Promise((r) => setTimeout(r, 500));
    t.match(await readFile(join(work, 'long.out'), 'utf8'), /peer-up/, 'both VMs were up');
    await fx.asUser(user.name, 'scancel', [id]);
    const done = await fx.waitDone(id);
    t.equal(done.state, 'CANCELLED');
    await nothingLeft(t, 'after scancel');
  });
});
