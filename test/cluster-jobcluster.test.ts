// A multi-node job's cluster as each node computes it on its own (pure): the plan, the guest's NIC, host lists and
// ssh keys agree across nodes; unknown nodes and bad lists are refused; the context carries it all to the guest.
import t from 'tap';
import { guestClusterEnv, jobCluster } from '../src/cluster/jobCluster.js';
import { renderContext } from '../src/vm/context.js';
import { parseHostnames } from '../src/lrm/slurm/prolog.js';
import type { JobNetworkConfig } from '../src/config/types.js';

const net: JobNetworkConfig = {
  vni: { first: 5000, count: 100 }, port: 4789, underlayMtu: 1500, privateRange: '10.200.0.0/16', subnetPrefix: 24,
  nodes: { wn1: '192.0.2.1', wn2: '192.0.2.2', wn3: '192.0.2.3' }, secretFile: '/x', claimDir: '/run/x',
};
const secret = Buffer.alloc(32, 1);
const req = { jobId: '1234', nodes: ['wn2', 'wn1', 'wn3'], slots: [2, 1, 1], owner: { uid: 1000, gid: 1000 } };

t.test('every node of the job computes the same cluster; each its own place in it', async (t) => {
  const views = req.nodes.map((self) => jobCluster(net, secret, { ...req, self }));
  t.same(views.map((v) => v.plan.self.hostname), ['vm0', 'vm1', 'vm2'], 'VM i runs on the job\'s i-th node (Slurm\'s order)');
  t.same(views.map((v) => v.plan.self.underlay), ['192.0.2.2', '192.0.2.1', '192.0.2.3']);
  t.same(views[0]!.plan.peers, ['192.0.2.1', '192.0.2.3']);
  for (const v of views.slice(1)) {
    t.same(v.nic.files, views[0]!.nic.files, 'the same host lists on every node');
    t.same(v.nic.ssh, views[0]!.nic.ssh, 'the same keys on every node');
    t.same(v.nic.hosts, views[0]!.nic.hosts);
  }
  t.same(views[0]!.nic.files, { nodelist: 'vm[0-2]', mpich: 'vm0:2\nvm1:1\nvm2:1\n', openmpi: 'vm0 slots=2\nvm1 slots=1\nvm2 slots=1\n', nodefile: 'vm0\nvm0\nvm1\nvm2\n' });
  t.equal(views[0]!.nic.tap, views[0]!.plan.ifaces.tap);
  t.equal(views[0]!.claimDir, '/run/x');
  const hk = views[0]!.nic.ssh!.knownHosts.split('\n').filter(Boolean).map((l) => l.split(' ')[0]);
  t.same(hk, views[0]!.nic.hosts.flatMap((h) => [h.name, h.ip]), 'known_hosts names every VM by name and address');
  t.match(views[0]!.nic.ssh!.userKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
});

t.test('refused: a node without an underlay address, this node not in the list, a cpu list of another length', async (t) => {
  t.throws(() => jobCluster(net, secret, { ...req, nodes: ['wn1', 'wn9'], slots: [1, 1], self: 'wn1' }), { code: 'jobnet-spec', message: /node wn9 has no underlay address/ });
  t.throws(() => jobCluster(net, secret, { ...req, self: 'wn7' }), { code: 'jobnet-spec', message: /not in the job's node list/ });
  t.throws(() => jobCluster(net, secret, { ...req, slots: [1], self: 'wn1' }), { code: 'jobnet-spec' });
  t.throws(() => jobCluster({ ...net, nodes: { ...net.nodes, constructor: '192.0.2.9' } }, secret, { ...req, nodes: ['wn1', 'toString'], slots: [1, 1], self: 'wn1' }), /no underlay address/, 'no inherited property is an address');
});

t.test('the script in vm0 sees the cluster of VMs, not the host nodes', async (t) => {
  t.same(guestClusterEnv(3), {
    WNOD_JOB_NODELIST: 'vm[0-2]', SLURM_JOB_NODELIST: 'vm[0-2]', SLURM_NODELIST: 'vm[0-2]',
    WNOD_NODEFILE: '/etc/wnod/job/nodefile', PBS_NODEFILE: '/etc/wnod/job/nodefile',
    WNOD_HOSTFILE_MPICH: '/etc/wnod/job/hostfile.mpich', WNOD_HOSTFILE_OPENMPI: '/etc/wnod/job/hostfile.openmpi',
  });
});

t.test('the context carries the host lists and keys; text with control characters is refused', async (t) => {
  const c = jobCluster(net, secret, { ...req, self: 'wn1' });
  const base = { hostname: 'vm1', user: { name: 'alice', uid: 1000, gid: 1000 }, clock: 1, seed: new Uint8Array(8) };
  const text = renderContext({ ...base, jobNet: c.nic });
  t.match(text, /^WNOD_JOB_NODELIST='vm\[0-2\]'$/m);
  t.match(text, /^WNOD_JOB_NODEFILE='vm0\nvm0\nvm1\nvm2\n'$/m);
  t.match(text, /^WNOD_JOB_SSH_KEY='-----BEGIN OPENSSH PRIVATE KEY-----$/m);
  t.match(text, /^WNOD_JOB_SSH_PUB='ssh-ed25519 \S+ wnod-job-1234'$/m);
  t.throws(() => renderContext({ ...base, jobNet: { ...c.nic, files: { ...c.nic.files!, mpich: 'vm0:1\x1b[2J' } } }), /invalid job network mpich/);
});

t.test('scontrol show hostnames output, strictly', async (t) => {
  t.same(parseHostnames('n1\nn2\ngpu-01\n'), ['n1', 'n2', 'gpu-01']);
  t.throws(() => parseHostnames('n1\nn1\n'), /twice/);
  t.throws(() => parseHostnames('n1\n../etc\n'), /not a node name/);
});
