// Warm snapshots of VMs on a job's private network, with real QEMU (TCG) on two worker nodes (network namespaces on a
// site switch, test/kit/siteNodes.ts): one template (its job NIC on no host network) and two clones of it, one per
// node, on one job network. Each clone is restored (not cold booted), sits on its own job tap and comes up with the
// MAC and address wnod chose for it — as the host sees it: QEMU's receive filter, the frames counted at the tap
// before any rule, the bridge's learned entries. Data crosses the private network; no frame with the template's MAC
// ever leaves a clone, and one the guest forges is dropped at its tap and never reaches the segment.
import t from 'tap';
import { chmodSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { ensureTestUser, type TestUser } from './kit/pbsmom.js';
import { QemuDriver } from '../src/vm/qemu.js';
import { QmpClient } from '../src/vm/qmp.js';
import type { VmSpec } from '../src/vm/driver.js';
import { buildTemplate, templateSpec, TEMPLATE_JOB_MAC } from '../src/vm/snapshot.js';
import { JOB_NIC_ID } from '../src/vm/qemuArgs.js';
import { planJobNet, guestJobNet, type JobNetPlan, type JobNetSite } from '../src/cluster/jobNetPlan.js';
import { applyJobNet } from '../src/cluster/jobNetHost.js';
import { siteNodes, inNode, type SiteNodes } from './kit/siteNodes.js';
import { guestSh, jobNetVms, jobNetUsable, type JobNetVm } from './kit/jobNetVms.js';

const READY_MS = 240_000;
const QEMU = 'qemu-system-x86_64';
const site: JobNetSite = { vni: { first: 7900, count: 100 }, port: 4789, underlayMtu: 1500, privateRange: '10.239.0.0/16', subnetPrefix: 24 };

/** Counters in front of every rule of the node (priority -300 < the job's -200): what the VM put on its tap, and
 * what arrived from the segment, by source MAC. */
const probe = (p: JobNetPlan) => [
  'table bridge wnsprobe {',
  '  counter tpl_tap {}', '  counter own_tap {}', '  counter tpl_vx {}',
  '  chain pre {',
  '    type filter hook prerouting priority -300; policy accept;',
  `    iifname "${p.ifaces.tap}" ether saddr ${TEMPLATE_JOB_MAC} counter name "tpl_tap"`,
  `    iifname "${p.ifaces.tap}" ether saddr ${p.self.mac} counter name "own_tap"`,
  `    iifname "${p.ifaces.vxlan}" ether saddr ${TEMPLATE_JOB_MAC} counter name "tpl_vx"`,
  '  }',
  '}', ''].join('\n');

const count = async (node: string, name: string): Promise<number> => {
  const r = await inNode(node, '/usr/sbin/nft', ['list', 'counter', 'bridge', 'wnsprobe', name]);
  const m = /packets (\d+)/.exec(r.stdout);
  if (!m) throw new Error(`no counter ${name} in ${node}: ${r.stderr}`);
  return Number(m[1]);
};

/** MACs the node's job bridge learned (not its own ports' permanent ones). */
const learned = async (node: string, p: JobNetPlan): Promise<string[]> => {
  const r = await inNode(node, '/usr/sbin/bridge', ['-j', 'fdb', 'show', 'br', p.ifaces.bridge]);
  return (JSON.parse(r.stdout || '[]') as Array<{ mac: string; ifname?: string; state?: string; flags?: string[] }>)
    .filter((e) => e.state !== 'permanent' && !(e.flags ?? []).includes('self')).map((e) => `${e.ifname ?? '?'} ${e.mac}`);
};

t.test('two clones of one template on one job network: restored, each with its own MAC and address as the host sees them', async (t) => {
  if (!(await jobNetUsable())) {
    t.comment('skipped: needs root and nft');
    return;
  }
  const img: TestImage = await buildTestImage({ kernel: 'mini' });
  const user: TestUser = await ensureTestUser('wnsjob1');
  const root = mkdtempSync(join(tmpdir(), 'wns-'));
  chmodSync(root, 0o755);
  const tpl = join(root, 'templates');
  const sn: SiteNodes = await siteNodes('ns1', 79, 2, { prefix: 'wns' });
  const vms = jobNetVms(t, sn, root);

  const jobId = '301';
  const specOf = (plan: JobNetPlan): VmSpec => ({
    id: `j${jobId}`, jobId, image: testVmImage(img), cpus: 1, memoryMB: 128, hostname: plan.self.hostname, accel: 'tcg',
    user: { name: user.name, uid: user.uid, gid: user.gid }, env: { PATH: '/bin:/usr/bin:/sbin:/usr/sbin' },
    network: { mode: 'none', job: { tap: plan.ifaces.tap, ...guestJobNet(plan) } },
  });
  const plans = sn.nodes.map((_, i) => planJobNet(site, { jobId, nodes: sn.underlay, self: i, owner: user }));
  // the template: what the job engine asks a build for (no job's addresses or keys), saved once for both nodes
  const b = await buildTemplate({ dir: tpl, qemu: QEMU, spec: templateSpec(specOf(plans[0]!)), accel: 'tcg' });
  t.equal(b.status, 'built', JSON.stringify(b));

  for (const [i, node] of sn.nodes.entries()) {
    const plan = plans[i]!;
    const claimDir = join(root, `claims${i}`);
    await applyJobNet(plan, { netns: node, claimDir });
    t.equal((await inNode(node, '/usr/sbin/nft', ['-f', '-'], { input: probe(plan) })).exitCode, 0, 'probe counters in place before the VM starts');
    const driver = new QemuDriver({ stateDir: join(root, `s${i}`), accel: 'tcg', netns: node, snapshots: { dir: tpl, restoreTimeoutMs: 120_000 } });
    vms.push({ driver, state: await driver.prepare(specOf(plan)), plan, node, claimDir });
  }
  for (const v of vms) v.state = await v.driver.start(v.state);
  for (const v of vms) v.state = await v.driver.waitReady(v.state, READY_MS);
  const [a, c] = vms as [JobNetVm, JobNetVm];
  for (const v of vms) t.equal(v.state.extra?.boot, 'restore', `${v.node}: restored from the template, not cold booted (${v.state.extra?.coldReason ?? ''})`);
  t.equal(a.state.extra?.template, c.state.extra?.template, 'one template for both');

  const sh = guestSh;
  // the guest's view and QEMU's (the device's receive filter), for each clone
  for (const v of vms) {
    const g = await sh(v, 'cat /sys/class/net/eth0/address; ip -o -4 addr show dev eth0 | grep -o "inet [0-9./]*"; cat /sys/class/net/eth0/mtu; hostname');
    t.equal(g.out, `${v.plan.self.mac}\ninet ${v.plan.self.ip}/24\n1450\n${v.plan.self.hostname}\n`, `${v.node}: the guest has the job's MAC, address, MTU and name`);
    const qmp = await QmpClient.connect(v.state.sockets.qmp!, 10_000);
    const f = (await qmp.execute('query-rx-filter', { name: JOB_NIC_ID })) as Array<{ 'main-mac': string }>;
    qmp.close();
    t.equal(f[0]?.['main-mac'], v.plan.self.mac, `${v.node}: QEMU's NIC has the job's MAC`);
  }
  t.not(a.plan.self.mac, c.plan.self.mac);
  t.not(a.plan.self.ip, c.plan.self.ip);

  // both reachable, both ways; 1 MB from vm0 to vm1 as the job user, by name, checked on both ends
  t.equal((await sh(a, `ping -c 2 -W 5 ${c.plan.self.ip}`)).code, 0, 'vm0 reaches vm1');
  t.equal((await sh(c, `ping -c 2 -W 5 ${a.plan.self.ip}`)).code, 0, 'vm1 reaches vm0');
  const job = { name: user.name, uid: user.uid, gid: user.gid };
  const made = await sh(a, 'head -c 1048576 /dev/urandom > /tmp/d && md5sum < /tmp/d', job);
  const [recv, sent] = await Promise.all([
    sh(c, 'printf "#!/bin/sh\\ncat > /tmp/r\\n" > /tmp/rcv && chmod +x /tmp/rcv && nc -l -p 5001 -e /tmp/rcv && wc -c < /tmp/r && md5sum < /tmp/r', job),
    sh(a, 'for i in $(seq 60); do nc vm1 5001 < /tmp/d && exit 0; sleep 1; done; exit 1', job),
  ]);
  t.equal(sent.code, 0, `vm0 sent over the private network (${sent.err})`);
  t.equal(recv.out, `1048576\n${made.out}`, 'vm1 received every byte, unchanged');

  // the host's view: every frame each clone put on its tap had its own MAC; the bridges learned exactly those
  for (const v of vms) {
    t.equal(await count(v.node, 'tpl_tap'), 0, `${v.node}: not one frame with the template's MAC on the tap`);
    t.ok(await count(v.node, 'own_tap') > 0, `${v.node}: frames with the job's MAC on the tap`);
    t.same((await learned(v.node, v.plan)).filter((e) => e.startsWith(`${v.plan.ifaces.tap} `)), [`${v.plan.ifaces.tap} ${v.plan.self.mac}`],
      `${v.node}: the bridge learned the clone's MAC on its tap, nothing else`);
  }

  // a clone that forges the template's MAC (root in the guest): the frames reach its tap and are dropped there
  const forged = await sh(a, `ip link set eth0 down && ip link set eth0 address ${TEMPLATE_JOB_MAC} && ip link set eth0 up && ip neigh flush all; ping -c 3 -W 2 ${c.plan.self.ip}; echo ping=$?`);
  t.match(forged.out, /ping=1\n/, 'with the template\'s MAC vm0 reaches nobody');
  t.ok(await count(a.node, 'tpl_tap') > 0, 'the forged frames did reach vm0\'s tap (the probe sees them)');
  t.equal(await count(c.node, 'tpl_vx'), 0, 'not one of them crossed the segment to the other node');
  t.notOk((await learned(a.node, a.plan)).some((e) => e.endsWith(TEMPLATE_JOB_MAC)), 'the bridge never learned the template\'s MAC');
});
