/** The private network of one job across its nodes: a VXLAN segment (one VNI per job) carried between the worker
 * nodes' underlay addresses by head-end replication (no multicast), a Linux bridge per job on each node, one tap
 * per VM. Everything a node needs follows from the job id, the job's node list and the site's ranges, so every
 * node of the job computes the same plan without talking to the others. See docs/virtual-clusters.md. Pure. */
import { intToIp, ipToInt } from '../vm/network.js';
import { JobNetSpecError } from './errors.js';

/** What the site gives wnod for job networks (config). */
export interface JobNetSite {
  /** the VNIs wnod may use: first .. first+count-1, within 1..16777215 */
  vni: { first: number; count: number };
  /** the VXLAN UDP port open between worker nodes (IANA: 4789) */
  port: number;
  /** MTU of the site network between worker nodes; the job network gets 50 bytes less (VXLAN over IPv4) */
  underlayMtu: number;
  /** the private addresses of all job networks, e.g. 10.128.0.0/9; each job gets one subnet of it */
  privateRange: string;
  /** prefix length of one job's subnet, e.g. 24 (253 VMs per job) */
  subnetPrefix: number;
}

/** One job on one node. */
export interface JobNetRequest {
  /** the batch system's job id: its number picks the VNI and the subnet ("1234", "1234.server") */
  jobId: string;
  /** the underlay IPv4 address of every node of the job, in the job's node order; one VM per node */
  nodes: readonly string[];
  /** which of `nodes` this node is */
  self: number;
  /** the job user: owns the tap (QEMU runs as this user) */
  owner: { uid: number; gid: number };
  /** guest host names are <prefix><index>; default "vm" */
  namePrefix?: string;
}

/** One VM of the job, as every node sees it. */
export interface JobNetMember {
  index: number;
  underlay: string;  // the node it runs on
  mac: string;       // locally administered, unique per VNI and index
  ip: string;        // a.b.c.d in the job's subnet
  hostname: string;
}

/** Everything one node creates for the job, and what its VM is told. */
export interface JobNetPlan {
  jobId: string;
  vni: number;
  port: number;
  mtu: number;
  subnet: string;                   // a.b.c.d/n
  prefix: number;
  members: JobNetMember[];
  self: JobNetMember;
  /** the other nodes' underlay addresses (head-end replication targets), unique */
  peers: string[];
  /** host interface names on this node (IFNAMSIZ: at most 15 characters) */
  ifaces: { bridge: string; vxlan: string; tap: string };
  /** nftables tables (one bridge, one inet) that hold this job's rules */
  table: string;
  owner: { uid: number; gid: number };
  /** link alias marking every interface as this job's: a collision on the VNI is detected, not joined */
  alias: string;
}

/** VXLAN over IPv4 adds 50 bytes: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
export const DEFAULT_SITE: JobNetSite = { vni: { first: 0x100000, count: 0x100000 }, port: 4789, underlayMtu: 1500, privateRange: '10.128.0.0/9', subnetPrefix: 24 };

/** A worker node's name as the batch system prints it in a node list (the keys of job_network.nodes). */
export const BATCH_NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const JOB_ID = /^(\d{1,15})(\.[A-Za-z0-9][A-Za-z0-9.-]{0,253})?$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The number of a batch job id ("1234" or "1234.server"); array jobs and anything else are refused. */
export function jobNumber(jobId: string): number {
  const m = JOB_ID.exec(jobId);
  if (!m) throw new JobNetSpecError(`job id '${jobId}' is not a plain numeric batch job id (array jobs have no private network)`);
  return Number(m[1]);
}

function checkInt(n: number, lo: number, hi: number, what: string): void {
  if (!Number.isInteger(n) || n < lo || n > hi) throw new JobNetSpecError(`${what} must be an integer ${lo}..${hi}, got ${n}`);
}

function checkIpv4(ip: string, what: string): number {
  const m = IPV4.exec(ip);
  if (!m || m.slice(1).some((p) => Number(p) > 255 || (p.length > 1 && p.startsWith('0')))) throw new JobNetSpecError(`${what} '${ip}' is not an IPv4 address`);
  return ipToInt(ip);
}

