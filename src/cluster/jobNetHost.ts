/** Root steps on a worker node: create and remove one job's network (src/cluster/jobNetPlan.ts) — the VXLAN device,
 * the bridge, the VM's tap owned by the job user, the head-end replication and per-MAC forwarding entries, and the
 * nftables rules (src/cluster/jobNetRules.ts).
 *
 * Ownership: before creating anything, the job claims its VNI on this node in a claim file (atomic write, under a
 * per-VNI lock). Another job computing the same VNI finds the claim and is refused (JobNetCollisionError) instead of
 * joining a segment that is not its own; removal deletes only what its own claim covers. Both steps are idempotent.
 * Commands run with argument arrays, absolute paths and a clean environment. */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../util/run.js';
import { withLock } from '../util/lock.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { JobNetPlan } from './jobNetPlan.js';
import { jobNetRules } from './jobNetRules.js';
import { JobNetApplyError, JobNetCollisionError } from './errors.js';

export const IP = '/usr/sbin/ip';
export const BRIDGE = '/usr/sbin/bridge';
export const NFT = '/usr/sbin/nft';
export const DEFAULT_CLAIM_DIR = '/run/wnod/jobnet';
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
const ZERO_MAC = '00:00:00:00:00:00';

export interface JobNetHostOptions {
  /** claim files and locks, one per VNI (root-only; tmpfs: a rebooted node has no networks left either) */
  claimDir?: string;
  /** run every step inside this network namespace (a node kept in a namespace: the tests' worker nodes) */
  netns?: string;
}

interface Claim { jobId: string; vni: number }

/** One host command, inside the namespace when asked. Errors keep the command's stderr. */
async function host(o: JobNetHostOptions, file: string, args: string[], input?: string): Promise<string> {
  const [cmd, argv] = o.netns ? [IP, ['netns', 'exec', o.netns, file, ...args]] : [file, args];
  try {
    return (await run(cmd, argv, { timeoutMs: 15_000, env: ENV, extendEnv: false, ...(input !== undefined ? { input } : {}) })).stdout;
  } catch (err) {
    throw new JobNetApplyError(`${file} ${args.join(' ')}: ${(err as Error).message}`, err);
  }
}

interface LinkInfo { ifname: string; ifalias?: string; master?: string; linkinfo?: { info_kind?: string } }

/** The node's links by name (one `ip -j -d link show`). */
async function links(o: JobNetHostOptions): Promise<Map<string, LinkInfo>> {
  const list = JSON.parse(await host(o, IP, ['-j', '-d', 'link', 'show'])) as LinkInfo[];
  return new Map(list.map((l) => [l.ifname, l]));
}

/** The nftables tables present, as "family name". */
async function tables(o: JobNetHostOptions): Promise<Set<string>> {
  const j = JSON.parse(await host(o, NFT, ['-j', 'list', 'tables'])) as { nftables: Array<{ table?: { family: string; name: string } }> };
  return new Set(j.nftables.flatMap((x) => (x.table ? [`${x.table.family} ${x.table.name}`] : [])));
}

const claimPath = (dir: string, vni: number) => join(dir, `${vni.toString(16).padStart(6, '0')}.json`);

async function readClaim(dir: string, vni: number): Promise<Claim | undefined> {
  try {
    const c = JSON.parse(await readFile(claimPath(dir, vni), 'utf8')) as Claim;
    return typeof c.jobId === 'string' && c.vni === vni ? c : undefined;
  } catch {
    return undefined;
  }
}

async function locked<T>(o: JobNetHostOptions, vni: number, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = o.claimDir ?? DEFAULT_CLAIM_DIR;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return withLock(join(dir, `${vni.toString(16).padStart(6, '0')}.lock`), 'exclusive', () => fn(dir), { timeoutMs: 60_000 });
}

