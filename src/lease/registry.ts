/** The per-user lease registry: `<home>/<lease.dir>/<id>/` holds the request (lease.json), the public keys the
 * VM's ssh server accepts (.ssh/authorized_keys: the directory is the VM's home), the pilot script and the events
 * (events/*.json, one file per notification, each written atomically). The directory is also the pilot's working
 * directory, shared into the VM, so the pilot records its own events there as the user. Root never writes here. */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { WnodError } from '../util/errors.js';
import { LEASE_ID } from '../header/scriptHeader.js';
import { eventFileName, parseEvent, replay, type LeaseEvent, type LeaseView } from './events.js';

/** What was asked for and granted (written once, at create). */
export interface LeaseRequest {
  v: 1;
  id: string;
  user: string;
  image: string;
  cpus: number;
  memoryMB: number;
  hours: number;
  created: string;        // ISO time
  rule: string;           // the policy rule that authorised it
  authorisedBy: 'proxy' | 'local';
  ticket: boolean;        // the pilot carries a signed ticket (else policy.no_ticket decides on the node)
  nodes?: number;         // a lease group: this many VMs, one per node (absent: one)
}

export interface Lease extends LeaseView {
  id: string;
  dir: string;
  request: LeaseRequest;
  /** event files that could not be read (named, not fatal: a lease stays visible) */
  problems: string[];
}

export class LeaseNotFound extends WnodError {
  constructor(id: string) {
    super('no-such-lease', `no lease ${id} in your lease registry`);
  }
}

/** The most VMs one lease group may hold (one per node). */
export const MAX_GROUP = 64;

export const newLeaseId = (): string => `l${randomBytes(5).toString('hex')}`;

/** The registry of the user whose home is `home`. */
export function registryDir(home: string, rel: string): string {
  return join(home, rel);
}

/** Create a lease's directory with its request and keys; returns the directory. */
export async function createLeaseDir(root: string, req: LeaseRequest, authorizedKeys: string): Promise<string> {
  if (!LEASE_ID.test(req.id)) throw new WnodError('bad-lease-id', `lease id ${JSON.stringify(req.id)} is malformed`);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const dir = join(root, req.id);
  await mkdir(dir, { mode: 0o700 }); // fails if it exists: ids are never reused
  // dropbear refuses keys in a group/other-writable home or .ssh
  await mkdir(join(dir, '.ssh'), { mode: 0o700 });
  await writeFileAtomic(join(dir, '.ssh', 'authorized_keys'), authorizedKeys, 0o600);
  await mkdir(join(dir, 'events'), { mode: 0o700 });
  await writeFileAtomic(join(dir, 'lease.json'), JSON.stringify(req, null, 2) + '\n', 0o600);
  return dir;
}

/** Append one event (atomic: temp file + rename). */
export async function recordEvent(dir: string, e: Omit<LeaseEvent, 't'> & { t?: number }): Promise<LeaseEvent> {
  const ev: LeaseEvent = { ...e, t: e.t ?? Date.now() } as LeaseEvent;
  await writeFileAtomic(join(dir, 'events', eventFileName(ev, randomBytes(3).toString('hex'))), JSON.stringify(ev) + '\n', 0o600);
  return ev;
}

function parseRequest(text: string, file: string): LeaseRequest {
  const r = JSON.parse(text) as LeaseRequest;
  if (r?.v !== 1 || !LEASE_ID.test(r.id) || typeof r.image !== 'string' || !Number.isInteger(r.cpus) || !Number.isInteger(r.memoryMB)) {
    throw new WnodError('bad-lease', `${file}: not a lease request`);
  }
  if (r.nodes !== undefined && !(Number.isInteger(r.nodes) && r.nodes >= 2 && r.nodes <= MAX_GROUP)) throw new WnodError('bad-lease', `${file}: nodes must be 2..${MAX_GROUP}`);
  return r;
}

/** Read one lease and replay its events. */
export async function readLease(root: string, id: string): Promise<Lease> {
  if (!LEASE_ID.test(id)) throw new LeaseNotFound(id);
  const dir = join(root, id);
  const st = await lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new LeaseNotFound(id);
  const request = parseRequest(await readFile(join(dir, 'lease.json'), 'utf8'), join(dir, 'lease.json'));
  const events: LeaseEvent[] = [];
  const problems: string[] = [];
  for (const name of (await readdir(join(dir, 'events')).catch(() => [] as string[])).sort()) {
    if (name.startsWith('.') || !name.endsWith('.json')) continue; // temp files of writes in progress
    const path = join(dir, 'events', name);
    try {
      const fst = await lstat(path);
      if (!fst.isFile() || fst.size > 65_536) throw new Error('not a small regular file');
      events.push({ ...parseEvent(await readFile(path, 'utf8'), name), seen: Math.round(fst.mtimeMs) });
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message}`);
    }
  }
  return { id, dir, request, problems, ...replay(events) };
}

/** Every lease of the registry, oldest first. */
export async function listLeases(root: string): Promise<Lease[]> {
  const out: Lease[] = [];
  for (const name of (await readdir(root).catch(() => [] as string[])).sort()) {
    if (!LEASE_ID.test(name)) continue;
    try {
      out.push(await readLease(root, name));
    } catch { /* a half-created lease dir (create crashed before lease.json): not a lease */ }
  }
  return out.sort((a, b) => a.request.created.localeCompare(b.request.created));
}
