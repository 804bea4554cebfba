// Lease groups on a REAL Slurm whose three slurmd are separate nodes as far as the network goes (each in a network
// namespace of its own, test/kit/slurmNetnsNodes.ts): `wnod lease create --nodes 3` as an unprivileged user submits a
// 3-node pilot; every node's Prolog boots its VM on the job's private network with its own ssh forward on the node's
// underlay address; the pilot in vm0 starts the user's ssh in every VM and reports them all before create returns.
// From the CE (the host's namespace, another stack than the nodes'): ssh into each VM with its host key pinned, ssh
// from vm0 to the others over the private network, delete (scancel) → nothing left on any node; an admin's scancel of
// a group ends every VM too. VMs booted: 6 (TCG, the minimal kernel, 1 cpu and 256 MB each).
import t, { type Test } from 'tap';
import {   rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { leaseUser } from './kit/leaseSite.js';
import { slurmMissing } from './kit/slurm.js';
import { makeNetnsSlurmSite, nothingLeftOnNodes } from './kit/slurmNetnsNodes.js';

type LeaseNode = { name: string; address: string; ssh: string; hostKey: string; privateAddress: string };
type LeaseJson = { id: string; state: string; jobId?: string; address?: string; ssh?: string; hostKey?: string; reason?: string; nodes?: LeaseNode[]; history?: Array<{ event: string; by: string }> };

const skip = (await slurmMissing()) ?? ((await execa('/usr/sbin/nft', ['--version'], { reject: false })).exitCode !== 0 ? 'needs nft' : undefined);

t.test('lease groups on a real Slurm with nodes in their own network namespaces', { skip: skip ?? false }, async (t) => {
  const ns = await makeNetnsSlurmSite({ prefix: 'wlg', tag: 'lg1', net: 61, basePort: 17600, cluster: 'wlg', userName: 'wlglease',
    vni: { first: 11000, count: 1000 }, privateRange: '10.243.0.0/16' });
  const { user, nodes, ss, repo, dir } = ns;
  t.teardown(async () => {
    await ns.close();
    await rm(join(user.home, '.wnod'), { recursive: true, force: true });
  });
  const { fx, site } = ss;
  const u = await leaseUser({ dir, user, cli: join(repo, 'dist', 'cli', 'main.js'), configPath: site.configPath, env: fx.env });

  const createGroup = async (t: Test, n: number): Promise<LeaseJson> => {
    const r = await u.lease(['create', '--image', 'vm_test', '--nodes', String(n), '--ssh-key', u.pubKey, '--hours', '1', '--wait', '600', '--json']);
    t.equal(r.exitCode, 0, `lease create --nodes ${n} exits 0 (stderr: ${r.stderr.slice(0, 400)})`);
    const l = JSON.parse(r.stdout) as LeaseJson;
    t.equal(l.state, 'ready', `create waited until every VM served ssh (${l.reason ?? ''})`);
    return l;
  };
  const show = async (id: string) => JSON.parse((await u.lease(['show', id, '--json'])).stdout) as LeaseJson;

  await t.test('a group of 3: create → ssh into each VM, host keys pinned → ssh from vm0 to the others → delete: nothing left', async (t) => {
    const l = await createGroup(t, 3);
    t.match(l.jobId, /^\d+$/, 'one Slurm job holds the group');
    const g = l.nodes ?? [];
    t.same(g.map((n) => n.name), ['vm0', 'vm1', 'vm2'], 'every VM reported, vm0 first');
    for (const [i, n] of g.entries()) {
      // each node forwards on its own underlay address: what the CE reaches it by
      t.match(n.address, new RegExp(`^${nodes!.underlay[i]!.replace(/\./g, '\\.')}:\\d+$`), `${n.name}: its node's address`);
      t.equal(n.ssh, `ssh -p ${n.address.split(':')[1]} ${user.name}@${nodes!.underlay[i]}`);
      t.match(n.hostKey, /^ssh-ed25519 [A-Za-z0-9+/]+=*$/);
      t.match(n.privateAddress, /^10\.243\.\d+\.\d+$/, `${n.name}: an address on the group's private network`);
    }
    t.equal(new Set(g.map((n) => n.hostKey)).size, 3, 'a host key made in each VM');
    t.match(l, { address: g[0]?.address, ssh: g[0]?.ssh, hostKey: g[0]?.hostKey }, 'the lease\'s own fields describe vm0');
    for (const n of g) {
      const r = await u.ssh(n.address, n.hostKey, 'hostname; id -u');
      t.equal(r.exitCode, 0, `ssh into ${n.name} with its host key pinned (stderr: ${r.stderr.slice(0, 300)})`);
      t.equal(r.stdout, `${n.name}\n${user.uid}`, `the command ran in ${n.name}, as the user`);
    }
    // a VM's address with another VM's host key: refused (the keys are really the VMs' own)
    t.not((await u.ssh(g[1]!.address, g[2]!.hostKey, 'true')).exitCode, 0, 'a wrong pinned host key is refused');
    // from vm0, by name and by private address; the peers see vm0's private address as the client
    const hop = await u.ssh(g[0]!.address, g[0]!.hostKey,
      `for h in vm1 ${g[2]!.privateAddress}; do ssh "$h" 'echo "hop $(hostname) from \${SSH_CLIENT%% *}"' || echo "hop-failed $h"; done`);
    t.equal(hop.exitCode, 0, `ssh from vm0 (stderr: ${hop.stderr.slice(0, 300)})`);
    t.equal(hop.stdout, `hop vm1 from ${g[0]!.privateAddress}\nhop vm2 from ${g[0]!.privateAddress}`, 'vm0 reaches the others over the private network');
    t.match((JSON.parse((await u.lease(['list', '--json'])).stdout) as LeaseJson[]).find((x) => x.id === l.id), { state: 'ready', nodes: g }, 'list agrees');

    const d = await u.lease(['delete', l.id, '--json']);
    t.equal(d.exitCode, 0, `delete exits 0 (stderr: ${d.stderr.slice(0, 300)})`);
    const deleted = JSON.parse(d.stdout) as LeaseJson;
    t.equal(deleted.state, 'released');
    t.notOk(deleted.nodes, 'a released group lists no VM');
    t.equal((await fx.waitDone(l.jobId!)).state, 'CANCELLED', 'the pilot was scancelled');
    await nothingLeftOnNodes(t, nodes!, 'after delete');
    for (const n of g) t.not((await u.ssh(n.address, n.hostKey, 'true')).exitCode, 0, `nothing answers at ${n.name}'s address any more`);
    t.same((await show(l.id)).history!.filter((e) => e.by === 'pilot').map((e) => e.event), ['running', 'ready', 'terminating', 'released'], 'the pilot recorded its whole life');
    for (const n of ['n1', 'n2', 'n3']) t.match(await fx.nodeState(n), /^(idle|mixed)$/, `${n} is not drained`);
  });

  await t.test('an admin\'s scancel of a group ends every VM', async (t) => {
    const l = await createGroup(t, 3);
    t.equal(l.nodes?.length, 3);
    await execa('scancel', [l.jobId!], { env: fx.env });
    await fx.waitDone(l.jobId!);
    const until = Date.now() + 60_000;
    let shown = await show(l.id);
    while (!['released', 'failed'].includes(shown.state) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 300));
      shown = await show(l.id);
    }
    t.equal(shown.state, 'released', 'released by the pilot');
    t.ok(shown.history!.some((e) => e.event === 'terminating' && e.by === 'pilot'), 'the pilot recorded the SIGTERM');
    await nothingLeftOnNodes(t, nodes!, 'after scancel');
    for (const n of l.nodes ?? []) t.not((await u.ssh(n.address, n.hostKey, 'true')).exitCode, 0, `nothing answers at ${n.name}'s address any more`);
  });
});
