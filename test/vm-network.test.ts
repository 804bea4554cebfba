// Bridged-mode pieces: slot leases (pure) and the anti-spoofing rules, enforced by the real kernel inside network
// namespaces this test creates (a bridge, a veth standing in for the VM's tap, a peer). No traffic leaves them.
import t from 'tap';
import { execa } from 'execa';
import { slotLease, dnsmasqHost, antiSpoofRules, applyAntiSpoof, removeAntiSpoof, type SlotPlan } from '../src/vm/network.js';

const plan: SlotPlan = { network: '10.77.0.0/24', firstHost: 10, gateway: '10.77.0.1', macPrefix: '52:54:00', nodeIndex: 3, namePrefix: 'wn' };

t.test('slot leases are fixed per slot and node; the DHCP line and rules name them', async (t) => {
  const l = slotLease(plan, 2);
  t.same(l, { slot: 2, mac: '52:54:00:03:00:02', ip: '10.77.0.12', prefix: 24, gateway: '10.77.0.1', hostname: 'wn3-2', tap: 'wnodtap2' });
  t.same(slotLease(plan, 2), l, 'same slot, same lease');
  t.equal(dnsmasqHost(l), 'dhcp-host=52:54:00:03:00:02,10.77.0.12,wn3-2,infinite');
  t.throws(() => slotLease(plan, 250), /does not fit/);
  t.throws(() => slotLease({ ...plan, macPrefix: 'zz:00:00' }, 1), /macPrefix/);
  const rules = antiSpoofRules('wnodtap2', l);
  t.match(rules, /ether saddr != 52:54:00:03:00:02 drop/);
  t.match(rules, /ip saddr != 10\.77\.0\.12 drop/);
  t.throws(() => antiSpoofRules('bad name;', l), /invalid interface name/);
});

const haveTools = async () => (await execa('nft', ['--version'], { reject: false })).exitCode === 0 && process.getuid?.() === 0;

t.test('anti-spoofing in a namespace: the lease passes, a spoofed IP or MAC does not', async (t) => {
  if (!(await haveTools())) {
    t.comment('skipped: needs root and nft (scripts/install-deps.sh installs nftables)');
    return;
  }
  const tag = `${process.pid % 100000}`;
  const br = `wnodt-br${tag}`, vm = `wnodt-vm${tag}`, peer = `wnodt-pe${tag}`;
  const ip = (...a: string[]) => execa('ip', a);
  const inNs = (ns: string, ...a: string[]) => execa('ip', ['netns', 'exec', ns, ...a], { reject: false, timeout: 20_000 });
  const lease = slotLease(plan, 0); // 10.77.0.10
  // up to 3 echo requests: busybox ping exits 0 when any is answered (the first may be lost to ARP and bridge
  // learning under load), and a dropped frame stays dropped however often it is sent
  const ping = async (dst: string) => (await inNs(vm, 'busybox', 'ping', '-c', '3', '-W', '2', dst)).exitCode === 0;
  t.teardown(async () => { for (const ns of [br, vm, peer]) await execa('ip', ['netns', 'del', ns], { reject: false }); });
  for (const ns of [br, vm, peer]) await ip('netns', 'add', ns);
  await inNs(br, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
  await inNs(br, 'ip', 'link', 'set', 'br0', 'up');
  for (const [ns, port, end, addr, mac] of [[vm, 'tapvm', 'eth0', `${lease.ip}/24`, lease.mac], [peer, 'tappeer', 'eth0', '10.77.0.1/24', '52:54:00:ff:ff:01']] as const) {
    await inNs(br, 'ip', 'link', 'add', port, 'type', 'veth', 'peer', 'name', end, 'netns', ns);
    await inNs(br, 'ip', 'link', 'set', port, 'master', 'br0', 'up');
    await inNs(ns, 'ip', 'link', 'set', end, 'address', mac);
    await inNs(ns, 'ip', 'addr', 'add', addr, 'dev', end);
    await inNs(ns, 'ip', 'link', 'set', end, 'up');
    await inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
  }
  await applyAntiSpoof('tapvm', lease, br);
  t.ok(await ping('10.77.0.1'), 'the VM with its leased MAC and IP reaches the peer');

  await inNs(vm, 'ip', 'addr', 'flush', 'dev', 'eth0');
  await inNs(vm, 'ip', 'addr', 'add', '10.77.0.99/24', 'dev', 'eth0');
  await inNs(vm, 'ip', 'neigh', 'flush', 'all');
  await inNs(peer, 'ip', 'neigh', 'flush', 'all');
  t.notOk(await ping('10.77.0.1'), 'a spoofed source IP is dropped');

  await inNs(vm, 'ip', 'addr', 'flush', 'dev', 'eth0');
  await inNs(vm, 'ip', 'addr', 'add', `${lease.ip}/24`, 'dev', 'eth0');
  await inNs(vm, 'ip', 'link', 'set', 'eth0', 'address', '52:54:00:66:66:66');
  await inNs(vm, 'ip', 'neigh', 'flush', 'all');
  await inNs(peer, 'ip', 'neigh', 'flush', 'all');
  t.notOk(await ping('10.77.0.1'), 'a spoofed source MAC is dropped');

  await removeAntiSpoof('tapvm', br);
  await removeAntiSpoof('tapvm', br); // idempotent
  t.ok(await ping('10.77.0.1'), 'without the rules the same spoofed frames pass: the rules did the dropping');
});
