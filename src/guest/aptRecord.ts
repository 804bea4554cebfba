/** Package versions resolved once and reused: `apt-cache` costs seconds per call (≈4 s of every
 * `wnod vm run --test-image` went to it), while the answer changes only when apt's package lists do. A small
 * root-owned record beside the cached build holds the answer with the lists' state it was read from; a later
 * `apt-get update` (or a changed source or pin) changes that state and the record is resolved again. On a machine
 * without package lists the record is used as it stands: what is already built keeps working without apt. */
import { createHash } from 'node:crypto';
import { open, readdir, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';

const RECORD_VERSION = 1;
const MAX_RECORD_BYTES = 64 * 1024;
export const APT_LISTS_DIR = '/var/lib/apt/lists';
export const APT_ETC_DIR = '/etc/apt';

/** Debian package names and versions as apt prints them: what may go into `apt-get download NAME=VERSION`. */
export const PACKAGE_NAME = /^[a-z0-9][a-z0-9.+-]*$/;
export const PACKAGE_VERSION = /^[A-Za-z0-9.+~:-]+$/;

/** A digest of what apt's candidates depend on: name, size and mtime of every package list (`*_Packages*`) and of
 * the sources and pins under /etc/apt; undefined when there is no package list at all. */
export async function aptListsState(dirs: { lists?: string; etc?: string } = {}): Promise<string | undefined> {
  const lists = dirs.lists ?? APT_LISTS_DIR;
  const etc = dirs.etc ?? APT_ETC_DIR;
  const names = (await readdir(lists).catch(() => [] as string[])).filter((n) => n.includes('_Packages')).sort();
  if (names.length === 0) return undefined;
  const h = createHash('sha256');
  const add = async (p: string) => {
    const st = await stat(p).catch(() => undefined);
    h.update(`${p}\0${st ? `${st.size}\0${st.mtimeMs}` : '-'}\n`);
  };
  for (const n of names) await add(join(lists, n));
  for (const f of ['sources.list', 'preferences']) await add(join(etc, f));
  for (const d of ['sources.list.d', 'preferences.d']) {
    for (const n of (await readdir(join(etc, d)).catch(() => [] as string[])).sort()) await add(join(etc, d, n));
  }
  return h.digest('hex');
}

interface Record<T> { v: number; apt: string; at: string; value: T }

/** Read a record written by this user and writable by nobody else (O_NOFOLLOW, bounded); undefined otherwise. */
async function readRecord<T>(path: string, valid: (v: unknown) => v is T): Promise<Record<T> | undefined> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.uid !== (process.getuid?.() ?? st.uid) || (st.mode & 0o022) !== 0 || st.size > MAX_RECORD_BYTES) return undefined;
    const r = JSON.parse(await fh.readFile('utf8')) as Partial<Record<unknown>>;
    if (r.v !== RECORD_VERSION || typeof r.apt !== 'string' || typeof r.at !== 'string' || !valid(r.value)) return undefined;
    return r as Record<T>;
  } catch {
    return undefined; // unreadable or not ours: resolve again
  } finally {
    await fh.close();
  }
}

/** `resolve()`'s answer, from the record at `path` when it was made from the present package lists (or when there
 * are no lists: then any record is the best there is); else resolved now and recorded. `valid` checks a record's
 * value strictly: it ends up in apt-get's argv and in cache keys. */
export async function resolvedOnce<T>(path: string, resolve: () => Promise<T>, valid: (v: unknown) => v is T,
  opts: { log?: (s: string) => void; lists?: string; etc?: string } = {}): Promise<T> {
  const state = await aptListsState(opts);
  const rec = await readRecord(path, valid);
  if (rec && (state === undefined || rec.apt === state)) {
    if (state === undefined) opts.log?.(`no apt package lists: using the versions resolved at ${rec.at}`);
    return rec.value;
  }
  const value = await resolve();
  // the state after resolving: a resolve that ran `apt-get update` changed the lists
  const after = await aptListsState(opts);
  if (after !== undefined) {
    await writeFileAtomic(path, JSON.stringify({ v: RECORD_VERSION, apt: after, at: new Date().toISOString(), value }, null, 2) + '\n', 0o644);
  }
  return value;
}
