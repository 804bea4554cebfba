// The signed decision that travels from the submit filter (CE) to the prologue (worker node) inside the job
// script: `# wnod-ticket: <payload>.<mac>`, an HMAC-SHA256 over the claims with a key both sides share.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { lstat, readFile, open, readdir, unlink, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { WnodError } from '../util/errors.js';
import { lookupGroupId } from '../util/unixUsers.js';
import type { Image } from '../config/types.js';

export interface TicketClaims {
  v: 1;
  image: string;     // image id
  digest: string;    // image digest at decision time
  account: string;   // local account the filter ran as; must equal the prologue's argv[2]
  dn: string;        // user DN ('' when unknown)
  fqan: string;      // primary FQAN ('' when only the VO is known)
  vo: string;
  cpus: number;
  memoryMB: number;
  rule: string;      // the policy rule that allowed it
  ce: string;        // CE host that issued it
  iat: number;       // issued at, seconds since the epoch
  exp: number;       // expiry, seconds since the epoch
  nonce: string;     // 32 hex characters, refused when seen twice on one node
}

export type TicketErrorCode = 'malformed' | 'bad-signature' | 'expired' | 'not-yet-valid' | 'replayed' | 'bad-key' | 'stale-image' | 'wrong-account';

export class TicketError extends WnodError {
  constructor(code: TicketErrorCode, message: string) {
    super(code, message);
  }
}

const DOMAIN = 'wnod-ticket-v1.'; // domain separation: this key signs nothing else
const MAX_TOKEN = 4096;
const TOKEN_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/;
const SKEW_S = 300;
const NONCE = /^[0-9a-f]{32}$/;
const MIN_KEY_BYTES = 32;

function mac(key: Buffer, payload: string): Buffer {
  return createHmac('sha256', key).update(DOMAIN).update(payload).digest();
}

/** A fresh nonce for a new ticket. */
export function newNonce(): string {
  return randomBytes(16).toString('hex');
}

/** Sign claims into a token `<base64url(json)>.<base64url(mac)>`. */
export function signTicket(claims: TicketClaims, key: Buffer): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  return `${payload}.${mac(key, payload).toString('base64url')}`;
}

/** What a ticket is issued for: an allowed decision, for a local account, by a CE. */
export interface TicketGrant {
  image: { id: string; digest: string };
  cpus: number;
  memoryMB: number;
  rule: string;
  account: string;
  identity?: { dn?: string | undefined; fqans: readonly string[] } | undefined;
  vo: string;
  ce: string;
  /** seconds the ticket stays valid from `now` */
  lifetimeS: number;
}

/** Issue a ticket: the one place claims are made (the submit filter, the lease CLI). */
export function issueTicket(g: TicketGrant, key: Buffer, now: Date = new Date()): string {
  const iat = Math.floor(now.getTime() / 1000);
  return signTicket({
    v: 1, image: g.image.id, digest: g.image.digest, account: g.account, dn: g.identity?.dn ?? '', fqan: g.identity?.fqans[0] ?? '',
    vo: g.vo, cpus: g.cpus, memoryMB: g.memoryMB, rule: g.rule, ce: g.ce, iat, exp: iat + g.lifetimeS, nonce: newNonce(),
  }, key);
}

const FIELDS: Record<keyof TicketClaims, 'string' | 'number'> = {
  v: 'number', image: 'string', digest: 'string', account: 'string', dn: 'string', fqan: 'string', vo: 'string',
  cpus: 'number', memoryMB: 'number', rule: 'string', ce: 'string', iat: 'number', exp: 'number', nonce: 'string',
};

/** Has `token` a ticket's shape (`<base64url payload>.<base64url mac>`, bounded)? Says nothing of its validity. */
export function hasTicketShape(token: string): boolean {
  return token.length <= MAX_TOKEN && TOKEN_SHAPE.test(token);
}

