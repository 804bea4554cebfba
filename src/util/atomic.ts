import { open, rename, unlink, mkdir, chmod } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Write a file atomically: a temp file beside it, fsync, rename. Readers see the old or the new content, never half
 * — and, with `owner`, never the new content under another owner (chown before the rename). */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644, owner?: { uid: number; gid: number }): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
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

/** mkdir (with its parents) and then chmod to exactly `mode`: the process umask must not narrow it (pbs_mom runs
 * its hooks under the job umask, 077 by default, and a 0700 state dir locks the job user out of its VM). Parents it
 * had to create get `mode` too: a 0700 parent would lock the job user out just the same. */
export async function mkdirMode(path: string, mode: number): Promise<void> {
  const made = await mkdir(path, { recursive: true, mode });
  if (made === undefined) return chmod(path, mode);
  for (let d = path; d.length >= made.length; d = dirname(d)) await chmod(d, mode);
}
