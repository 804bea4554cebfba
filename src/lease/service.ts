/** Leases as the user's CLI sees them: authorise a request with the grid-job policy, submit its pilot, reconcile
 * the registry with the batch system, delete. No root, no daemon: the registry is files in the user's home, the
 * batch system is the source of truth for "does the pilot still exist". */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SiteConfig } from '../config/types.js';
import { decide, type Decision, type Identity } from '../policy/decide.js';
import { decideWithoutTicket } from '../job/decision.js';
import { Refusal } from '../job/outcome.js';
import { issueTicket, loadTicketKey } from '../ticket/index.js';
import { WnodError, describe } from '../util/errors.js';
import type { LrmAdapter, PilotStatus } from '../lrm/adapter.js';
import { TERMINAL } from './events.js';
import { MAX_GROUP, createLeaseDir, newLeaseId, readLease, recordEvent, type Lease, type LeaseRequest } from './registry.js';
import { pilotScript } from './pilot.js';

/** The request was refused before anything reached the batch system; `reason` is for the user. */
export class LeaseDenied extends WnodError {
  constructor(readonly reason: string, options?: { cause?: unknown }) {
    super('denied', reason, options);
  }
}

export interface Requester {
  user: string;
  uid: number;
  primaryGroup: string;
  identity: Identity;   // verified proxy FQANs, or the local groups
}

export interface LeaseAsk {
  image: string;
  cpus?: number | undefined;
  memoryMB?: number | undefined;
  hours?: number | undefined;
  /** a lease group: this many VMs of the image, one per node, held by one pilot (default 1) */
  nodes?: number | undefined;
  authorizedKeys: string;
}

const KEY_LINE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [\x20-\x7e]{0,200})?$/;

/** Public keys for authorized_keys, strictly: one plain key per line (no options such as command=), ≤ 20 keys. */
export function parsePublicKeys(text: string, file: string): string {
  if (/PRIVATE KEY/.test(text)) throw new LeaseDenied(`${file} is a private key: give the public key (the .pub file)`);
  const keys = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (keys.length === 0) throw new LeaseDenied(`${file} holds no ssh public key`);
  if (keys.length > 20) throw new LeaseDenied(`${file} holds ${keys.length} keys; at most 20`);
  for (const [i, k] of keys.entries()) {
    if (!KEY_LINE.test(k)) throw new LeaseDenied(`${file} line ${i + 1} is not an ssh public key (type base64 [comment], no options)`);
  }
  return keys.join('\n') + '\n';
}

/** The policy's answer for a lease (pure): the grid decision, then the lease bounds. */
export function authorise(cfg: SiteConfig, who: Requester, ask: Omit<LeaseAsk, 'authorizedKeys'>): Extract<Decision, { allow: true }> & { hours: number } {
  const hours = ask.hours ?? cfg.lease.defaultHours;
  if (!(hours * 3600 >= 60) || hours > cfg.lease.maxHours) throw new LeaseDenied(`a lease lasts from 1 minute to ${cfg.lease.maxHours} hours on this site; asked for ${hours}`);
  if (!cfg.images.some((i) => i.id === ask.image)) {
    throw new LeaseDenied(`image ${ask.image} is not offered by this site (it offers: ${cfg.images.map((i) => i.id).join(', ') || 'none'})`);
  }
  const d = decide({ tags: [ask.image], cpus: ask.cpus, memoryMinMB: ask.memoryMB, memoryMaxMB: ask.memoryMB }, who.identity,
    { policy: cfg.policy, images: cfg.images, defaultQueue: cfg.lrm.queue });
  if (!d.allow) throw new LeaseDenied(d.reason);
  return { ...d, hours };
}

/** How the decision reaches the node: a ticket signed here when this user may read the key (root, a submit
 * group); otherwise the node's `policy.no_ticket: group-default` decides by the job's group, so the request must
 * be exactly what that gives — checked now, never after submission. */