/** Verify a token's MAC first, then its shape and dates. Throws TicketError with a specific code. */
export function verifyTicket(token: string, key: Buffer, now: Date = new Date()): TicketClaims {
  if (!hasTicketShape(token)) {
    throw new TicketError('malformed', 'the ticket is not a wnod ticket');
  }
  const [payload, sig] = token.split('.') as [string, string];
  const want = mac(key, payload);
  const got = Buffer.from(sig, 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) {
    throw new TicketError('bad-signature', 'the ticket signature is not valid (forged, altered, or signed with another key)');
  }
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    throw new TicketError('malformed', 'the ticket payload is not JSON');
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) throw new TicketError('malformed', 'the ticket payload is not an object');
  const c = claims as Record<string, unknown>;
  for (const [k, t] of Object.entries(FIELDS)) {
    if (typeof c[k] !== t) throw new TicketError('malformed', `the ticket field ${k} is missing or not a ${t}`);
  }
  if (Object.keys(c).length !== Object.keys(FIELDS).length) throw new TicketError('malformed', 'the ticket has unknown fields');
  const tc = c as unknown as TicketClaims;
  if (tc.v !== 1) throw new TicketError('malformed', `unsupported ticket version ${tc.v}`);
  if (!NONCE.test(tc.nonce)) throw new TicketError('malformed', 'the ticket nonce is malformed');
  const t = Math.floor(now.getTime() / 1000);
  if (tc.iat > t + SKEW_S) throw new TicketError('not-yet-valid', `the ticket was issued in the future (${new Date(tc.iat * 1000).toISOString()})`);
  if (tc.exp < t) throw new TicketError('expired', `the ticket expired at ${new Date(tc.exp * 1000).toISOString()}`);
  return tc;
}

/** Read the shared HMAC key. Refused when it is not a regular file, is readable by others, or is
 * group-readable unless `allowGroup` names the file's group (a CE whose BLAH runs as many pool accounts). */
export async function loadTicketKey(path: string, opts: { allowGroup?: string | undefined } = {}): Promise<Buffer> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    throw new TicketError('bad-key', `ticket key ${path}: ${err.code === 'ENOENT' ? 'does not exist' : err.message}`);
  });
  if (!st.isFile()) throw new TicketError('bad-key', `ticket key ${path}: not a regular file`);
  if (st.mode & 0o007) throw new TicketError('bad-key', `ticket key ${path}: accessible by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  if (st.mode & 0o070) {
    const gid = opts.allowGroup ? await lookupGroupId(opts.allowGroup) : undefined;
    if (gid === undefined || gid !== st.gid || st.mode & 0o030) {
      throw new TicketError('bad-key', `ticket key ${path}: group-accessible (mode ${(st.mode & 0o777).toString(8)}) and the group is not ticket.key_group; chmod 600 it`);
    }
  }
  const key = await readFile(path);
  if (key.length < MIN_KEY_BYTES) throw new TicketError('bad-key', `ticket key ${path}: shorter than ${MIN_KEY_BYTES} bytes`);
  return key;
}

/** The catalog image a ticket names, refused when it is gone or its digest changed since the decision. */
export function ticketImage(claims: TicketClaims, images: readonly Image[]): Image {
  const img = images.find((i) => i.id === claims.image);
  if (!img) throw new TicketError('stale-image', `image ${claims.image} is no longer offered by this site`);
  if (img.digest !== claims.digest) throw new TicketError('stale-image', `image ${claims.image} changed since the job was submitted; resubmit the job`);
  return img;
}

/** Refuse a ticket whose nonce this node has seen; record it otherwise. The record is a file named by the
 * nonce (validated hex) created with O_EXCL, so two racing prologues cannot both pass. Expired records are pruned. */
export async function checkAndRecordNonce(dir: string, claims: TicketClaims, now: Date = new Date()): Promise<void> {
  if (!NONCE.test(claims.nonce)) throw new TicketError('malformed', 'the ticket nonce is malformed');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    const fh = await open(join(dir, claims.nonce), 'wx', 0o600);
    await fh.writeFile(`${claims.exp}\n`);
    await fh.close();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new TicketError('replayed', 'this ticket was already used on this node (a copied job script?)');
    }
    throw err;
  }
  // Prune now and then (1 in 16), never on the critical path's error branch.
  if (claims.nonce.endsWith('0')) await pruneNonces(dir, now).catch(() => {});
}

async function pruneNonces(dir: string, now: Date): Promise<void> {
  const t = Math.floor(now.getTime() / 1000);
  for (const name of await readdir(dir)) {
    if (!NONCE.test(name)) continue;
    const exp = Number((await readFile(join(dir, name), 'utf8').catch(() => '')).trim());
    if (Number.isFinite(exp) && exp > 0 && exp + SKEW_S < t) await unlink(join(dir, name)).catch(() => {});
  }
}
