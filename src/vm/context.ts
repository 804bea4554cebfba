/** Contextualisation: the per-job files appended to the cached initramfs as a small cpio (Linux unpacks
 * concatenated archives in order). The guest init sources /wnod/context (shell assignments) — see guest/README.md.
 * For disk images the same archive is handed over through fw_cfg (opt/org.wnod/context). Pure. */
import { cpioArchive, type CpioEntry } from './cpio.js';
import { shq } from './shell.js';
import { VmSpecError } from './errors.js';
import type { JobHostFiles, JobNic, JobSshContext, UnixUser } from './driver.js';

export interface GuestContext {
  hostname: string;
  user: UnixUser & { group?: string };
  workdir?: string;          // mounted from the virtiofs tag "wnodwork" at this path
  network?: { ip: string; gateway: string; dns?: string };  // static address, CIDR form ("10.0.2.15/24")
  /** the NIC on the job's private network, found in the guest by its MAC; hosts go to /etc/hosts */
  jobNet?: { ip: string; mac: string; mtu: number; hosts: Array<{ name: string; ip: string }>; files?: JobHostFiles | undefined; ssh?: JobSshContext | undefined; leaseAddress?: string | undefined;
    /** a restored clone: the MAC its NIC has (its template's), to be replaced by `mac` before the link is up */
    nicMac?: string | undefined };
  clock: number;             // seconds since the epoch: TCG guests have no RTC on microvm
  seed: Uint8Array;          // entropy the guest mixes into /dev/urandom (clones must not share RNG state)
  /** guest features whose kernel modules the init loads: mmio|pci, base, blk, fs, net, rng (all when absent) */
  features?: string[];
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const USERNAME = /^[a-z_][a-z0-9_.-]{0,31}$/;
const CIDR = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function checkId(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xfffffffe) throw new VmSpecError(`${what} must be an integer 0..4294967294, got ${n}`);
}

/** Validate a context; throws VmSpecError naming the bad field. */
export function checkContext(ctx: GuestContext): void {
  if (!HOSTNAME.test(ctx.hostname)) throw new VmSpecError(`invalid hostname '${ctx.hostname}'`);
  if (!USERNAME.test(ctx.user.name)) throw new VmSpecError(`invalid user name '${ctx.user.name}'`);
  if (ctx.user.group !== undefined && !USERNAME.test(ctx.user.group)) throw new VmSpecError(`invalid group name '${ctx.user.group}'`);
  checkId(ctx.user.uid, 'uid');
  checkId(ctx.user.gid, 'gid');
  if (ctx.workdir !== undefined && (!ctx.workdir.startsWith('/') || /[\0\n]/.test(ctx.workdir) || ctx.workdir.split('/').includes('..'))) {
    throw new VmSpecError(`invalid workdir '${ctx.workdir}': must be an absolute path without '..' or newlines`);
  }
  if (ctx.network) {
    if (!CIDR.test(ctx.network.ip)) throw new VmSpecError(`invalid guest address '${ctx.network.ip}' (want a.b.c.d/n)`);
    if (!IPV4.test(ctx.network.gateway)) throw new VmSpecError(`invalid gateway '${ctx.network.gateway}'`);
    if (ctx.network.dns !== undefined && !IPV4.test(ctx.network.dns)) throw new VmSpecError(`invalid DNS server '${ctx.network.dns}'`);
  }
  if (ctx.jobNet) {
    const j = ctx.jobNet;
    if (!CIDR.test(j.ip)) throw new VmSpecError(`invalid job network address '${j.ip}' (want a.b.c.d/n)`);
    for (const m of [j.mac, ...(j.nicMac !== undefined ? [j.nicMac] : [])]) if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m)) throw new VmSpecError(`invalid job network MAC '${m}'`);
    if (!Number.isInteger(j.mtu) || j.mtu < 576 || j.mtu > 65535) throw new VmSpecError(`invalid job network MTU ${j.mtu}`);
    if (j.hosts.length > 65536) throw new VmSpecError(`too many hosts in the job network (${j.hosts.length})`);
    for (const h of j.hosts) {
      if (!HOSTNAME.test(h.name) || !IPV4.test(h.ip)) throw new VmSpecError(`invalid job network host ${JSON.stringify(h)}`);
    }
    if (j.leaseAddress !== undefined && !/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/.test(j.leaseAddress)) throw new VmSpecError(`invalid lease address '${j.leaseAddress}'`);
    // text the init writes to files: printable lines only, bounded (a job of 65536 VMs fits)
    const texts = { ...(j.files ?? {}), ...(j.ssh ?? {}) } as Record<string, string>;
    for (const [k, v] of Object.entries(texts)) {
      if (typeof v !== 'string' || v.length > 4 << 20 || /[^\x20-\x7e\n]/.test(v)) throw new VmSpecError(`invalid job network ${k}`);
    }
  }
  if (!Number.isInteger(ctx.clock) || ctx.clock < 0) throw new VmSpecError(`invalid clock ${ctx.clock}`);
  for (const f of ctx.features ?? []) if (!/^[a-z0-9]{1,16}$/.test(f)) throw new VmSpecError(`invalid guest feature '${f}'`);
}

