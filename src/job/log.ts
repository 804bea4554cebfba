/** The hooks' two audiences: one clear line for the user (stdout → the job's .o file) and the details for the
 * admin in the root-only log (config.logFile, JSON lines, 0600). Secrets and hypervisor details go to the log only. */
import { open, mkdir, readFile, lstat, rename, unlink } from 'node:fs/promises';
import { withLock } from '../util/lock.js';
import { constants } from 'node:fs';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import { userLine } from './outcome.js';

export interface HookLog {
  /** Tell the user one line (stdout of the hook = the job's output file). */
  user(text: string): void;
  /** Record details for the admin in the root-only log; never throws (a broken log must not fail a job). */
  detail(event: string, fields?: Record<string, unknown>): Promise<void>;
}

/** Where the root log goes and when it rotates: past `maxBytes`, `file` becomes `file.1`, … up to `file.<keep>`. */
export interface LogTarget {
  file: string;
  maxBytes: number;
  keep: number;
}

/** The root log of a site config (log_file, log_max_mb, log_keep). */
export function logTarget(cfg: { logFile: string; log: { maxBytes: number; keep: number } }): LogTarget {
  return { file: cfg.logFile, maxBytes: cfg.log.maxBytes, keep: cfg.log.keep };
}

/** A logger for one hook run of one job. The log is created 0600 in a 0700 directory if missing. */
export function hookLog(target: LogTarget, hook: string, jobId: string | undefined, out: Writable = process.stdout): HookLog {
  const logFile = target.file;
  return {
    user(text) {
      out.write(userLine(text) + '\n');
    },
    async detail(event, fields = {}) {
      const line = JSON.stringify({ time: new Date().toISOString(), hook, job: jobId, pid: process.pid, event, ...fields }) + '\n';
      try {
        await appendPrivate(logFile, line, target);
      } catch (err) {
        process.stderr.write(`wnod ${hook}: cannot write log ${logFile}: ${(err as Error).message}\n`);
      }
    },
  };
}

/** Append one line to a root-only file: O_APPEND (one write, no interleaving), no symlinks, mode forced to 0600.
 * With `rotation`, a line that would take the file past maxBytes rotates it first (rotateLog). */
export async function appendPrivate(path: string, line: string, rotation?: { maxBytes: number; keep: number }): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  if (rotation) {
    const bytes = Buffer.byteLength(line);
    const size = await lstat(path).then((s) => s.size, () => 0);
    // a failed rotation (lock timeout) must not lose the line: the file grows until a later write rotates it
    if (size > 0 && size + bytes > rotation.maxBytes) await rotateLog(path, rotation, bytes).catch(() => {});
  }
  const fh = await open(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    const st = await fh.stat();
    if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) await fh.chmod(0o600);
    await fh.write(line);
  } finally {
    await fh.close();
  }
}

/** The template builder's record (`<state>/templates/<BUILDS_LOG>`): one JSON line per `wnod snapshot build`. */
export const BUILDS_LOG = 'builds.jsonl';

/** One line of the root log as written by `detail` (and `decision`): at least a time and an event. */
export interface LogEvent {
  time: string;
  event: string;
  [field: string]: unknown;
}

/** Parse JSON-lines log text (pure): the events in order, and how many lines were not events. */
export function parseLogLines(text: string): { events: LogEvent[]; corrupt: number } {
  const events: LogEvent[] = [];
  let corrupt = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v = JSON.parse(line) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v) && typeof (v as LogEvent).event === 'string' && typeof (v as LogEvent).time === 'string') events.push(v as LogEvent);
      else corrupt++;
    } catch {
      corrupt++;
    }
  }
  return { events, corrupt };
}

/** The log's rotated files, newest first: `<file>.1` … `<file>.<keep>`. */
export function rotatedLogs(file: string, keep: number): string[] {
  return Array.from({ length: keep }, (_, i) => `${file}.${i + 1}`);
}

/** Every event of the root log still on disk, oldest first (the rotated files, then the current one). Missing files
 * are empty; lines that are not events are counted. */
export async function readLogEvents(file: string, keep: number): Promise<{ events: LogEvent[]; corrupt: number }> {
  const out: { events: LogEvent[]; corrupt: number } = { events: [], corrupt: 0 };
  for (const path of [...rotatedLogs(file, keep).reverse(), file]) {
    const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    const r = parseLogLines(text);
    out.events.push(...r.events);
    out.corrupt += r.corrupt;
  }
  return out;
}

const ROTATE_LOCK_TIMEOUT_MS = 10_000;

/** Rotate `path` by renames under `<path>.lock`: `.<keep-1>` → `.<keep>` (the oldest is replaced), …, `path` → `.1`.
 * Writers do not take the lock: one that opened the file before the rename appends to `.1`, so no line is lost;
 * the size is checked again under the lock, so of many writers over the limit only the first one rotates. */
export async function rotateLog(path: string, rotation: { maxBytes: number; keep: number }, lineBytes = 0): Promise<void> {
  await withLock(`${path}.lock`, 'exclusive', async () => {
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isFile() || st.size === 0 || st.size + lineBytes <= rotation.maxBytes) return;
    if (rotation.keep === 0) {
      await unlink(path);
      return;
    }
    const names = rotatedLogs(path, rotation.keep);
    for (let i = names.length - 1; i >= 1; i--) {
      await rename(names[i - 1]!, names[i]!).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err; });
    }
    await rename(path, names[0]!);
  }, { timeoutMs: ROTATE_LOCK_TIMEOUT_MS });
}