export async function carrier(cfg: SiteConfig, who: Requester, d: Extract<Decision, { allow: true }>, hours: number): Promise<string | undefined> {
  let key: Buffer | undefined;
  try {
    key = await loadTicketKey(cfg.ticket.keyFile, { allowGroup: cfg.ticket.keyGroup });
  } catch { /* not readable by this user: the group path below */ }
  if (key) {
    return issueTicket({
      image: d.image, cpus: d.cpus, memoryMB: d.memoryMB, rule: d.rule, account: who.user, identity: who.identity, vo: who.identity.vo ?? '',
      // valid while the pilot may wait in the queue: the ticket lifetime, and at least the lease itself
      ce: cfg.site.ceHost, lifetimeS: Math.max(cfg.ticket.lifetimeS, Math.ceil(hours * 3600)),
    }, key);
  }
  let g;
  try {
    g = decideWithoutTicket(cfg, who.primaryGroup);
  } catch (err) {
    throw new LeaseDenied(`this host cannot sign a lease ticket for you and the site runs no job without a ticket for group ${who.primaryGroup}: ${err instanceof Refusal ? err.reason : describe(err)}`, { cause: err });
  }
  if (g.mode !== 'vm') throw new LeaseDenied(`this site runs jobs of group ${who.primaryGroup} without a VM; a lease needs one`);
  if (g.image.id !== d.image.id || g.record.cpus !== d.cpus || g.record.memoryMB !== d.memoryMB) {
    throw new LeaseDenied(`this host cannot sign a lease ticket for you; without one, the site gives group ${who.primaryGroup} only image ${g.image.id} with ${g.record.cpus} cpu(s) and ${g.record.memoryMB} MB (asked: ${d.image.id}, ${d.cpus} cpu(s), ${d.memoryMB} MB)`);
  }
  return undefined;
}

/** A lease group (nodes > 1) is a multi-node pilot: only Slurm runs those here (Torque's nodes=N is not wired), and
 * only a site with a job network gives its VMs one (docs/virtual-clusters.md). Refused before anything is recorded. */
export function groupAllowed(cfg: SiteConfig, lrm: Pick<LrmAdapter, 'name'>, nodes: number): void {
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_GROUP) throw new LeaseDenied(`a lease holds 1 to ${MAX_GROUP} VMs; asked for ${nodes}`);
  if (nodes === 1) return;
  if (lrm.name !== 'slurm') throw new LeaseDenied(`lease groups (--nodes ${nodes}) need a Slurm site; this site's batch system is ${lrm.name}, which wnod runs one VM per lease on`);
  if (!cfg.jobNetwork) throw new LeaseDenied(`lease groups (--nodes ${nodes}) need the site's job network (job_network in the wnod config), which this site has not configured`);
}

/** Create a lease: authorise, write the registry entry, submit the pilot. Nothing reaches the LRM unless allowed. */
export async function createLease(cfg: SiteConfig, lrm: LrmAdapter, root: string, who: Requester, ask: LeaseAsk): Promise<Lease> {
  const d = authorise(cfg, who, ask);
  const nodes = ask.nodes ?? 1;
  groupAllowed(cfg, lrm, nodes);
  const ticket = await carrier(cfg, who, d, d.hours);
  const id = newLeaseId();
  const request: LeaseRequest = {
    v: 1, id, user: who.user, image: d.image.id, cpus: d.cpus, memoryMB: d.memoryMB, hours: d.hours, created: new Date().toISOString(),
    rule: d.rule, authorisedBy: who.identity.source === 'proxy' ? 'proxy' : 'local', ticket: ticket !== undefined,
    ...(nodes > 1 ? { nodes } : {}),
  };
  const dir = await createLeaseDir(root, request, ask.authorizedKeys);
  await recordEvent(dir, { event: 'requested', by: 'cli' });
  let jobId: string;
  try {
    jobId = await lrm.submit({
      script: pilotScript({ leaseId: id, ticket }), workdir: dir, name: `wnod-${id}`, walltimeS: Math.round(d.hours * 3600),
      cpus: d.cpus, memoryMB: d.memoryMB, ...(nodes > 1 ? { nodes } : {}), queue: cfg.lease.queue ?? d.queue, jobClass: cfg.lrm.jobClass,
      stdoutPath: join(dir, 'pilot.out'), stderrPath: join(dir, 'pilot.err'),
    });
  } catch (err) {
    await recordEvent(dir, { event: 'failed', by: 'cli', reason: clip(`submission failed: ${describe(err)}`) });
    return readLease(root, id);
  }
  await recordEvent(dir, { event: 'queued', by: 'cli', jobId });
  return readLease(root, id);
}

