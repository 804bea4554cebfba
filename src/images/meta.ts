// The small JSON record beside each cache entry: which files it holds (digest, size, mtime — enough to trust a
// cache hit without re-hashing), which catalog images point at it, when it was last used, and who uses it now.
import { WnodError } from '../util/errors.js';
import { ROLES, type Role } from './artifacts.js';
import { isSha256 } from './fetch.js';

export interface FileRecord {
  sha256: string;
  size: number;
  mtimeMs: number;
  source: string;
  /** inode and change time when recorded: any write, truncate or utimes since changes ctime (absent: old record) */
  ino?: number;
  ctimeMs?: number;
  /** sha256 over evenly spaced 64 KiB samples of the file (images/sample.ts): a cheap check on every acquire */
  sample?: string;
}

export interface EntryMeta {
  version: 1;
  digest: string;
  /** the roles this entry must hold to be complete */
  roles: Role[];
  files: Partial<Record<Role, FileRecord>>;
  /** catalog ids that resolved to this digest */
  imageIds: string[];
  fetchedAt: string;
  lastUsed: string;
  /** holder (VM id) → since when (ISO time) */
  holders: Record<string, string>;
}

/** A metadata file that is not what this module writes. */
export class CacheMetaError extends WnodError {
  constructor(readonly path: string, message: string) {
    super('cache-meta-invalid', `${path}: ${message}`);
  }
}

const HOLDER_RE = /^[A-Za-z0-9._-]{1,64}$/;
const ISO_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

/** A fresh record for `digest` holding nothing yet. */
export function newMeta(digest: string, roles: Role[], now: Date): EntryMeta {
  const t = now.toISOString();
  return { version: 1, digest, roles: [...roles], files: {}, imageIds: [], fetchedAt: t, lastUsed: t, holders: {} };
}

/** True when every role the entry needs has a file record. */
export function isComplete(meta: EntryMeta): boolean {
  return meta.roles.every((r) => meta.files[r] !== undefined);
}

/** Total bytes of the recorded files. */
export function metaSize(meta: EntryMeta): number {
  return Object.values(meta.files).reduce((n, f) => n + (f?.size ?? 0), 0);
}

/** Parse and check a metadata file strictly; `path` is only for messages. */
export function parseMeta(text: string, path: string): EntryMeta {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new CacheMetaError(path, `not JSON: ${(err as Error).message}`);
  }
  const o = obj(v, path, '(top)');
  const bad = (key: string, why: string): never => { throw new CacheMetaError(path, `key '${key}': ${why}`); };
  if (o.version !== 1) bad('version', `expected 1, got ${JSON.stringify(o.version)}`);
  if (typeof o.digest !== 'string' || !isSha256(o.digest)) bad('digest', 'not a lower-case hex sha256');
  if (!Array.isArray(o.roles) || o.roles.some((r) => !ROLES.includes(r as Role))) bad('roles', `expected a list of ${ROLES.join('|')}`);
  const files: Partial<Record<Role, FileRecord>> = {};
  for (const [role, rec] of Object.entries(obj(o.files, path, 'files'))) {
    if (!ROLES.includes(role as Role)) bad(`files.${role}`, 'unknown role');
    const r = obj(rec, path, `files.${role}`);
    if (typeof r.sha256 !== 'string' || !isSha256(r.sha256)) bad(`files.${role}.sha256`, 'not a lower-case hex sha256');
    if (!Number.isSafeInteger(r.size) || (r.size as number) < 0) bad(`files.${role}.size`, 'not a byte count');
    if (typeof r.mtimeMs !== 'number' || !Number.isFinite(r.mtimeMs)) bad(`files.${role}.mtimeMs`, 'not a number');
    if (typeof r.source !== 'string') bad(`files.${role}.source`, 'not a string');
    if (r.ino !== undefined && !Number.isSafeInteger(r.ino)) bad(`files.${role}.ino`, 'not an inode number');
    if (r.ctimeMs !== undefined && (typeof r.ctimeMs !== 'number' || !Number.isFinite(r.ctimeMs))) bad(`files.${role}.ctimeMs`, 'not a number');
    if (r.sample !== undefined && (typeof r.sample !== 'string' || !isSha256(r.sample))) bad(`files.${role}.sample`, 'not a lower-case hex sha256');
    files[role as Role] = { sha256: r.sha256 as string, size: r.size as number, mtimeMs: r.mtimeMs as number, source: r.source as string,
      ...(r.ino !== undefined ? { ino: r.ino as number } : {}), ...(r.ctimeMs !== undefined ? { ctimeMs: r.ctimeMs as number } : {}),
      ...(r.sample !== undefined ? { sample: r.sample as string } : {}) };
  }
  if (!Array.isArray(o.imageIds) || o.imageIds.some((i) => typeof i !== 'string')) bad('imageIds', 'expected a list of strings');
  for (const k of ['fetchedAt', 'lastUsed'] as const) {
    if (typeof o[k] !== 'string' || !ISO_RE.test(o[k] as string)) bad(k, 'not an ISO time');
  }
  const holders: Record<string, string> = {};
  for (const [h, since] of Object.entries(obj(o.holders, path, 'holders'))) {
    if (!HOLDER_RE.test(h)) bad(`holders.${h.slice(0, 70)}`, 'not a VM id');
    if (typeof since !== 'string' || !ISO_RE.test(since)) bad(`holders.${h}`, 'not an ISO time');
    holders[h] = since as string;
  }
  return {
    version: 1, digest: o.digest as string, roles: o.roles as Role[], files, imageIds: o.imageIds as string[],
    fetchedAt: o.fetchedAt as string, lastUsed: o.lastUsed as string, holders,
  };
}

/** Serialise a record (stable key order, one trailing newline). */
export function renderMeta(meta: EntryMeta): string {
  return JSON.stringify(meta, null, 2) + '\n';
}

function obj(v: unknown, path: string, key: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CacheMetaError(path, `key '${key}': expected an object`);
  return v as Record<string, unknown>;
}
