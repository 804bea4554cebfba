/** Bridged networking for sites: each VM slot on a node has a fixed MAC, IP and name (a static DHCP lease), its tap
 * sits on the site bridge, and per-tap nftables bridge rules drop anything the VM sends with another MAC or IP
 * (anti-spoofing, the equivalent of libvirt's clean-traffic filter).
 *
 * Status: the renderers and the apply/remove steps below are tested inside network namespaces (veth pairs stand in
 * for the VM's tap). Wiring them into the QEMU driver's start/destroy is left out: no test here can attach a VM to
 * a bridge without reaching beyond a namespace. */
import { run } from '../util/run.js';
import { VmSpecError } from './errors.js';

export interface SlotPlan {
  /** first address of the VM range and its prefix length, e.g. 10.10.0.0/24 → slot n gets 10.10.0.(base+n) */
  network: string;
  firstHost: number;       // offset of slot 0 in the network
  gateway: string;
  macPrefix: string;       // three octets, e.g. "52:54:00"; the node's index and the slot fill the rest
  nodeIndex: number;       // 0..255, distinct per worker node sharing a bridge domain
  namePrefix: string;      // host names: <prefix><node>-<slot>
}

export interface SlotLease {
  slot: number;
  mac: string;
  ip: string;              // a.b.c.d
  prefix: number;
  gateway: string;
  hostname: string;
  tap: string;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function ipToInt(ip: string): number {
  const m = IPV4.exec(ip);
  if (!m) throw new VmSpecError(`invalid IPv4 address '${ip}'`);
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) throw new VmSpecError(`invalid IPv4 address '${ip}'`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export const intToIp = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** The fixed MAC, address, name and tap of one slot. Pure. */
export function slotLease(plan: SlotPlan, slot: number): SlotLease {
  if (!Number.isInteger(slot) || slot < 0 || slot > 0xffff) throw new VmSpecError(`slot must be 0..65535, got ${slot}`);
  if (!/^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/.test(plan.macPrefix)) throw new VmSpecError(`macPrefix must be three hex octets, got '${plan.macPrefix}'`);
  if (!Number.isInteger(plan.nodeIndex) || plan.nodeIndex < 0 || plan.nodeIndex > 255) throw new VmSpecError(`nodeIndex must be 0..255`);
  const [net, len] = plan.network.split('/');
  const prefix = Number(len);
  if (!Number.isInteger(prefix) || prefix < 8 || prefix > 30) throw new VmSpecError(`network '${plan.network}' needs a prefix length 8..30`);
  const base = ipToInt(net!);
  const size = 2 ** (32 - prefix);
  const host = plan.firstHost + slot;
  if (host <= 0 || host >= size - 1) throw new VmSpecError(`slot ${slot} does not fit in ${plan.network} from host ${plan.firstHost}`);
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return {
    slot, mac: `${plan.macPrefix}:${hex(plan.nodeIndex)}:${hex(slot >> 8)}:${hex(slot & 255)}`, ip: intToIp((base + host) >>> 0), prefix,
    gateway: intToIp(ipToInt(plan.gateway)), hostname: `${plan.namePrefix}${plan.nodeIndex}-${slot}`, tap: `wnodtap${slot}`,
  };
}

/** The dnsmasq line of a static lease (dhcp-host=MAC,IP,NAME,infinite). Pure. */
export function dnsmasqHost(l: SlotLease): string {
  return `dhcp-host=${l.mac},${l.ip},${l.hostname},infinite`;
}

/** The nftables table name of one tap's rules (deleting the table removes them all). */
export const ruleTable = (tap: string): string => `wnod_${tap}`;

/** The anti-spoofing rule lines for frames entering the bridge from one port (the VM's tap), for a chain that sees
 * only that port's frames: only `mac` as source, IPv4 only from `ip` (and, with `dhcp`, DHCP discovery from
 * 0.0.0.0), ARP only about itself, no IPv6 (RA, ND spoofing), and nothing else. Pure. */
export function antiSpoofLines(mac: string, ip: string, opts: { dhcp: boolean }): string[] {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) throw new VmSpecError(`invalid MAC '${mac}'`);
  intToIp(ipToInt(ip)); // validates
  return [
    `ether saddr != ${mac} drop`,
    `ether type arp arp saddr ether != ${mac} drop`,
    `ether type arp arp saddr ip != ${ip}${opts.dhcp ? ' arp saddr ip != 0.0.0.0' : ''} drop`,
    `ether type arp accept`,
    ...(opts.dhcp ? ['ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept'] : []),
    `ether type ip ip saddr != ${ip} drop`,
    `ether type ip accept`,
    `drop`,
  ];
}

/** Anti-spoofing rules for frames entering the bridge from `port` (the VM's tap), DHCP discovery allowed (site
 * slots lease by DHCP). Pure: the text for `nft -f -`. */
export function antiSpoofRules(port: string, l: SlotLease): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(port)) throw new VmSpecError(`invalid interface name '${port}'`);
  const t = ruleTable(port);
  return [
    `table bridge ${t} {`,
    `  chain prerouting {`,
    `    type filter hook prerouting priority -200; policy accept;`,
    `    iifname != "${port}" accept`,
    ...antiSpoofLines(l.mac, l.ip, { dhcp: true }).map((r) => `    ${r}`),
    `  }`,
    `}`,
    '',
  ].join('\n');
}

/** Load a tap's rules (replacing older ones of the same tap). `netns`: run inside that namespace (tests). */
export async function applyAntiSpoof(port: string, l: SlotLease, netns?: string): Promise<void> {
  await removeAntiSpoof(port, netns);
  const [cmd, args] = netns ? ['ip', ['netns', 'exec', netns, 'nft', '-f', '-']] : ['nft', ['-f', '-']];
  await run(cmd as string, args as string[], { input: antiSpoofRules(port, l), timeoutMs: 10_000 });
}

/** Remove a tap's rules; idempotent. */
export async function removeAntiSpoof(port: string, netns?: string): Promise<void> {
  const t = ruleTable(port);
  const [cmd, args] = netns ? ['ip', ['netns', 'exec', netns, 'nft', 'delete', 'table', 'bridge', t]] : ['nft', ['delete', 'table', 'bridge', t]];
  await run(cmd as string, args as string[], { timeoutMs: 10_000 }).catch(() => {});
}