/** What the guest is told of its job NIC (the tap stays the host's). Pure. */
export function jobNetContext(j: JobNic | undefined): GuestContext['jobNet'] {
  return j ? { ip: j.ip, mac: j.mac, mtu: j.mtu, hosts: j.hosts, files: j.files, ssh: j.ssh, leaseAddress: j.leaseAddress } : undefined;
}

/** The /wnod/context file: shell assignments the init sources. */
export function renderContext(ctx: GuestContext): string {
  checkContext(ctx);
  const v: Array<[string, string]> = [
    ['WNOD_HOSTNAME', ctx.hostname],
    ['WNOD_USER', ctx.user.name],
    ['WNOD_GROUP', ctx.user.group ?? ctx.user.name],
    ['WNOD_UID', String(ctx.user.uid)],
    ['WNOD_GID', String(ctx.user.gid)],
    ['WNOD_HOME', ctx.workdir ?? '/tmp'],
    ['WNOD_CLOCK', String(ctx.clock)],
  ];
  if (ctx.workdir) v.push(['WNOD_WORKDIR', ctx.workdir]);
  if (ctx.features) v.push(['WNOD_FEATURES', ctx.features.join(' ')]);
  if (ctx.network) {
    v.push(['WNOD_IP', ctx.network.ip], ['WNOD_GW', ctx.network.gateway]);
    if (ctx.network.dns) v.push(['WNOD_DNS', ctx.network.dns]);
  }
  if (ctx.jobNet) {
    const j = ctx.jobNet;
    // WNOD_JOB_HOSTS: one "address name" line per VM of the job, as /etc/hosts wants them
    v.push(['WNOD_JOB_MAC', j.mac], ['WNOD_JOB_IP', j.ip], ['WNOD_JOB_MTU', String(j.mtu)],
      ['WNOD_JOB_HOSTS', j.hosts.map((h) => `${h.ip} ${h.name}`).join('\n')]);
    if (j.nicMac) v.push(['WNOD_JOB_NIC_MAC', j.nicMac]);
    if (j.files) {
      v.push(['WNOD_JOB_NODELIST', j.files.nodelist], ['WNOD_JOB_HOSTFILE_MPICH', j.files.mpich],
        ['WNOD_JOB_HOSTFILE_OPENMPI', j.files.openmpi], ['WNOD_JOB_NODEFILE', j.files.nodefile]);
    }
    if (j.leaseAddress) v.push(['WNOD_JOB_LEASE_ADDRESS', j.leaseAddress]);
    // private keys: the context is root-only in the guest (/wnod 0700) and on the host (the VM's runtime files)
    if (j.ssh) {
      v.push(['WNOD_JOB_SSH_KEY', j.ssh.userKey], ['WNOD_JOB_SSH_PUB', j.ssh.userPub],
        ['WNOD_JOB_SSH_HOSTKEY', j.ssh.hostKey], ['WNOD_JOB_KNOWN_HOSTS', j.ssh.knownHosts]);
    }
  }
  return '# wnod per-job context (generated)\n' + v.map(([k, x]) => `${k}=${shq(x)}`).join('\n') + '\n';
}

/** The per-job cpio: /wnod/context and /wnod/seed (root-only). */
export function contextCpio(ctx: GuestContext): Buffer {
  const entries: CpioEntry[] = [
    { path: 'wnod', type: 'dir', mode: 0o700 },
    { path: 'wnod/context', type: 'file', mode: 0o600, data: renderContext(ctx) },
    { path: 'wnod/seed', type: 'file', mode: 0o600, data: ctx.seed },
  ];
  return cpioArchive(entries);
}
