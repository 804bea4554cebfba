import { open, rename, unlink, mkdir, chmod, readdir } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pidRunning } from './pid.js';

/** Write a file atomically: a temp file beside it, fsync, rename. Readers see the old or the new content, never half
 * — and, with `owner`, never the new content under another owner (chown before the rename). */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644, owner?: { uid: number; gid: number }): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `${tempPrefix(path)}${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    if (owner) await fh.chown(owner.uid, owner.gid);
    await fh.chmod(mode); // the umask must not widen or narrow what we asked for
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

const tempPrefix = (path: string) => `.${basename(path)}.`;
const TEMP_TAIL = /^(\d+)\.[0-9a-f]{8}\.tmp$/;

/** Remove `path` (if any) and the temp files of writers of it that died mid-write — a SIGKILLed boot leaves one (the
 * epilogue kills a boot still running). A temp file whose writer is alive stays: that write is still under way. A killed writer not yet
 * reaped (a zombie) is dead: its write will never end. */
export async function removeFileAtomic(path: string): Promise<void> {
  await unlink(path).catch(ignoreMissing);
  const prefix = tempPrefix(path);
  for (const name of await readdir(dirname(path)).catch(() => [] as string[])) {
    const pid = name.startsWith(prefix) ? TEMP_TAIL.exec(name.slice(prefix.length))?.[1] : undefined;
    if (pid !== undefined && !(await pidRunning(Number(pid)))) await unlink(join(dirname(path), name)).catch(ignoreMissing);
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}

/** mkdir (with its parents) and then chmod to exactly `mode`: the process umask must not narrow it (pbs_mom runs
 * its hooks under the job umask, 077 by default, and a 0700 state dir locks the job user out of its VM). Parents it
 * had to create get `mode` too: a 0700 parent would lock the job user out just the same. */
export async function mkdirMode(path: string, mode: number): Promise<void> {
  const made = await mkdir(path, { recursive: true, mode });
  if (made === undefined) return chmod(path, mode);
  for (let d = path; d.length >= made.length; d = dirname(d)) await chmod(d, mode);
}
