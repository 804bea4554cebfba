// The node-local image cache. Entries are keyed by digest, so a new digest in the catalog is a new entry and the
// old one stays while VMs use it:
//   <dir>/images/<sha256>/{disk,kernel,initrd}   the files, read-only (a base is never written)
//   <dir>/images/<sha256>/meta.json              digest/size/mtime per file, image ids, last use, holders
//   <dir>/locks/<sha256>.lock                    flock: exclusive while an entry is fetched or its record changes
//   <dir>/locks/evict.lock                       one eviction at a time
//   <dir>/tmp/<sha256>.<role>.<pid>.<rand>.part  copies in flight (same file system: atomic rename)
//   <dir>/tmp/<sha256>.<role>.part               an HTTP download cut short, continued by the next fetch (Range);
//                                                dropped when the job that wanted it is over, or after a day
//   <dir>/trash/                                 entries being deleted (renamed away first: they vanish at once)
//   <dir>/fetch.log                              one JSON line per completed fetch
// Every process that wants an entry takes its exclusive lock, so 16 processes asking for an uncached image at
// once make exactly one copy: the first fetches, the others wait and then find it. Lock files are never deleted
// (deleting a lock file others wait on splits them across two inodes).
import { appendFile, lstat, mkdir, readFile, readdir, rename, rm, rmdir, stat, chmod, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { CacheConfig, Image } from '../config/types.js';
import { writeFileAtomic } from '../util/atomic.js';
import { WnodError } from '../util/errors.js';
import { acquireLock, withLock, LockTimeoutError } from '../util/lock.js';
import { checkDigest, checkHolder, imageArtifacts, imageDigest, ROLES, type Role, type RoleArtifact } from './artifacts.js';
import { fetchArtifact, hashFile, isSha256, type FetchProgress } from './fetch.js';
import { isComplete, metaSize, newMeta, parseMeta, renderMeta, type EntryMeta } from './meta.js';
import { planEviction, type EvictCandidate } from './evict-plan.js';
import { sampleDigest } from './sample.js';

/** What `hit` compares besides size and mtime (see FileRecord). */
async function fingerprint(path: string): Promise<{ ino: number; ctimeMs: number; sample: string }> {
  const st = await lstat(path);
  return { ino: st.ino, ctimeMs: st.ctimeMs, sample: await sampleDigest(path) };
}

/** What `acquire` hands to a VM driver: the cached files and the reference taken for `holder`. */
export interface CachedImage {
  digest: string;
  files: { disk?: string; kernel?: string; initrd?: string };
  holder: string;
  /** bytes this acquire had to fetch: 0 is a cache hit (the metrics count hits and misses from it) */
  fetchedBytes: number;
}

/** One entry as `list()` sees it. */
export interface CacheEntry {
  digest: string;
  path: string;
  imageIds: string[];
  roles: Role[];
  files: Partial<Record<Role, { path: string; size: number; sha256?: string }>>;
  size: number;
  complete: boolean;
  fetchedAt?: string;
  lastUsed: string;
  holders: string[];
  /** set when meta.json is missing or invalid (a leftover of a crash; evictable) */
  metaError?: string;
}

export interface FileVerdict {
  role: Role;
  path: string;
  ok: boolean;
  expected: string;
  actual?: string;
  error?: string;
  /** the bad file was removed: the next acquire fetches it again */
  removed: boolean;
}

export interface VerifyReport {
  digest: string;
  imageIds: string[];
  ok: boolean;
  files: FileVerdict[];
  /** the entry has no valid record (leftover of a crash): nothing to verify, prune removes it */
  error?: string;
}

export interface PrefetchProgress extends FetchProgress {
  imageId: string;
  role: Role;
}

export interface PrefetchResult {
  imageId: string;
  digest?: string;
  status: 'cached' | 'fetched' | 'failed';
  bytes: number;
  error?: WnodError | Error;
}

export interface EvictResult {
  totalBefore: number;
  totalAfter: number;
  highBytes: number;
  lowBytes: number;
  evicted: { digest: string; imageIds: string[]; size: number; lastUsed: string }[];
  /** entries kept although eviction wanted room: held by a VM, or busy (locked) at the time */
  kept: { digest: string; reason: 'in-use' | 'busy' }[];
}

export interface AcquireOptions {
  /** wait at most this long for another process fetching the same entry (default: as long as it takes) */
  lockTimeoutMs?: number;
  /** stop fetching when this aborts (the prologue's deadline); a cut download is kept and resumed next time */
  signal?: AbortSignal;
  onProgress?: (role: Role, p: FetchProgress) => void;
}

/** The cache directory is not ours alone (wrong owner, a symlink, not a directory). */
export class CacheDirError extends WnodError {
  constructor(readonly dir: string, why: string) {
    super('cache-dir-unsafe', `cache directory ${dir}: ${why}`);
  }
}

const GiB = 2 ** 30;
const META = 'meta.json';
const RELEASE_LOCK_TIMEOUT_MS = 300_000;
/** A cut download older than this is not continued (the source may have moved on): removed instead. */
const RESUME_KEEP_MS = 86_400_000;

/** The node-local, root-only image cache described in the module comment. */
export class ImageCache {
  readonly dir: string;
  private layoutReady: Promise<void> | undefined;

  constructor(readonly config: CacheConfig, private readonly now: () => Date = () => new Date()) {
    if (typeof config.dir !== 'string' || !config.dir.startsWith('/')) throw new CacheDirError(String(config.dir), 'must be an absolute path');
    if (!(config.lowWatermarkGB >= 0) || !(config.highWatermarkGB >= config.lowWatermarkGB)) {
      throw new CacheDirError(config.dir, `watermarks must satisfy 0 <= low (${config.lowWatermarkGB}) <= high (${config.highWatermarkGB})`);
    }
    this.dir = config.dir;
  }

  /** Path of an entry's directory (digest validated). */
  entryDir(digest: string): string {
    return join(this.dir, 'images', checkDigest(digest));
  }

  private lockPath(digest: string): string {
    return join(this.dir, 'locks', `${checkDigest(digest)}.lock`);
  }

  /** Make sure the image is cached and record `holder` (a VM id) as using it. Single-flight across processes. */
  async acquire(image: Image, holder: string, opts: AcquireOptions = {}): Promise<CachedImage> {
    checkHolder(holder);
    const digest = imageDigest(image);
    const artifacts = imageArtifacts(image);
    await this.ensureLayout();
    return withLock(this.lockPath(digest), 'exclusive', async () => {
      let fetchedBytes = 0;
      const meta = await this.fill(image, digest, artifacts, opts.onProgress, (bytes) => { fetchedBytes += bytes; }, opts.signal);
      const t = this.now().toISOString();
      meta.holders[holder] = t;
      meta.lastUsed = t;
      await this.writeMeta(meta);
      return { digest, files: this.filePaths(digest, meta), holder, fetchedBytes };
    }, { timeoutMs: opts.lockTimeoutMs });
  }

  /** Drop `holder`'s reference to entry `digest`. Returns whether it held one. Idempotent. */
  async release(digest: string, holder: string): Promise<boolean> {
    checkDigest(digest);
    checkHolder(holder);
    await this.ensureLayout();
    return withLock(this.lockPath(digest), 'exclusive', async () => {
      const meta = await this.readMeta(digest).catch(() => undefined);
      if (!meta || !(holder in meta.holders)) return false;
      delete meta.holders[holder];
      meta.lastUsed = this.now().toISOString();
      await this.writeMeta(meta);
      return true;
    }, { timeoutMs: RELEASE_LOCK_TIMEOUT_MS });
  }

  /** Drop every reference whose holder `isAlive` says is gone (for gc after crashed VMs). */
  async releaseStale(isAlive: (holder: string) => boolean | Promise<boolean>): Promise<{ digest: string; holder: string }[]> {
    const released: { digest: string; holder: string }[] = [];
    for (const e of await this.list()) {
      const dead: string[] = [];
      // ask outside the lock: isAlive may be slow (it may look at processes or a VM state dir)
      for (const h of e.holders) if (!(await isAlive(h))) dead.push(h);
      if (dead.length === 0) continue;
      for (const h of dead) if (await this.release(e.digest, h)) released.push({ digest: e.digest, holder: h });
    }
    return released;
  }

  /** Every entry in the cache, complete or not (reads without locking: records are replaced atomically). */
  async list(): Promise<CacheEntry[]> {
    await this.ensureLayout();
    return this.peek();
  }

  /** `list` without creating the layout first (read-only, for `wnod status`): no images/ yet means no entries. */
  async peek(): Promise<CacheEntry[]> {
    const names = (await readdir(join(this.dir, 'images')).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    })).filter(isSha256).sort();
    const out: CacheEntry[] = [];
    for (const digest of names) {
      const e = await this.describeEntry(digest);
      if (e) out.push(e);
    }
    return out;
  }

  /** Re-hash the cached files of the entries named by digest or image id (all when `ids` is empty/absent).
   * A file that fails is removed and its record dropped, so the next acquire fetches it again. */
  async verify(ids?: readonly string[]): Promise<VerifyReport[]> {
    const entries = (await this.list()).filter((e) => !ids || ids.length === 0 || ids.some((id) => id === e.digest || e.imageIds.includes(id)));
    const reports: VerifyReport[] = [];
    for (const e of entries) {
      const report: VerifyReport = { digest: e.digest, imageIds: e.imageIds, ok: true, files: [] };
      let meta: EntryMeta | undefined;
      try {
        meta = await this.readMeta(e.digest);
      } catch (err) {
        report.ok = false;
        report.error = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `no ${META}` : (err as Error).message;
      }
      for (const role of meta?.roles ?? []) {
        const rec = meta!.files[role];
        const path = join(e.path, role);
        if (!rec) {
          report.ok = false;
          report.files.push({ role, path, ok: false, expected: '', error: 'not fetched yet', removed: false });
          continue;
        }
        const v = await this.verifyFile(e.digest, role, path, rec.sha256);
        if (!v.ok) report.ok = false;
        report.files.push(v);
      }
      reports.push(report);
    }
    return reports;
  }

  /** Fetch the images that are not cached yet (no holder recorded). Failures are reported, not thrown. */
  async prefetch(images: readonly Image[], onProgress?: (p: PrefetchProgress) => void): Promise<PrefetchResult[]> {
    await this.ensureLayout();
    const results: PrefetchResult[] = [];
    for (const image of images) {
      let fetched = 0;
      try {
        const digest = imageDigest(image);
        const artifacts = imageArtifacts(image);
        await withLock(this.lockPath(digest), 'exclusive', async () => {
          const meta = await this.fill(image, digest, artifacts, (role, p) => onProgress?.({ imageId: image.id, role, ...p }), (n) => { fetched += n; });
          meta.lastUsed = this.now().toISOString();
          await this.writeMeta(meta);
        });
        results.push({ imageId: image.id, digest, status: fetched > 0 ? 'fetched' : 'cached', bytes: fetched });
      } catch (err) {
        results.push({ imageId: image.id, status: 'failed', bytes: fetched, error: err as Error });
      }
    }
    return results;
  }

  /** Above the high watermark, delete least recently used entries nobody holds until at or below the low one.
   * Entries with a holder, or locked by a fetch or acquire in progress, are kept. Safe to run concurrently. */
  async evict(): Promise<EvictResult> {
    await this.ensureLayout();
    const highBytes = Math.floor(this.config.highWatermarkGB * GiB);
    const lowBytes = Math.floor(this.config.lowWatermarkGB * GiB);
    return withLock(join(this.dir, 'locks', 'evict.lock'), 'exclusive', async () => {
      await this.emptyTrash();
      await this.removeOrphanTemps();
      const entries = await this.list();
      const byDigest = new Map(entries.map((e) => [e.digest, e]));
      const candidates: EvictCandidate[] = entries.map((e) => ({
        digest: e.digest, size: e.size, lastUsedMs: Date.parse(e.lastUsed) || 0, inUse: e.holders.length > 0,
      }));
      const first = planEviction(candidates, highBytes, lowBytes);
      const result: EvictResult = { totalBefore: first.totalBefore, totalAfter: first.totalBefore, highBytes, lowBytes, evicted: [], kept: [] };
      let total = first.totalBefore;
      const gone = new Set<string>();
      const busy = new Set<string>();
      // One entry at a time, re-planning after each: an entry found busy or newly held is replaced by the next
      // least recently used one.
      let next = first.evict[0];
      while (next !== undefined) {
        const e = byDigest.get(next)!;
        const outcome = await this.evictEntry(next);
        if (outcome === 'evicted') {
          gone.add(next);
          total -= e.size;
          result.evicted.push({ digest: next, imageIds: e.imageIds, size: e.size, lastUsed: e.lastUsed });
        } else {
          busy.add(next);
          result.kept.push({ digest: next, reason: outcome });
        }
        const remaining = candidates.filter((c) => !gone.has(c.digest)).map((c) => (busy.has(c.digest) ? { ...c, inUse: true } : c));
        next = planEviction(remaining, lowBytes, lowBytes).evict[0];
      }
      if (first.evict.length > 0 && total > lowBytes) {
        for (const c of candidates) if (c.inUse) result.kept.push({ digest: c.digest, reason: 'in-use' });
      }
      result.totalAfter = total;
      return result;
    });
  }

  // ---- internals -------------------------------------------------------------------------------------------

  /** Under the entry lock: fetch every role whose file is missing or does not match its record. */
  private async fill(image: Image, digest: string, artifacts: RoleArtifact[], onProgress?: (role: Role, p: FetchProgress) => void,
    onFetched?: (bytes: number) => void, signal?: AbortSignal): Promise<EntryMeta> {
    const dir = this.entryDir(digest);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let meta = await this.readMeta(digest).catch(() => undefined);
    if (!meta) meta = newMeta(digest, artifacts.map((a) => a.role), this.now());
    for (const a of artifacts) if (!meta.roles.includes(a.role)) meta.roles.push(a.role);
    if (!meta.imageIds.includes(image.id)) meta.imageIds.push(image.id);
    try {
      await this.fetchMissing(image, digest, artifacts, meta, onProgress, onFetched, signal);
    } catch (err) {
      await rmdir(dir).catch(() => {}); // only succeeds when nothing at all arrived: leave no empty entry behind
      throw err;
    }
    return meta;
  }

  private async fetchMissing(image: Image, digest: string, artifacts: RoleArtifact[], meta: EntryMeta,
    onProgress?: (role: Role, p: FetchProgress) => void, onFetched?: (bytes: number) => void, signal?: AbortSignal): Promise<void> {
    const dir = this.entryDir(digest);
    for (const a of artifacts) {
      const path = join(dir, a.role);
      if (await this.hit(meta, a, path)) continue;
      delete meta.files[a.role];
      await this.removeTemps(digest, a.role, { keepResumable: true }); // a crashed copy: gone; a cut download: continued
      const t0 = Date.now();
      const r = await fetchArtifact(a.source, a.sha256, path, {
        tmpDir: join(this.dir, 'tmp'), tmpPrefix: `${digest}.${a.role}`, onProgress: onProgress && ((p) => onProgress(a.role, p)),
        resume: true, ...(signal ? { signal } : {}),
      });
      meta.files[a.role] = { sha256: r.sha256, size: r.size, mtimeMs: r.mtimeMs, source: a.source, ...(await fingerprint(path)) };
      meta.fetchedAt = this.now().toISOString();
      await this.writeMeta(meta); // record each file as soon as it is in: a crash later does not lose it
      await this.logFetch({ digest, role: a.role, imageId: image.id, source: a.source, bytes: r.size, ms: Date.now() - t0 });
      onFetched?.(r.size);
    }
  }

  /** A cache hit: the record names the expected digest and the file still has the recorded size and mtime, inode
   * and change time (a write at the same size with the mtime set back still moves ctime), and sample digest. A
   * record from before fingerprints gets them now. A miss re-fetches the file. */
  private async hit(meta: EntryMeta, a: RoleArtifact, path: string): Promise<boolean> {
    const rec = meta.files[a.role];
    if (!rec || rec.sha256 !== a.sha256) return false;
    const st = await lstat(path).catch(() => undefined);
    if (!st || !st.isFile() || st.size !== rec.size || st.mtimeMs !== rec.mtimeMs) return false;
    if (rec.ino === undefined || rec.ctimeMs === undefined || rec.sample === undefined) {
      Object.assign(rec, await fingerprint(path));
      return true;
    }
    if (st.ino !== rec.ino || st.ctimeMs !== rec.ctimeMs) return false;
    return (await sampleDigest(path).catch(() => '')) === rec.sample;
  }

  private filePaths(digest: string, meta: EntryMeta): CachedImage['files'] {
    const files: CachedImage['files'] = {};
    for (const role of meta.roles) if (meta.files[role]) files[role] = join(this.entryDir(digest), role);
    return files;
  }

  private async readMeta(digest: string): Promise<EntryMeta> {
    const path = join(this.entryDir(digest), META);
    const meta = parseMeta(await readFile(path, 'utf8'), path);
    if (meta.digest !== digest) throw new WnodError('cache-meta-invalid', `${path}: records digest ${meta.digest}, expected ${digest}`);
    return meta;
  }

  private async writeMeta(meta: EntryMeta): Promise<void> {
    await writeFileAtomic(join(this.entryDir(meta.digest), META), renderMeta(meta), 0o600);
  }

  private async logFetch(rec: Record<string, unknown>): Promise<void> {
    // one short line per O_APPEND write: lines from concurrent processes never interleave
    await appendFile(join(this.dir, 'fetch.log'), JSON.stringify({ time: this.now().toISOString(), pid: process.pid, ...rec }) + '\n', { mode: 0o600 });
  }

  private async describeEntry(digest: string): Promise<CacheEntry | undefined> {
    const path = this.entryDir(digest);
    const dirSt = await lstat(path).catch(() => undefined);
    if (!dirSt?.isDirectory()) return undefined;
    try {
      const meta = await this.readMeta(digest);
      const files: CacheEntry['files'] = {};
      for (const [role, rec] of Object.entries(meta.files)) files[role as Role] = { path: join(path, role), size: rec.size, sha256: rec.sha256 };
      return {
        digest, path, imageIds: meta.imageIds, roles: meta.roles, files, size: metaSize(meta), complete: isComplete(meta),
        fetchedAt: meta.fetchedAt, lastUsed: meta.lastUsed, holders: Object.keys(meta.holders).sort(),
      };
    } catch (err) {
      // no valid record (a crash between rename and record, or a damaged file): count what is on disk
      const files: CacheEntry['files'] = {};
      let size = 0;
      for (const role of ROLES) {
        const st = await lstat(join(path, role)).catch(() => undefined);
        if (st?.isFile()) { files[role] = { path: join(path, role), size: st.size }; size += st.size; }
      }
      return {
        digest, path, imageIds: [], roles: [], files, size, complete: false, lastUsed: dirSt.mtime.toISOString(), holders: [],
        metaError: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no meta.json' : (err as Error).message,
      };
    }
  }

  private async verifyFile(digest: string, role: Role, path: string, expected: string): Promise<FileVerdict> {
    let before;
    let actual: string;
    try {
      // hash without the lock (a 10 GB re-hash must not block VM starts); decide under it
      before = await stat(path);
      actual = (await hashFile(path)).sha256;
    } catch (err) {
      return { role, path, ok: false, expected, error: (err as Error).message, removed: false };
    }
    if (actual === expected) return { role, path, ok: true, expected, actual, removed: false };
    const removed = await withLock(this.lockPath(digest), 'exclusive', async () => {
      const now = await stat(path).catch(() => undefined);
      if (!now || now.ino !== before.ino || now.mtimeMs !== before.mtimeMs) return false; // replaced meanwhile
      const meta = await this.readMeta(digest).catch(() => undefined);
      if (meta) {
        delete meta.files[role];
        await this.writeMeta(meta);
      }
      await unlink(path); // running VMs keep their open inode; new ones get a fresh copy
      return true;
    });
    return { role, path, ok: false, expected, actual, removed };
  }

  /** Delete one entry if nobody holds it and nobody has it locked; it disappears at once (rename to trash). */
  private async evictEntry(digest: string): Promise<'evicted' | 'in-use' | 'busy'> {
    let lock;
    try {
      lock = await acquireLock(this.lockPath(digest), 'exclusive', { wait: false });
    } catch (err) {
      if (err instanceof LockTimeoutError) return 'busy';
      throw err;
    }
    try {
      const meta = await this.readMeta(digest).catch(() => undefined);
      if (meta && Object.keys(meta.holders).length > 0) return 'in-use';
      const trash = join(this.dir, 'trash', `${digest}.${randomBytes(4).toString('hex')}`);
      await rename(this.entryDir(digest), trash);
      await rm(trash, { recursive: true, force: true });
      return 'evicted';
    } finally {
      await lock.release();
    }
  }

  private async emptyTrash(): Promise<void> {
    const trash = join(this.dir, 'trash');
    for (const name of await readdir(trash)) await rm(join(trash, name), { recursive: true, force: true });
  }

  /** Drop the partial downloads of entry `digest` kept for a retry (the job that wanted them is over), unless a
   * fetch of it is running right now. Returns the names removed. */
  async discardPartial(digest: string): Promise<string[]> {
    checkDigest(digest);
    await this.ensureLayout();
    // every job's last teardown calls this: when nothing is partial (the usual case), no lock (a process) is taken.
    // A part that appears after this look belongs to a fetch under way, which the lock below would skip too.
    if (!(await this.mayHavePartial(digest))) return [];
    let lock;
    try {
      lock = await acquireLock(this.lockPath(digest), 'exclusive', { wait: false });
    } catch (err) {
      if (err instanceof LockTimeoutError) return []; // another job is fetching it: its part is its own
      throw err;
    }
    try {
      const removed: string[] = [];
      for (const role of ROLES) removed.push(...await this.removeTemps(digest, role));
      await rmdir(this.entryDir(digest)).catch(() => {}); // an entry nothing arrived in
      return removed;
    } finally {
      await lock.release();
    }
  }

  /** A temp file of `digest` in tmp/, or its entry directory empty: what discardPartial removes. */
  private async mayHavePartial(digest: string): Promise<boolean> {
    const temps = await readdir(join(this.dir, 'tmp')).catch(() => [] as string[]);
    if (temps.some((n) => n.startsWith(`${digest}.`) && n.endsWith('.part'))) return true;
    return (await readdir(this.entryDir(digest)).catch(() => undefined))?.length === 0;
  }

  /** Remove `<digest>.<role>.*.part` (under the entry's lock); `keepResumable` keeps a cut download younger than
   * a day for the next fetch to continue. */
  private async removeTemps(digest: string, role: Role, o: { keepResumable?: boolean } = {}): Promise<string[]> {
    const tmp = join(this.dir, 'tmp');
    const prefix = `${digest}.${role}.`;
    const removed: string[] = [];
    for (const name of await readdir(tmp)) {
      if (!name.startsWith(prefix) || !name.endsWith('.part')) continue;
      if (o.keepResumable && name === `${prefix}part`) {
        const st = await lstat(join(tmp, name)).catch(() => undefined);
        if (st?.isFile() && this.now().getTime() - st.mtimeMs < RESUME_KEEP_MS) continue;
      }
      await rm(join(tmp, name), { force: true });
      removed.push(name);
    }
    return removed;
  }

  /** Temp files of crashed fetches whose entry nobody is working on. */
  private async removeOrphanTemps(): Promise<void> {
    const tmp = join(this.dir, 'tmp');
    const digests = new Set((await readdir(tmp)).map((n) => n.slice(0, 64)).filter(isSha256));
    for (const digest of digests) {
      let lock;
      try {
        lock = await acquireLock(this.lockPath(digest), 'exclusive', { wait: false });
      } catch (err) {
        if (err instanceof LockTimeoutError) continue;
        throw err;
      }
      try {
        for (const role of ROLES) await this.removeTemps(digest, role, { keepResumable: true });
      } finally {
        await lock.release();
      }
    }
  }

  /** Create the layout once per instance; the directory must be ours alone (root-only, 0700). */
  ensureLayout(): Promise<void> {
    this.layoutReady ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const st = await lstat(this.dir);
      if (!st.isDirectory()) throw new CacheDirError(this.dir, 'is not a directory (a symlink is not accepted)');
      const uid = process.getuid?.() ?? 0;
      if (st.uid !== uid) throw new CacheDirError(this.dir, `is owned by uid ${st.uid}, not by us (uid ${uid})`);
      if ((st.mode & 0o777) !== 0o700) await chmod(this.dir, 0o700);
      for (const sub of ['images', 'locks', 'tmp', 'trash']) {
        const p = join(this.dir, sub);
        await mkdir(p, { mode: 0o700 }).catch((err) => { if (err.code !== 'EEXIST') throw err; });
        const s = await lstat(p);
        if (!s.isDirectory() || s.uid !== uid) throw new CacheDirError(this.dir, `${sub}/ is not a directory owned by uid ${uid}`);
      }
    })();
    this.layoutReady.catch(() => { this.layoutReady = undefined; });
    return this.layoutReady;
  }
}
