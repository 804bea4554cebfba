// Job networks without VMs: the pure plan and rules, and the root apply/remove steps run by the real kernel inside
// two network namespaces standing for two worker nodes on a "site network" (test/kit/siteNodes.ts, 10.231.x). The traffic
// between real VMs is in test/cluster-jobnet-vm.test.ts.
import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { planJobNet, jobNumber, jobSlot, guestJobNet, checkSite, DEFAULT_SITE, type JobNetSite } from '../src/cluster/jobNetPlan.js';
import { jobNetRules } from '../src/cluster/jobNetRules.js';
import { applyJobNet, removeJobNet } from '../src/cluster/jobNetHost.js';
import { JobNetCollisionError, JobNetSpecError } from '../src/cluster/errors.js';
import { renderContext } from '../src/vm/context.js';
import { siteNodes } from './kit/siteNodes.js';

const site: JobNetSite = { vni: { first: 5000, count: 1000 }, port: 4789, underlayMtu: 1500, privateRange: '10.240.0.0/16', subnetPrefix: 24 };
const owner = { uid: 4242, gid: 4243 };
const nodes = ['10.231.1.1', '10.231.1.2', '10.231.1.3'];

t.test('the plan: VNI and subnet from the job number, MAC/address/name per VM, peers, MTU', async (t) => {
  const p = planJobNet(site, { jobId: '1234.server', nodes, self: 1, owner });
  // 256 /24 subnets in the /16 and 1000 VNIs: subnet slot = 1234 mod 256 = 210, VNI = 5000 + 1234 mod 1000
  t.equal(p.vni, 5234);
  t.equal(p.subnet, '10.240.210.0/24');
  t.equal(p.mtu, 1450, 'VXLAN over IPv4 costs 50 bytes');
  t.same(p.members.map((m) => [m.index, m.underlay, m.mac, m.ip, m.hostname]), [
    [0, '10.231.1.1', '02:00:14:72:00:00', '10.240.210.1', 'vm0'],
    [1, '10.231.1.2', '02:00:14:72:00:01', '10.240.210.2', 'vm1'],
    [2, '10.231.1.3', '02:00:14:72:00:02', '10.240.210.3', 'vm2'],
  ]);
  t.equal(p.self.index, 1);
  t.same(p.peers, ['10.231.1.1', '10.231.1.3'], 'every node but this one');
  t.same(p.ifaces, { bridge: 'wnb001472', vxlan: 'wnx001472', tap: 'wnt001472' });
  for (const n of Object.values(p.ifaces)) t.ok(n.length <= 15, `${n} fits IFNAMSIZ`);
  t.same(planJobNet(site, { jobId: '1234', nodes, self: 1, owner }).members, p.members, 'the server suffix does not matter');
  // every node computes the same members; only self and peers differ
  const p0 = planJobNet(site, { jobId: '1234.server', nodes, self: 0, owner });
  t.same(p0.members, p.members);
  t.same(p0.peers, ['10.231.1.2', '10.231.1.3']);
  t.same(guestJobNet(p), { ip: '10.240.210.2/24', mac: '02:00:14:72:00:01', mtu: 1450,
    hosts: [{ name: 'vm0', ip: '10.240.210.1' }, { name: 'vm1', ip: '10.240.210.2' }, { name: 'vm2', ip: '10.240.210.3' }] });
  t.not(planJobNet(site, { jobId: '1235', nodes, self: 0, owner }).vni, p.vni, 'the next job has another segment');
  t.equal(jobSlot(site, '1234').vni, jobSlot(site, String(1234 + 1000)).vni, 'numbers 1000 apart share a VNI: applyJobNet must refuse the second (tested below)');
  const oneSubnet = { ...site, privateRange: '10.240.7.0/24' };
  t.same([jobSlot(oneSubnet, '1234'), jobSlot(oneSubnet, '1235')], [{ slot: 0, vni: jobSlot(site, '1234').vni }, { slot: 0, vni: jobSlot(site, '1235').vni }],
    'a range of one subnet: every job gets that subnet, each on its own VNI (separate segments, overlapping addresses)');
  t.equal(checkSite(DEFAULT_SITE), 2 ** 15, 'the default range holds 32768 job subnets');
});

