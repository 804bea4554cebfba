// Fetch one artifact (a path, file:// or http(s):// URL) into the cache: stream it into a temp file beside its
// final place while hashing, fsync, check size and sha256, and only then rename it into place. Whatever goes
// wrong, nothing is visible under the final name and the temp file is removed — except, with `resume`, an HTTP
// download cut short (connection lost, the caller's deadline): its `.part` stays and the next fetch continues it
// with a Range request. A server that ignores the range, or bytes that do not add up to the digest, restart it clean.
import { copyFile as kernelCopy, open, rename, unlink, stat, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import https from 'node:https';
import { WnodError } from '../util/errors.js';

/** The source string itself is unusable (relative path, unknown scheme, remote file:// host). */
export class BadSourceError extends WnodError {
  constructor(readonly source: string, why: string) {
    super('bad-source', `image source '${source}': ${why}`);
  }
}

/** The source could not be opened or read to the end (missing, permission, HTTP error, connection lost). */
export class SourceUnreadableError extends WnodError {
  constructor(readonly source: string, why: string) {
    super('source-unreadable', `cannot read image source ${source}: ${why}`);
  }
}

/** The bytes read do not have the sha256 the catalog names. */
export class DigestMismatchError extends WnodError {
  constructor(readonly source: string, readonly expected: string, readonly actual: string, readonly bytes: number) {
    super('digest-mismatch', `image source ${source}: sha256 is ${actual} over ${bytes} bytes, the catalog expects ${expected}`);
  }
}

/** The number of bytes read differs from what was announced (Content-Length) or expected. */
export class SizeMismatchError extends WnodError {
  constructor(readonly source: string, readonly expected: number, readonly actual: number) {
    super('size-mismatch', `image source ${source}: got ${actual} bytes, expected ${expected}`);
  }
}

/** The caller's deadline (its AbortSignal) ended the fetch; with `resume`, what arrived is kept for the next one. */
export class FetchAbortedError extends WnodError {
  constructor(readonly source: string, readonly bytes: number) {
    super('fetch-deadline', `fetching ${source} was stopped after ${bytes} bytes (deadline)`);
  }
}

/** The cache file system is full (ENOSPC / EDQUOT) while writing. */
export class NoSpaceError extends WnodError {
  constructor(readonly source: string, readonly dir: string, readonly written: number) {
    super('no-space', `no space left in ${dir} after writing ${written} bytes of ${source}; nothing was kept`);
  }
}

/** Writing into the cache failed for another reason. */
export class CacheWriteError extends WnodError {
  constructor(readonly source: string, readonly dir: string, why: string) {
    super('cache-write-failed', `cannot write ${source} into ${dir}: ${why}`);
  }
}

export type ParsedSource = { kind: 'file'; path: string } | { kind: 'http'; url: URL };

const SHA256_RE = /^[0-9a-f]{64}$/;

/** True for a sha256 in lower-case hex, the only form used in cache paths. */
export function isSha256(s: string): boolean {
  return SHA256_RE.test(s);
}

/** Classify a catalog source: an absolute path, file:///abs/path, or an http(s) URL. Pure. */
export function parseSource(source: string): ParsedSource {
  if (source.length === 0) throw new BadSourceError(source, 'empty');
  if (/[\0\n\r]/.test(source)) throw new BadSourceError(source, 'contains a NUL or newline');
  if (source.startsWith('/')) {
    if (!isAbsolute(source)) throw new BadSourceError(source, 'not an absolute path');
    return { kind: 'file', path: normalize(source) };
  }
  let url: URL;
  try {
    url = new URL(source);
  } catch {
    throw new BadSourceError(source, 'neither an absolute path nor a URL');
  }
  if (url.protocol === 'file:') {
    if (url.hostname !== '' && url.hostname !== 'localhost') throw new BadSourceError(source, `file:// URL names a remote host '${url.hostname}'`);
    return { kind: 'file', path: fileURLToPath(url) };
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    if (url.username || url.password) throw new BadSourceError(source, 'credentials in the URL are not accepted');
    return { kind: 'http', url };
  }
  throw new BadSourceError(source, `scheme '${url.protocol}' is not supported (path, file://, http://, https://)`);
}

export interface FetchProgress {
  bytes: number;
  /** known for files and for HTTP answers with a Content-Length */
  total?: number;
}

export interface FetchOptions {
  /** where the temp file goes; must be on the same file system as `dest` (atomic rename) */
  tmpDir: string;
  /** temp file name prefix, so a caller can find and remove its own leftovers (default: basename(dest)) */
  tmpPrefix?: string;
  /** expected size in bytes, if known */
  size?: number;
  onProgress?: (p: FetchProgress) => void;
  /** HTTP: give up when no byte arrives for this long (default 60 s) */
  idleTimeoutMs?: number;
  /** mode of the final file (default 0400: a cached base is never written) */
  mode?: number;
  /** keep an HTTP download cut short as `<tmpPrefix>.part` and continue it next time (the caller must make sure
   * only one fetch of that prefix runs at a time: the image cache holds the entry's lock) */
  resume?: boolean;
  /** stop when this aborts (FetchAbortedError) */
  signal?: AbortSignal;
}

export interface FetchResult {
  path: string;
  size: number;
  sha256: string;
  mtimeMs: number;
}

/** Errors raised by the source side, kept apart from errors of the cache side. */
class ReadSideError extends Error {}

const CHUNK = 4 << 20;  // 4 MiB reads: few syscalls, and the kernel reads ahead in big steps
// Early write-back steps (WriteBack): an HTTP download waits on the network anyway; a local copy runs at disk
// speed, where a shorter step keeps the disk busy from the start (bench/cache-copy.ts: 32 MiB).
const HTTP_WRITE_BACK_STEP = 64 << 20;
const LOCAL_WRITE_BACK_STEP = 32 << 20;
const MAX_REDIRECTS = 5;

/** Stream `source` into `dest` (atomic), verifying `sha256` on the way. See the module comment. */
export async function fetchArtifact(source: string, sha256: string, dest: string, opts: FetchOptions): Promise<FetchResult> {
  try {
    return await fetchOnce(source, sha256, dest, opts);
  } catch (err) {
    // resumed bytes that do not add up (the source changed, a torn write): once more from zero (the part is gone)
    if (err instanceof DigestMismatchError && (err as DigestMismatchError & { resumed?: boolean }).resumed) return fetchOnce(source, sha256, dest, opts);
    throw err;
  }
}

/** The name of a resumable download of `tmpPrefix` (stable: the next attempt finds it). */
export function resumablePart(tmpDir: string, tmpPrefix: string): string {
  return join(tmpDir, `${tmpPrefix}.part`);
}

async function fetchOnce(source: string, sha256: string, dest: string, opts: FetchOptions): Promise<FetchResult> {
  const expected = sha256.toLowerCase();
  if (!isSha256(expected)) throw new BadSourceError(source, `expected sha256 '${sha256}' is not 64 hex digits`);
  const parsed = parseSource(source);
  const prefix = opts.tmpPrefix ?? basename(dest);
  const resumable = opts.resume === true && parsed.kind === 'http';
  const tmp = resumable ? resumablePart(opts.tmpDir, prefix) : join(opts.tmpDir, `${prefix}.${process.pid}.${randomBytes(6).toString('hex')}.part`);
  let out: FileHandle | undefined;
  let written = 0;
  let from = 0;
  let keep = false;
  try {
    // O_APPEND: every write lands at the end, whatever was there; O_NOFOLLOW: the cache's own file only
    out = await open(tmp, resumable ? constants.O_RDWR | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW : 'wx', 0o600);
    let hash = createHash('sha256');
    if (opts.signal?.aborted) throw new FetchAbortedError(source, 0);
    if (parsed.kind === 'file') {
      written = await copyLocal(parsed.path, tmp, out, hash, opts.onProgress, opts.signal);
    } else {
      from = resumable ? await hashPrefix(out, hash) : 0;
      const sink = new Sink(out, hash, opts.onProgress, from);
      try {
        await copyHttp(parsed.url, sink, opts.idleTimeoutMs ?? 60_000, 0, opts.signal);
        await sink.finish();
      } catch (err) {
        // what arrived before the cut is good: keep it for the next attempt (written through, no torn tail)
        keep = resumable && (err instanceof ReadSideError || err instanceof FetchAbortedError);
        throw err;
      } finally {
        written = sink.bytes;
      }
      hash = sink.hash;
      if (sink.restarted) from = 0;
    }
    if (opts.size !== undefined && written !== opts.size) throw new SizeMismatchError(source, opts.size, written);
    const actual = hash.digest('hex');
    if (actual !== expected) throw Object.assign(new DigestMismatchError(source, expected, actual, written), { resumed: from > 0 });
    await out.chmod(opts.mode ?? 0o400);
    await out.sync();
    await out.close();
    out = undefined;
    await rename(tmp, dest);
    await syncDir(dirname(dest));
    const st = await stat(dest);
    return { path: dest, size: st.size, sha256: actual, mtimeMs: st.mtimeMs };
  } catch (err) {
    await out?.close().catch(() => {});
    if (!keep) await unlink(tmp).catch(() => {});
    if (opts.signal?.aborted && !(err instanceof WnodError)) throw new FetchAbortedError(source, written);
    throw mapError(err, source, dirname(dest), written);
  }
}

/** Hash what a kept `.part` already holds; returns its length (where the download continues). */
async function hashPrefix(fh: FileHandle, hash: Hash): Promise<number> {
  const buf = Buffer.allocUnsafe(CHUNK);
  let pos = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
    if (bytesRead === 0) return pos;
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

function mapError(err: unknown, source: string, dir: string, written: number): unknown {
  if (err instanceof WnodError) return err;
  if (err instanceof ReadSideError) return new SourceUnreadableError(source, err.message);
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new NoSpaceError(source, dir, (err as SinkError).written ?? written);
  return new CacheWriteError(source, dir, (err as Error)?.message ?? String(err));
}

type SinkError = NodeJS.ErrnoException & { written?: number };

/** The write side: hashes and writes chunks in order, with early write-back. */
class Sink {
  bytes: number;
  /** the server sent the whole body instead of the range asked for: the part was emptied */
  restarted = false;
  private readonly writeBack: WriteBack;
  constructor(private readonly fh: FileHandle, public hash: Hash, private readonly onProgress?: (p: FetchProgress) => void, readonly from = 0) {
    this.bytes = from;
    this.writeBack = new WriteBack(fh, HTTP_WRITE_BACK_STEP);
  }
  total: number | undefined;

  /** Drop what the file holds and start over (O_APPEND: writes follow the new end). */
  async restart(): Promise<void> {
    await this.writeBack.idle();
    await this.fh.truncate(0);
    this.hash = createHash('sha256');
    this.bytes = 0;
    this.restarted = true;
  }

  async write(chunks: Buffer[]): Promise<void> {
    // the write runs in the thread pool while this thread hashes the same (read-only) bytes
    const len = chunks.reduce((n, c) => n + c.length, 0);
    const w = this.writeAll(chunks, len);
    for (const c of chunks) this.hash.update(c);
    try {
      await w;
    } catch (err) {
      (err as SinkError).written = this.bytes;
      throw err;
    }
    this.bytes += len;
    this.writeBack.wrote(len);
    this.onProgress?.({ bytes: this.bytes, total: this.total });
  }

  private async writeAll(chunks: Buffer[], len: number): Promise<void> {
    let done = 0;
    let bufs = chunks;
    while (done < len) {
      const { bytesWritten } = await this.fh.writev(bufs);
      if (bytesWritten <= 0) throw new Error('write returned 0 bytes');
      done += bytesWritten;
      if (done < len) bufs = skip(bufs, bytesWritten);
    }
  }

  async finish(): Promise<void> {
    await this.writeBack.settle();
  }
}

/** Early write-back of a file being written: a background fdatasync every `step` bytes, never waited for by the
 * writer, so the copy goes on while the disk writes and the final fsync has little left. At most one is in flight
 * (measured: waiting for the previous one before starting the next, or none at all, were both slower). */
class WriteBack {
  private since = 0;
  private busy = false;
  private error: Error | undefined;
  private flushing: Promise<void> = Promise.resolve();
  constructor(private readonly fh: FileHandle, private readonly step: number) {}

  /** `n` more bytes were written; throws a write-back error seen so far. */
  wrote(n: number): void {
    this.since += n;
    if (this.since >= this.step && !this.busy) {
      this.since = 0;
      this.busy = true;
      // a write-back error is reported once per open file: keep it, or a later fsync could pass over it
      this.flushing = this.fh.datasync().catch((err) => { this.error ??= err; }).finally(() => { this.busy = false; });
    }
    if (this.error) throw this.error;
  }

  /** Wait for the write-back in flight, whatever its outcome (before truncating or closing the file). */
  idle(): Promise<void> {
    return this.flushing;
  }

  /** Wait for the write-back in flight; throws the first write-back error. */
  async settle(): Promise<void> {
    await this.flushing;
    if (this.error) throw this.error;
  }
}

function skip(bufs: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) { n -= b.length; continue; }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

/** A local source: the kernel copies it (copy_file_range, as cp does: no bytes through this process) while this
 * thread hashes the *copy* as it grows, from the page cache, and the disk writes back what was hashed (`out`, the
 * temp file's writable handle). The digest is thus over the bytes the cache keeps, whatever the source does
 * meanwhile, and copy, hash and write-back overlap (bench/cache-copy.ts). Returns the bytes copied. */
async function copyLocal(path: string, tmp: string, out: FileHandle, hash: Hash, onProgress?: (p: FetchProgress) => void, signal?: AbortSignal): Promise<number> {
  let src: FileHandle;
  try {
    src = await open(path, 'r');
  } catch (err) {
    throw new ReadSideError((err as Error).message);
  }
  let copy: FileHandle | undefined;
  try {
    const st = await src.stat().catch((err) => { throw new ReadSideError((err as Error).message); });
    if (!st.isFile()) throw new ReadSideError(`${path} is not a regular file`);
    onProgress?.({ bytes: 0, total: st.size });
    copy = await open(tmp, 'r');
    let done = false;
    let failed: unknown;
    // the fd, not the path again: the file checked above is the one copied
    const copying = kernelCopy(`/proc/self/fd/${src.fd}`, tmp).then(() => { done = true; }, (err) => { failed = err; done = true; });
    const buf = Buffer.allocUnsafe(CHUNK);
    const writeBack = new WriteBack(out, LOCAL_WRITE_BACK_STEP);
    let pos = 0;
    try {
      for (;;) {
        if (failed) throw failed;
        if (signal?.aborted) throw new FetchAbortedError(path, pos);
        const wasDone = done;
        const { bytesRead } = await copy.read(buf, 0, CHUNK, pos);
        if (bytesRead > 0) {
          hash.update(buf.subarray(0, bytesRead));
          pos += bytesRead;
          writeBack.wrote(bytesRead);
          onProgress?.({ bytes: pos, total: st.size });
        } else if (wasDone) {
          break; // the copy had ended before this read found nothing more
        } else {
          await new Promise((r) => setTimeout(r, 2));
        }
        if (pos > st.size) break;
      }
    } finally {
      await copying; // never leave the copy running under a file about to be removed
      await writeBack.idle(); // nor a write-back under a handle about to be closed
    }
    if (failed) throw failed;
    await writeBack.settle();
    if (pos !== st.size) throw new ReadSideError(`${path} changed size while being read (${st.size} → ${pos} bytes)`);
    return pos;
  } finally {
    await copy?.close().catch(() => {});
    await src.close().catch(() => {});
  }
}

function copyHttp(url: URL, sink: Sink, idleTimeoutMs: number, redirects: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const get = url.protocol === 'https:' ? https.get : http.get;
    const from = sink.bytes;
    const headers: Record<string, string> = { 'user-agent': 'wnod-cache', 'accept-encoding': 'identity', ...(from > 0 ? { range: `bytes=${from}-` } : {}) };
    const req = get(url, { agent: false, headers, ...(signal ? { signal } : {}) }, (res) => {
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) return reject(new ReadSideError(`more than ${MAX_REDIRECTS} redirects`));
        let next: URL;
        try {
          next = new URL(res.headers.location, url);
        } catch {
          return reject(new ReadSideError(`bad redirect location '${res.headers.location}'`));
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') return reject(new ReadSideError(`redirect to unsupported scheme ${next.protocol}`));
        if (url.protocol === 'https:' && next.protocol === 'http:') return reject(new ReadSideError(`refusing a redirect from https to ${next.href}`));
        copyHttp(next, sink, idleTimeoutMs, redirects + 1, signal).then(resolve, reject);
        return;
      }
      if (from > 0 && status === 416) {
        // the range is past the source's end (it changed, or the part is whole but unverified): start over
        res.resume();
        sink.restart().then(() => copyHttp(url, sink, idleTimeoutMs, redirects, signal)).then(resolve, reject);
        return;
      }
      const partial = from > 0 && status === 206 && contentRangeStart(res.headers['content-range']) === from;
      if (status !== 200 && !partial) {
        res.resume();
        return reject(new ReadSideError(`HTTP ${status} ${res.statusMessage ?? ''} from ${url.href}`.trim()));
      }
      const cl = res.headers['content-length'];
      const length = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : undefined;
      const total = length === undefined ? undefined : partial ? from + length : length;
      sink.total = total;
      (async () => {
        // a server that ignores Range sends the whole body: the kept part goes
        if (from > 0 && !partial) await sink.restart();
        let batch: Buffer[] = [];
        let batchLen = 0;
        try {
          for await (const chunk of res as AsyncIterable<Buffer>) {
            batch.push(chunk);
            batchLen += chunk.length;
            if (batchLen >= CHUNK) {
              const full = batch;
              batch = [];
              batchLen = 0;
              await sink.write(full);
            }
          }
        } catch (err) {
          // the bytes that did arrive are good (in order): keep them for a resumed download
          if (batchLen > 0) await sink.write(batch);
          throw err;
        }
        if (batchLen > 0) await sink.write(batch);
        if (!res.complete) throw new ReadSideError(`connection to ${url.host} closed before the end of the body`);
        if (total !== undefined && sink.bytes !== total) throw new ReadSideError(`got ${sink.bytes} bytes, Content-Length said ${total}`);
      })().then(resolve, (err) => {
        req.destroy();
        if (signal?.aborted) return reject(new FetchAbortedError(url.href, sink.bytes));
        const code = (err as NodeJS.ErrnoException)?.code;
        // errors of the response stream are read-side; write errors (ENOSPC …) keep their code
        if (err instanceof ReadSideError || code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as Error)?.message === 'aborted') {
          reject(err instanceof ReadSideError ? err : new ReadSideError(`connection to ${url.host} lost: ${(err as Error).message}`));
        } else reject(err);
      });
    });
    req.setTimeout(idleTimeoutMs, () => req.destroy(new ReadSideError(`no data from ${url.host} for ${idleTimeoutMs} ms`)));
    req.on('error', (err) => reject(signal?.aborted ? new FetchAbortedError(url.href, sink.bytes) : err instanceof ReadSideError ? err : new ReadSideError((err as Error).message)));
  });
}

/** The first byte of a `Content-Range: bytes a-b/total` answer, or undefined. Pure. */
export function contentRangeStart(header: string | undefined): number | undefined {
  const m = header === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim());
  return m ? Number(m[1]) : undefined;
}

/** fsync a directory so that a rename in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Re-hash a file (for `verify`); returns its sha256 and size. */
export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, size);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
    return { sha256: hash.digest('hex'), size };
  } finally {
    await fh.close();
  }
}
