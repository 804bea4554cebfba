// File locks that survive crashes. Node has no flock(2), but flock(1) can lock a file descriptor it inherits:
// we open the lock file here and hand the descriptor to `flock ... 3` as its fd 3. A flock(2) lock belongs to the
// open file description, which the child shares with us, so when flock(1) exits the lock stays held through our
// descriptor until we close it — or until we die, when the kernel releases it. No stale lock files, ever.
import { open, stat, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { spawn } from 'node:child_process';
import { WnodError } from './errors.js';

export type LockMode = 'shared' | 'exclusive';

export interface LockOptions {
  /** Give up after this long (default: wait for ever). Ignored when `wait` is false. */
  timeoutMs?: number;
  /** false: fail at once if the lock is held (default true). */
  wait?: boolean;
}

/** The lock could not be taken in time (or at once, with `wait: false`). */
export class LockTimeoutError extends WnodError {
  constructor(readonly path: string, readonly mode: LockMode, readonly timeoutMs: number | undefined) {
    super('lock-timeout', timeoutMs === undefined
      ? `lock ${path} (${mode}) is held by another process`
      : `lock ${path} (${mode}) not acquired within ${timeoutMs} ms: another process holds it`);
  }
}

/** flock(1) failed for a reason other than contention (missing binary, bad file, signal). */
export class LockError extends WnodError {
  constructor(readonly path: string, message: string) {
    super('lock-failed', message);
  }
}

/** A held lock. `release()` is idempotent. */
export interface Lock {
  readonly path: string;
  readonly mode: LockMode;
  release(): Promise<void>;
}

// flock(1) exits with this when it could not get the lock (-n or -w); chosen to differ from its own error codes.
const CONFLICT_EXIT = 75;
const FLOCK = '/usr/bin/flock';

/** Build flock(1)'s arguments for locking inherited fd 3. Pure, exported for tests. */
export function flockArgs(mode: LockMode, opts: LockOptions = {}): string[] {
  const args = [mode === 'shared' ? '--shared' : '--exclusive', '--conflict-exit-code', String(CONFLICT_EXIT)];
  if (opts.wait === false) args.push('--nonblock');
  else if (opts.timeoutMs !== undefined) {
    if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs < 0) throw new RangeError(`lock timeoutMs must be >= 0, got ${opts.timeoutMs}`);
    args.push('--wait', (opts.timeoutMs / 1000).toFixed(3));
  }
  args.push('3');
  return args;
}

// execa's types refuse a raw descriptor as an extra stdio entry, so this one child is spawned directly.
function lockDescriptor(fh: FileHandle, path: string, mode: LockMode, opts: LockOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(FLOCK, flockArgs(mode, opts), { stdio: ['ignore', 'ignore', 'pipe', fh.fd], shell: false });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => { if (stderr.length < 4096) stderr += d; });
    // a safety net only: flock's own --wait decides the timeout
    const net = opts.wait !== false && opts.timeoutMs !== undefined
      ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs + 30_000) : undefined;
    child.on('error', (err) => {
      clearTimeout(net);
      reject(new LockError(path, `cannot lock ${path} (${mode}): cannot run ${FLOCK}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(net);
      if (code === 0) return resolve();
      if (code === CONFLICT_EXIT) return reject(new LockTimeoutError(path, mode, opts.wait === false ? undefined : opts.timeoutMs));
      const why = stderr.trim() || (signal ? `killed by ${signal}` : `exit ${code}`);
      reject(new LockError(path, `cannot lock ${path} (${mode}) with ${FLOCK}: ${why}`));
    });
  });
}

/** Take a shared or exclusive lock on `path` (created 0600 if missing); released on `release()` or process death. */
export async function acquireLock(path: string, mode: LockMode, opts: LockOptions = {}): Promise<Lock> {
  // A lock file replaced under us (deleted and recreated) would lock nothing: retry on the new inode.
  for (let attempt = 0; attempt < 5; attempt++) {
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw new LockError(path, `cannot open lock file ${path}: ${(err as Error).message}`);
    }
    try {
      await lockDescriptor(fh, path, mode, opts);
      const [held, current] = await Promise.all([fh.stat(), stat(path).catch(() => undefined)]);
      if (current && current.ino === held.ino && current.dev === held.dev) {
        let released = false;
        return {
          path, mode,
          async release() {
            if (released) return;
            released = true;
            await fh.close();
          },
        };
      }
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    await fh.close();
  }
  throw new LockError(path, `lock file ${path} keeps being replaced while locking`);
}

/** Run `fn` while holding the lock; the lock is released however `fn` ends. */
export async function withLock<T>(path: string, mode: LockMode, fn: () => Promise<T> | T, opts: LockOptions = {}): Promise<T> {
  const lock = await acquireLock(path, mode, opts);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