t.test('bad input is refused with the reason', async (t) => {
  t.throws(() => jobNumber('12[3].server'), JobNetSpecError, 'array jobs');
  t.throws(() => jobNumber('abc'), /not a plain numeric/);
  t.throws(() => jobNumber('12;rm'), JobNetSpecError);
  t.throws(() => planJobNet(site, { jobId: '1', nodes: ['10.231.1.1', '10.231.1.1'], self: 0, owner }), /listed twice/);
  t.throws(() => planJobNet(site, { jobId: '1', nodes: ['10.231.1.256'], self: 0, owner }), /not an IPv4 address/);
  t.throws(() => planJobNet(site, { jobId: '1', nodes: ['010.231.1.1'], self: 0, owner }), /not an IPv4 address/);
  t.throws(() => planJobNet(site, { jobId: '1', nodes, self: 3, owner }), /self/);
  t.throws(() => planJobNet(site, { jobId: '1', nodes: [], self: 0, owner }), /at least one node/);
  t.throws(() => planJobNet(site, { jobId: '1', nodes, self: 0, owner: { uid: 0, gid: 0 } }), /root never owns/);
  t.throws(() => planJobNet(site, { jobId: '1', nodes, self: 0, owner, namePrefix: 'Bad Name' }), /namePrefix/);
  t.throws(() => planJobNet({ ...site, privateRange: '10.240.0.1/16' }, { jobId: '1', nodes, self: 0, owner }), /host bits/);
  t.throws(() => planJobNet({ ...site, vni: { first: 0xfffff0, count: 100 } }, { jobId: '1', nodes, self: 0, owner }), /vni.count/);
  t.throws(() => planJobNet({ ...site, subnetPrefix: 30 }, { jobId: '1', nodes: [...nodes, '10.231.1.4'], self: 0, owner }), /do not fit/);
});