const clip = (s: string, n = 500): string => s.replace(/[^\x20-\x7e]+/g, ' ').slice(0, n);

/** The last `wnod:` line of the pilot's output (a prologue refusal says why there). */
async function pilotSays(dir: string): Promise<string | undefined> {
  const text = await readFile(join(dir, 'pilot.out'), 'utf8').catch(() => '') + '\n' + await readFile(join(dir, 'pilot.err'), 'utf8').catch(() => '');
  const lines = text.split('\n').filter((l) => /^wnod\b/.test(l));
  return lines.length ? clip(lines.at(-1)!, 300) : undefined;
}

/** Bring one lease in line with the batch system: a non-terminal lease whose pilot the LRM no longer runs is
 * failed (or released, when it was deleted before its VM started); a failed lease whose pilot still exists is
 * cancelled. Returns the lease as it is now. */
export async function reconcile(lrm: LrmAdapter, root: string, lease: Lease): Promise<Lease> {
  if (!lease.jobId) return lease;
  let st: PilotStatus;
  try {
    st = await lrm.status(lease.jobId);
  } catch {
    return lease; // the batch system did not answer: judge nothing
  }
  if (TERMINAL.has(lease.state)) {
    if (lease.state === 'failed' && (st === 'queued' || st === 'running')) await lrm.cancel(lease.jobId).catch(() => {});
    return lease;
  }
  if (st === 'queued' || st === 'running') return lease;
  // re-read: the pilot may have recorded its end between our read and the LRM's answer
  const now = await readLease(root, lease.id);
  if (TERMINAL.has(now.state)) return now;
  const started = now.history.some((e) => e.event === 'running');
  const deleted = now.history.some((e) => e.event === 'terminating' && e.by === 'cli');
  if (deleted && !started) {
    await recordEvent(now.dir, { event: 'released', by: 'recovery', reason: 'deleted before its VM started' });
  } else {
    const says = await pilotSays(now.dir);
    const why = st === 'unknown' ? `the batch system no longer knows pilot job ${now.jobId}` : `pilot job ${now.jobId} ended without releasing the lease`;
    await recordEvent(now.dir, { event: 'failed', by: 'recovery', reason: clip(says ? `${why}: ${says}` : why) });
  }
  return readLease(root, lease.id);
}

/** Poll until the lease reaches one of `states` (or a terminal state), at most `timeoutMs`; reconciles with the
 * LRM every `lrmEveryMs`. */
export async function waitFor(lrm: LrmAdapter, root: string, id: string, states: ReadonlySet<string>, timeoutMs: number, lrmEveryMs = 2000): Promise<Lease> {
  const deadline = Date.now() + timeoutMs;
  let nextLrm = Date.now() + Math.min(lrmEveryMs, 500);
  for (;;) {
    let l = await readLease(root, id);
    if (states.has(l.state) || TERMINAL.has(l.state)) return l;
    if (Date.now() >= nextLrm) {
      l = await reconcile(lrm, root, l);
      if (states.has(l.state) || TERMINAL.has(l.state)) return l;
      nextLrm = Date.now() + lrmEveryMs;
    }
    if (Date.now() >= deadline) return l;
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Delete: record the user's request, cancel the pilot, wait for its end. */
export async function deleteLease(lrm: LrmAdapter, root: string, id: string, timeoutMs: number): Promise<Lease> {
  const l = await readLease(root, id);
  if (TERMINAL.has(l.state)) return l;
  await recordEvent(l.dir, { event: 'terminating', by: 'cli', reason: 'deleted by the user' });
  if (l.jobId) await lrm.cancel(l.jobId);
  else await recordEvent(l.dir, { event: 'released', by: 'cli', reason: 'deleted before it was submitted' });
  return waitFor(lrm, root, id, TERMINAL, timeoutMs, 1000);
}
