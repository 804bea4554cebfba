// Multi-node wnod jobs restored from warm snapshots, on a REAL Slurm whose three slurmd are separate network stacks
// (test/kit/slurmNetnsNodes.ts) with vm.snapshots on. The first 3-node job cold boots on every node and each node's
// Prolog asks for a template (its NIC on no host network); once they exist, a 3-node job's VMs are all restored —
// each on its own job tap with the MAC wnod chose for it, as the host's bridge learned it — and the job's script
// still reaches every VM by ssh and sends data to vm1 over the private network. VMs booted: 3 per job, ≥ 6.
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { userWorkdir } from './kit/userWork.js';
import { join } from 'node:path';
import { execa } from 'execa';
import { slurmMissing } from './kit/slurm.js';
import { makeNetnsSlurmSite, nothingLeftOnNodes } from './kit/slurmNetnsNodes.js';
import { inNode } from './kit/siteNodes.js';
import { planJobNet, type JobNetSite } from '../src/cluster/jobNetPlan.js';

const skip = (await slurmMissing()) ?? ((await execa('/usr/sbin/nft', ['--version'], { reject: false })).exitCode !== 0 ? 'needs nft' : undefined);
const JOBNET: JobNetSite = { vni: { first: 14000, count: 1000 }, port: 4789, underlayMtu: 1500, privateRange: '10.238.0.0/16', subnetPrefix: 24 };

t.test('a multi-node job restored from warm snapshots on a real Slurm with nodes in their own network namespaces', { skip: skip ?? false }, async (t) => {
  const site = await makeNetnsSlurmSite({ prefix: 'wns', tag: String(process.pid % 100000), net: 79, basePort: 17900, cluster: 'wns', userName: 'wnsjob',
    vni: JOBNET.vni, privateRange: JOBNET.privateRange, snapshots: true });
  t.teardown(site.close);
  const { user, nodes, ss } = site;
  const { fx } = ss;
  const { dir: work, script: userScript } = await userWorkdir(t, user, 'wns-w-');
  const script = await userScript('cluster.sh', [
    'for h in vm0 vm1 vm2; do ssh "$h" \'echo "ssh-ok host=$(hostname) macs=$(cat /sys/class/net/eth*/address | tr "\\n" " ")"\' || echo "ssh-failed $h"; done',
    'head -c 1048576 /dev/urandom > /tmp/d',
    'echo "sent=$(md5sum < /tmp/d | cut -d" " -f1)"',
    'ssh vm1 \'cat > /tmp/r; echo "received=$(wc -c < /tmp/r) $(md5sum < /tmp/r | cut -d" " -f1) on $(hostname) from ${SSH_CLIENT%% *}"\' < /tmp/d',
    'ip -o -4 addr show | grep -o "inet 10\\.238[0-9./]*"',
    // the VMs stay up until the test has looked at the nodes' bridges
    'echo checks-done; n=0; while [ ! -f "release-$SLURM_JOB_ID" ] && [ $n -lt 300 ]; do sleep 1; n=$((n+1)); done',
  ].join('\n'));
  const perNode = ['-p', 'wnod', '--ntasks-per-node', '1', '--cpus-per-task', '1', '--mem', '256M'];

  const boots = async (id: string) => (await readFile(join(ss.site.dir, 'wnod.log'), 'utf8')).split('\n').filter((l) => l.includes('"vm-ready"'))
    .map((l) => JSON.parse(l) as { job: string; boot?: { mode: string; coldReason?: string } }).filter((o) => o.job === id).map((o) => o.boot?.mode ?? 'none');
  /** MACs each node's job bridge learned on the job's tap (what its VM sent and the rules let through). */
  const learnedOnTaps = async (id: string) => {
    const plan = planJobNet(JOBNET, { jobId: id, nodes: nodes.underlay, self: 0, owner: user });
    const seen: string[][] = [];
    for (const ns of nodes.namespaces) {
      const r = await inNode(ns, '/usr/sbin/bridge', ['-j', 'fdb', 'show', 'br', plan.ifaces.bridge]);
      seen.push((JSON.parse(r.stdout || '[]') as Array<{ mac: string; ifname?: string; state?: string }>)
        .filter((e) => e.ifname === plan.ifaces.tap && e.state !== 'permanent').map((e) => e.mac));
    }
    return { plan, seen };
  };

  /** One 3-node job: its output, where its VMs came from, and what the nodes' bridges learned while it ran. */
  const job = async () => {
    const id = await fx.sbatch(user.name, [...perNode, '-N', '3', '-o', 'out-%j', '-e', 'err-%j', script], work);
    const until = Date.now() + 600_000;
    const out = () => readFile(join(work, `out-${id}`), 'utf8').catch(() => '');
    const running = async () => /^(PENDING|CONFIGURING|RUNNING)$/.test((await fx.asUser(user.name, 'squeue', ['-h', '-j', id, '-o', '%T'])).stdout.trim());
    while (Date.now() < until && !(await out()).includes('checks-done') && (await running())) await new Promise((r) => setTimeout(r, 500));
    const learned = await learnedOnTaps(id);
    await writeFile(join(work, `release-${id}`), '');
    const done = await fx.waitDone(id, 600_000);
    return { id, done, out: await out(), err: await readFile(join(work, `err-${id}`), 'utf8').catch(() => ''), boots: await boots(id), ...learned };
  };
  const check = (t: Test, j: Awaited<ReturnType<typeof job>>) => {
    t.equal(j.done.state, 'COMPLETED', `job ${j.id} completed (stderr: ${j.err.slice(0, 600)})`);
    for (const [i, m] of j.plan.members.entries()) {
      t.match(j.out, `ssh-ok host=vm${i} macs=${m.mac} `, `vm${i} answers ssh and has the MAC wnod chose (${m.mac})`);
      t.same(j.seen[i], [m.mac], `n${i + 1}'s job bridge learned exactly that MAC on vm${i}'s tap`);
    }
    t.notMatch(j.out, /ssh-failed/);
    const sent = /sent=([0-9a-f]{32})/.exec(j.out)?.[1];
    const recv = /received=(\d+) ([0-9a-f]{32}) on (\S+) from (\S+)/.exec(j.out);
    t.same(recv?.slice(1, 4), ['1048576', sent, 'vm1'], 'vm1 received every byte, unchanged');
    t.equal(recv?.[4], j.plan.members[0]!.ip, 'over the private network, from vm0\'s address on it');
  };
  type Test = typeof t;

  const first = await job();
  t.same(first.boots, ['cold', 'cold', 'cold'], 'the first job cold booted on every node (no template yet)');
  check(t, first);
  // each node builds its template in the background; later jobs restore once all three exist (bounded: loaded TCG)
  let restored: Awaited<ReturnType<typeof job>> | undefined;
  const until = Date.now() + 900_000;
  while (!restored && Date.now() < until) {
    const j = await job();
    if (j.boots.length === 3 && j.boots.every((b) => b === 'restore')) restored = j;
    else {
      check(t, j);
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
  const builds = await Promise.all([0, 1, 2].map((i) => readFile(join(nodes.nodeDir(i), 'state', 'templates', 'build.log'), 'utf8').catch(() => 'none')));
  t.ok(restored, `a 3-node job had all its VMs restored (build logs: ${builds.join(' | ')})`);
  if (!restored) return;
  check(t, restored);
  await nothingLeftOnNodes(t, nodes, 'after the restored job');
});