/** Validate site settings; throws JobNetSpecError naming the bad key. Returns the number of job subnets. */
export function checkSite(site: JobNetSite): number {
  checkInt(site.vni.first, 1, 0xffffff, 'vni.first');
  checkInt(site.vni.count, 1, 0xffffff - site.vni.first + 1, 'vni.count');
  checkInt(site.port, 1, 65535, 'port');
  checkInt(site.underlayMtu, 576 + VXLAN_OVERHEAD, 65535, 'underlayMtu');
  const [net, len] = site.privateRange.split('/');
  const rangePrefix = Number(len);
  checkInt(rangePrefix, 8, 30, `privateRange '${site.privateRange}' prefix length`);
  const base = checkIpv4(net ?? '', 'privateRange');
  if ((base & (2 ** (32 - rangePrefix) - 1)) !== 0) throw new JobNetSpecError(`privateRange '${site.privateRange}' has host bits set`);
  checkInt(site.subnetPrefix, rangePrefix, 30, 'subnetPrefix');
  return 2 ** (site.subnetPrefix - rangePrefix);
}

const hex6 = (n: number) => n.toString(16).padStart(6, '0');
const hexByte = (n: number) => n.toString(16).padStart(2, '0');

/** The job's VNI and subnet slot, each its number modulo its own range. Two concurrent jobs with the same VNI (numbers
 * a multiple of vni.count apart) would share a segment: the host step refuses the second (JobNetCollisionError).
 * Two jobs with the same subnet and different VNIs are separate segments whose addresses happen to overlap: a site
 * with fewer subnets than VNIs reuses addresses, never segments. */
export function jobSlot(site: JobNetSite, jobId: string): { slot: number; vni: number } {
  const subnets = checkSite(site);
  const n = jobNumber(jobId);
  return { slot: n % subnets, vni: site.vni.first + (n % site.vni.count) };
}

/** The plan of one job on one node. Pure. */
export function planJobNet(site: JobNetSite, req: JobNetRequest): JobNetPlan {
  const { slot, vni } = jobSlot(site, req.jobId);
  if (req.nodes.length < 1) throw new JobNetSpecError('a job network needs at least one node');
  checkInt(req.self, 0, req.nodes.length - 1, 'self (the index of this node)');
  checkInt(req.owner.uid, 1, 0xfffffffe, 'owner uid (root never owns a job tap)');
  checkInt(req.owner.gid, 0, 0xfffffffe, 'owner gid');
  const prefixName = req.namePrefix ?? 'vm';
  if (!/^[a-z][a-z0-9-]{0,40}$/.test(prefixName)) throw new JobNetSpecError(`namePrefix '${prefixName}' must be [a-z][a-z0-9-]{0,40}`);
  const seen = new Set<string>();
  for (const [i, n] of req.nodes.entries()) {
    checkIpv4(n, `underlay address of node ${i}`);
    if (seen.has(n)) throw new JobNetSpecError(`node ${n} is listed twice (one VM per node)`);
    seen.add(n);
  }
  const size = 2 ** (32 - site.subnetPrefix);
  if (req.nodes.length > size - 3) throw new JobNetSpecError(`${req.nodes.length} VMs do not fit in a /${site.subnetPrefix} (at most ${size - 3})`);
  const subnetBase = (ipToInt(site.privateRange.split('/')[0]!) + slot * size) >>> 0;
  const members = req.nodes.map((underlay, index): JobNetMember => ({
    index, underlay,
    // 02: locally administered unicast; then the VNI and the index: unique per job network, never a vendor's
    mac: ['02', hexByte(vni >> 16), hexByte((vni >> 8) & 255), hexByte(vni & 255), hexByte(index >> 8), hexByte(index & 255)].join(':'),
    ip: intToIp((subnetBase + 1 + index) >>> 0),
    hostname: `${prefixName}${index}`,
  }));
  const self = members[req.self]!;
  const v = hex6(vni);
  return {
    jobId: req.jobId, vni, port: site.port, mtu: site.underlayMtu - VXLAN_OVERHEAD,
    subnet: `${intToIp(subnetBase)}/${site.subnetPrefix}`, prefix: site.subnetPrefix, members, self,
    peers: members.filter((m) => m.index !== req.self).map((m) => m.underlay),
    ifaces: { bridge: `wnb${v}`, vxlan: `wnx${v}`, tap: `wnt${v}` },
    table: `wnod_job_${v}`, owner: { uid: req.owner.uid, gid: req.owner.gid },
    alias: `wnod-job ${req.jobId}`,
  };
}

/** The guest's view: its address (CIDR), MAC, MTU and every member's name and address (for /etc/hosts). Pure. */
export function guestJobNet(plan: JobNetPlan): { ip: string; mac: string; mtu: number; hosts: Array<{ name: string; ip: string }> } {
  return { ip: `${plan.self.ip}/${plan.prefix}`, mac: plan.self.mac, mtu: plan.mtu, hosts: plan.members.map((m) => ({ name: m.hostname, ip: m.ip })) };
}
