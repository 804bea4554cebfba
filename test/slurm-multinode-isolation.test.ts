// Two concurrent multi-node wnod jobs on a REAL Slurm (nodes in their own network namespaces, test/kit/
// slurmNetnsNodes.ts) cannot see each other's network. The site's private range is ONE subnet, so both jobs get the
// same addresses on different VNIs: job A has vm0..vm2 (.1-.3) on n1-n3, job B vm0..vm1 (.1-.2) on n2-n3. From B's
// vm1 (on n3, the node where A's vm2 runs), as the job user with no route to add: B's own peer answers on its ssh
// port, A's .3 (an address B does not have, on the same subnet, on the same node) does not. The control: the test
// then joins the two jobs' bridges on n3 with a veth; the same probe from B's vm1 now gets A's vm2's ssh banner, so
// the probe does detect a shared segment. VMs booted: 5 (TCG, the minimal kernel, 256 MB, 1 cpu).
import t from 'tap';
import { userWorkdir } from './kit/userWork.js';
import { join } from 'node:path';
import { execa } from 'execa';
import { slurmMissing } from './kit/slurm.js';
import { makeNetnsSlurmSite, nothingLeftOnNodes } from './kit/slurmNetnsNodes.js';
import { inNode } from './kit/siteNodes.js';
import { jobSlot } from '../src/cluster/jobNetPlan.js';

const skip = (await slurmMissing()) ?? ((await execa('/usr/sbin/nft', ['--version'], { reject: false })).exitCode !== 0 ? 'needs nft' : undefined);
const JOBNET = { vni: { first: 12000, count: 1000 }, port: 4789, underlayMtu: 1500, privateRange: '10.244.0.0/24', subnetPrefix: 24 };

t.test('two concurrent multi-node jobs on the same subnet cannot reach each other', { skip: skip ?? false }, async (t) => {
  const site = await makeNetnsSlurmSite({ prefix: 'wcb', tag: 'cb1', net: 65, basePort: 17650, cluster: 'wcb', userName: 'wcbjob',
    vni: JOBNET.vni, privateRange: JOBNET.privateRange });
  t.teardown(site.close);
  const { user, nodes, ss } = site;
  const { fx } = ss;
  const { dir: work, script, read: out } = await userWorkdir(t, user, 'wcb-w-');
  const waitFor = async (name: string, re: RegExp, ms = 600_000) => {
    const until = Date.now() + ms;
    while (Date.now() < until && !re.test(await out(name))) await new Promise((r) => setTimeout(r, 500));
    return out(name);
  };
  const perNode = ['-p', 'wnod', '--ntasks-per-node', '1', '--cpus-per-task', '1', '--mem', '256M'];

  const a = await fx.sbatch(user.name, [...perNode, '-N', '3', '-o', 'a.out', '-e', 'a.err', await script('a.sh', 'echo a-up; ip -o -4 addr show | grep -o "inet 10\\.244[0-9./]*"; while :; do sleep 1; done')], work);
  t.match(await waitFor('a.out', /a-up/), /a-up\ninet 10\.244\.0\.1\/24/, `job A is up, its vm0 at .1 (stderr: ${(await out('a.err')).slice(0, 400)})`);
  // a banner probe on the peer's ssh port (its first 15 bytes, SSH-2.0-dropbea): TCP as the job user, nothing to configure in the guest
  const probe = (ip: string) => `$(timeout 6 nc -w 3 ${ip} 22 </dev/null | head -c 15)`;
  const b = await fx.sbatch(user.name, [...perNode, '-N', '2', '-w', 'n[2-3]', '-o', 'b.out', '-e', 'b.err', await script('b.sh', [
    `ssh vm1 'echo "own=${probe('vm0')}"; echo "other=${probe('10.244.0.3')}"; echo phase1`,
    // the control: the test joins the bridges now; the same probe must then reach A's vm2
    `for i in $(seq 90); do c="${probe('10.244.0.3')}"; [ -n "$c" ] && break; sleep 1; done; echo "control=$c"'`,
  ].join('\n'))], work);
  const p1 = await waitFor('b.out', /phase1/);
  t.match(p1, /^own=SSH-2\.0-dropbea/m, `B's vm1 reaches its own peer vm0 (stderr: ${(await out('b.err')).slice(0, 400)})`);
  t.match(p1, /^other=$/m, 'B\'s vm1 gets nothing from 10.244.0.3, job A\'s vm2 on the same node and subnet');

  // control: one segment made of the two jobs' bridges on n3
  const n3 = nodes.namespaces[2]!;
  const bridge = (id: string) => `wnb${jobSlot(JOBNET, id).vni.toString(16).padStart(6, '0')}`;
  t.not(bridge(a), bridge(b), 'the two jobs have different VNIs');
  for (const args of [['link', 'add', 'wcbx0', 'type', 'veth', 'peer', 'name', 'wcbx1'], ['link', 'set', 'wcbx0', 'master', bridge(a), 'up'], ['link', 'set', 'wcbx1', 'master', bridge(b), 'up']]) {
    t.equal((await inNode(n3, '/usr/sbin/ip', args)).exitCode, 0, `ip ${args.join(' ')}`);
  }
  const doneB = await fx.waitDone(b, 600_000);
  await inNode(n3, '/usr/sbin/ip', ['link', 'del', 'wcbx0']);
  t.equal(doneB.state, 'COMPLETED');
  t.match(await out('b.out'), /^control=SSH-2\.0-dropbea/m, 'with the bridges joined the same probe reaches A\'s vm2: the probe detects a shared segment');
  await fx.asUser(user.name, 'scancel', [a]);
  t.equal((await fx.waitDone(a)).state, 'CANCELLED');
  await nothingLeftOnNodes(t, nodes, 'after both jobs');
});