t.test('the rules: anti-spoofing at the tap, peers only on the VNI, nothing to the host', async (t) => {
  const p = planJobNet(site, { jobId: '1234', nodes, self: 1, owner });
  const r = jobNetRules(p);
  t.match(r, /iifname "wnt001472" jump from_vm/);
  t.match(r, /ether saddr != 02:00:14:72:00:01 drop/);
  t.match(r, /ether type ip ip saddr != 10\.240\.210\.2 drop/);
  t.notMatch(r, /0\.0\.0\.0/, 'no DHCP on a job network');
  t.match(r, /ether saddr != \{ 02:00:14:72:00:00, 02:00:14:72:00:02 \} drop/, 'from the tunnel only the other VMs\' MACs');
  t.match(r, /iifname \{ "wnt001472", "wnx001472" \} drop/, 'nothing from the segment to the host');
  t.match(r, /udp dport 4789 @th,96,24 0x1472 ip saddr != \{ 10\.231\.1\.1, 10\.231\.1\.3 \} drop/);
  const single = jobNetRules(planJobNet(site, { jobId: '7', nodes: ['10.231.1.1'], self: 0, owner }));
  t.match(single, /udp dport 4789 @th,96,24 0x[0-9a-f]+ drop/, 'one node: no peer may send into the VNI');
  t.match(single, /chain from_peers \{\n\s+drop/);
  const ctx = renderContext({ hostname: 'vm1', user: { name: 'u', uid: 1, gid: 1 }, clock: 1, seed: new Uint8Array(1), jobNet: guestJobNet(p) });
  t.match(ctx, /WNOD_JOB_MAC='02:00:14:72:00:01'\nWNOD_JOB_IP='10\.240\.210\.2\/24'\nWNOD_JOB_MTU='1450'\nWNOD_JOB_HOSTS='10\.240\.210\.1 vm0\n10\.240\.210\.2 vm1\n10\.240\.210\.3 vm2'/);
  t.throws(() => renderContext({ hostname: 'vm1', user: { name: 'u', uid: 1, gid: 1 }, clock: 1, seed: new Uint8Array(1),
    jobNet: { ...guestJobNet(p), hosts: [{ name: "x'; reboot", ip: '10.0.0.1' }] } }), /invalid job network host/);
  // a lease group's VM learns where the CE reaches its ssh; nothing else passes as an address
  t.notMatch(ctx, /WNOD_JOB_LEASE_ADDRESS/, 'a job that is no lease: no lease address');
  const leased = (leaseAddress: string) => renderContext({ hostname: 'vm1', user: { name: 'u', uid: 1, gid: 1 }, clock: 1, seed: new Uint8Array(1), jobNet: { ...guestJobNet(p), leaseAddress } });
  t.match(leased('10.231.1.2:812'), /\nWNOD_JOB_LEASE_ADDRESS='10\.231\.1\.2:812'\n/);
  t.throws(() => leased("10.231.1.2:812'; reboot"), /invalid lease address/);
});

const canRun = async () => process.getuid?.() === 0 && (await execa('/usr/sbin/nft', ['--version'], { reject: false })).exitCode === 0;

/** What a namespace holds: link names, nft tables, the fdb of one device. */
async function inventory(ns: string): Promise<{ links: string[]; tables: string }> {
  const links = JSON.parse((await execa('/usr/sbin/ip', ['-n', ns, '-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>;
  const tables = (await execa('/usr/sbin/ip', ['netns', 'exec', ns, '/usr/sbin/nft', 'list', 'tables'])).stdout.trim();
  return { links: links.map((l) => l.ifname).sort(), tables };
}

t.test('apply and remove on two nodes: interfaces, fdb, rules, ownership; idempotent; collisions refused; nothing left', async (t) => {
  if (!(await canRun())) {
    t.comment('skipped: needs root and nft (scripts/install-deps.sh installs nftables)');
    return;
  }
  const tag = String(process.pid % 10000);
  const site0 = await siteNodes(tag, 11, 2);
  const [a, b] = site0.nodes as [string, string];
  const [ua, ub] = site0.underlay as [string, string];
  const teardown = site0.teardown;
  const claims = mkdtempSync(join(tmpdir(), 'wvc-claims-'));
  t.teardown(async () => { await teardown(); rmSync(claims, { recursive: true, force: true }); });
  const ca = join(claims, 'a'), cb = join(claims, 'b');
  const pa = planJobNet(site, { jobId: '77', nodes: [ua, ub], self: 0, owner });
  const pb = planJobNet(site, { jobId: '77', nodes: [ua, ub], self: 1, owner });
  await applyJobNet(pa, { netns: a, claimDir: ca });
  await applyJobNet(pb, { netns: b, claimDir: cb });

  const show = async (ns: string, dev: string) => JSON.parse((await execa('/usr/sbin/ip', ['-n', ns, '-j', '-d', 'link', 'show', 'dev', dev])).stdout)[0];
  const tap = await show(a, pa.ifaces.tap);
  t.equal(tap.master, pa.ifaces.bridge, 'the tap is a port of the job bridge');
  t.equal(String(tap.linkinfo.info_data.user), String(owner.uid), 'the tap belongs to the job user');
  t.equal(tap.mtu, 1450);
  t.equal(tap.ifalias, 'wnod-job 77', 'an operator sees whose it is');
  const vx = await show(a, pa.ifaces.vxlan);
  t.equal(vx.linkinfo.info_data.id, pa.vni);
  t.equal(vx.linkinfo.info_data.port, 4789);
  t.equal(vx.linkinfo.info_data.local, ua);
  t.equal(vx.linkinfo.info_data.learning, false, 'no learning: only the forwarding entries wnod wrote');
  const br = await show(a, pa.ifaces.bridge);
  t.equal(br.inet6_addr_gen_mode, 'none', 'the bridge gets no IPv6 link-local address');
  const addrs = JSON.parse((await execa('/usr/sbin/ip', ['-n', a, '-j', 'addr', 'show', 'dev', pa.ifaces.bridge])).stdout)[0].addr_info;
  t.same(addrs, [], 'the bridge has no address on the host');
  const fdb = JSON.parse((await execa('/usr/sbin/ip', ['netns', 'exec', a, '/usr/sbin/bridge', '-j', 'fdb', 'show', 'dev', pa.ifaces.vxlan])).stdout) as Array<{ mac: string; dst?: string }>;
  t.ok(fdb.some((e) => e.mac === '00:00:00:00:00:00' && e.dst === ub), 'head-end replication to the peer node');
  t.ok(fdb.some((e) => e.mac === pa.members[1]!.mac && e.dst === ub), 'the peer VM\'s MAC points at its node');

  const before = { a: await inventory(a), rules: (await execa('/usr/sbin/ip', ['netns', 'exec', a, '/usr/sbin/nft', 'list', 'ruleset'])).stdout };
  await applyJobNet(pa, { netns: a, claimDir: ca });
  t.same(await inventory(a), before.a, 're-applying changes no interface');
  t.equal((await execa('/usr/sbin/ip', ['netns', 'exec', a, '/usr/sbin/nft', 'list', 'ruleset'])).stdout, before.rules, 're-applying leaves the same rules');

  // job 77 + 1000 computes the same VNI: refused on a node where 77 holds it, and 77's network is untouched
  const clash = planJobNet(site, { jobId: String(77 + 1000), nodes: [ua, ub], self: 0, owner: { uid: 5000, gid: 5000 } });
  t.equal(clash.vni, pa.vni);
  await t.rejects(applyJobNet(clash, { netns: a, claimDir: ca }), JobNetCollisionError);
  await removeJobNet(clash, { netns: a, claimDir: ca });
  t.same(await inventory(a), before.a, 'the other job\'s remove does not touch job 77\'s network');

  for (const [p, ns, c] of [[pa, a, ca], [pb, b, cb]] as const) {
    await removeJobNet(p, { netns: ns, claimDir: c });
    await removeJobNet(p, { netns: ns, claimDir: c }); // idempotent
    const inv = await inventory(ns);
    t.same(inv.links, ['lo', 'site0'], `${ns}: no interface left`);
    t.equal(inv.tables, '', `${ns}: no nftables table left`);
    t.same(readdirSync(c).filter((f) => f.endsWith('.json')), [], `${ns}: no claim left`);
  }
  // a stray interface with a job's name that no claim covers is someone else's: refused, not reused
  await execa('/usr/sbin/ip', ['-n', a, 'link', 'add', 'name', pa.ifaces.bridge, 'type', 'bridge']);
  await t.rejects(applyJobNet(pa, { netns: a, claimDir: ca }), { code: 'jobnet-collision' });
});

t.test('a node outside the job cannot inject frames into its VNI; the peer rule is what stops it', async (t) => {
  if (!(await canRun())) {
    t.comment('skipped: needs root and nft');
    return;
  }
  const sn = await siteNodes(`r${process.pid % 10000}`, 12, 3);
  const claims = mkdtempSync(join(tmpdir(), 'wvc-claims-'));
  t.teardown(async () => { await sn.teardown(); rmSync(claims, { recursive: true, force: true }); });
  const [a, b, rogue] = sn.nodes as [string, string, string];
  const jobNodes = sn.underlay.slice(0, 2);
  const pb = planJobNet(site, { jobId: '88', nodes: jobNodes, self: 1, owner });
  await applyJobNet(planJobNet(site, { jobId: '88', nodes: jobNodes, self: 0, owner }), { netns: a, claimDir: join(claims, 'a') });
  await applyJobNet(pb, { netns: b, claimDir: join(claims, 'b') });
  // the rogue node speaks VXLAN with the job's VNI to node b, from its own site address (a valid member MAC even)
  const ip = (...args: string[]) => execa('/usr/sbin/ip', ['-n', rogue, ...args]);
  await ip('link', 'add', 'rog', 'type', 'vxlan', 'id', String(pb.vni), 'dstport', '4789', 'remote', sn.underlay[1]!, 'local', sn.underlay[2]!);
  await ip('link', 'set', 'rog', 'address', pb.members[0]!.mac);
  await ip('addr', 'add', `${pb.members[0]!.ip}/24`, 'dev', 'rog');
  await ip('link', 'set', 'rog', 'up');
  const rx = async () => Number((await execa('/usr/sbin/ip', ['netns', 'exec', b, 'cat', `/sys/class/net/${pb.ifaces.vxlan}/statistics/rx_packets`])).stdout.trim());
  const send = () => execa('/usr/sbin/ip', ['netns', 'exec', rogue, 'busybox', 'ping', '-c', '2', '-W', '1', pb.self.ip], { reject: false });
  // node a's own ports coming up may send a frame or two to b (a legitimate peer): wait until b's counter is still
  let before = await rx();
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = await rx();
    if (now === before) break;
    before = now;
  }
  await send();
  const after = await rx();
  t.equal(after, before, `node b's VXLAN device received nothing from the rogue node (rx ${before} → ${after})`);
  // the control: without the job's inet table the same datagrams are decapsulated into the job's segment
  await execa('/usr/sbin/ip', ['netns', 'exec', b, '/usr/sbin/nft', 'delete', 'table', 'inet', pb.table]);
  await send();
  t.ok(await rx() > before, 'without the peer rule the rogue node\'s frames enter the job network');
});