/** Create (or complete) this node's part of the job network. Idempotent; refuses a VNI another job holds here. */
export async function applyJobNet(plan: JobNetPlan, o: JobNetHostOptions = {}): Promise<void> {
  await locked(o, plan.vni, async (dir) => {
    const claim = await readClaim(dir, plan.vni);
    if (claim && claim.jobId !== plan.jobId) {
      throw new JobNetCollisionError(plan.vni, claim.jobId, `VNI ${plan.vni} is held on this node by job ${claim.jobId}: job ${plan.jobId} cannot have its private network here`);
    }
    const { bridge, vxlan, tap } = plan.ifaces;
    const have = await links(o);
    if (!claim) {
      // nothing of ours yet: a link with one of our names belongs to someone else
      const taken = [bridge, vxlan, tap].filter((n) => have.has(n));
      if (taken.length) throw new JobNetCollisionError(plan.vni, 'unknown', `interfaces ${taken.join(', ')} exist on this node but no job claims VNI ${plan.vni}: refusing to reuse them`);
      await writeFileAtomic(claimPath(dir, plan.vni), JSON.stringify({ jobId: plan.jobId, vni: plan.vni } satisfies Claim) + '\n', 0o600);
    }
    const mtu = String(plan.mtu);
    // the alias only tells an operator whose interface this is (`ip link`): ownership is the claim file
    const common = ['mtu', mtu, 'alias', plan.alias, 'addrgenmode', 'none'];
    if (!have.has(bridge)) await host(o, IP, ['link', 'add', 'name', bridge, 'type', 'bridge']);
    await host(o, IP, ['link', 'set', 'dev', bridge, ...common]);
    if (!have.has(vxlan)) {
      await host(o, IP, ['link', 'add', 'name', vxlan, 'type', 'vxlan', 'id', String(plan.vni), 'dstport', String(plan.port),
        'local', plan.self.underlay, 'nolearning']);
    }
    await host(o, IP, ['link', 'set', 'dev', vxlan, ...common, 'master', bridge]);
    if (!have.has(tap)) {
      await host(o, IP, ['tuntap', 'add', 'dev', tap, 'mode', 'tap', 'user', String(plan.owner.uid), 'group', String(plan.owner.gid)]);
    }
    await host(o, IP, ['link', 'set', 'dev', tap, ...common, 'master', bridge]);
    // the rules before any port is up: no frame crosses the bridge unfiltered
    await host(o, NFT, ['-f', '-'], jobNetRules(plan));
    // head-end replication: broadcast and unknown unicast go to every peer node; each remote VM's MAC to its node
    for (const peer of plan.peers) await host(o, BRIDGE, ['fdb', 'append', ZERO_MAC, 'dev', vxlan, 'dst', peer, 'self', 'permanent']);
    for (const m of plan.members) {
      if (m.index !== plan.self.index) await host(o, BRIDGE, ['fdb', 'replace', m.mac, 'dev', vxlan, 'dst', m.underlay, 'self', 'permanent']);
    }
    for (const dev of [vxlan, tap, bridge]) await host(o, IP, ['link', 'set', 'dev', dev, 'up']);
  });
}

/** Remove this node's part of the job network: interfaces, rules, claim. Idempotent; leaves another job's alone. */
export async function removeJobNet(plan: JobNetPlan, o: JobNetHostOptions = {}): Promise<void> {
  await locked(o, plan.vni, async (dir) => {
    const claim = await readClaim(dir, plan.vni);
    if (claim && claim.jobId !== plan.jobId) return; // not ours: the holder removes it
    if (!claim) return;
    const have = await links(o);
    // the tap first (the VM's port), the bridge last (deleting it detaches whatever is left)
    for (const dev of [plan.ifaces.tap, plan.ifaces.vxlan, plan.ifaces.bridge]) if (have.has(dev)) await host(o, IP, ['link', 'del', 'dev', dev]);
    const t = await tables(o);
    for (const family of ['bridge', 'inet']) if (t.has(`${family} ${plan.table}`)) await host(o, NFT, ['delete', 'table', family, plan.table]);
    await rm(claimPath(dir, plan.vni), { force: true });
  });
}
