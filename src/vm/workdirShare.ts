// The job's working directory is served to the guest by virtiofsd, which runs as root. Between the check that the
// directory belongs to the job user and virtiofsd opening it, a user who owns a parent could swap it for a symlink
// (to /etc, say). So the directory is pinned by inode before virtiofsd starts, and what virtiofsd really serves —
// the root of its sandboxed child, known only once QEMU has connected — must be that same inode.
import { constants } from 'node:fs';
import { lstat, open, readFile, stat } from 'node:fs/promises';
import { VmSpecError, VmStartError } from './errors.js';

/** Why `path` cannot be a working directory shared for uid `uid` (0: any owner), or undefined. lstat: a symlink
 * is not a directory here. The one owner check of a shared directory; pinWorkdir repeats it on the opened inode. */
export async function workdirProblem(path: string, uid: number): Promise<{ kind: 'not-dir' } | { kind: 'owner'; uid: number } | undefined> {
  const st = await lstat(path).catch(() => undefined);
  if (!st || !st.isDirectory()) return { kind: 'not-dir' };
  // the share is written with the guest caller's ids: never hand a job a directory its user does not own
  if (uid !== 0 && st.uid !== uid) return { kind: 'owner', uid: st.uid };
  return undefined;
}

/** A driver's check of a spec's workdir (VmSpecError naming the problem). */
export async function checkSpecWorkdir(w: { hostPath: string; uid: number }): Promise<void> {
  const p = await workdirProblem(w.hostPath, w.uid);
  if (p?.kind === 'not-dir') throw new VmSpecError(`workdir ${w.hostPath} is not a directory (symlinks are refused)`);
  if (p?.kind === 'owner') throw new VmSpecError(`workdir ${w.hostPath} is owned by uid ${p.uid}, not by the job user (uid ${w.uid})`);
}

export interface PinnedDir { dev: bigint; ino: bigint; uid: number }

/** Open the directory without following a final symlink and check its owner; returns its identity. */
export async function pinWorkdir(path: string, uid: number): Promise<PinnedDir> {
  const fh = await open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
    throw new VmStartError(`the working directory ${path} cannot be shared: ${err.code === 'ELOOP' || err.code === 'ENOTDIR' ? 'it is a symbolic link or not a directory' : err.message}`, '', { cause: err });
  });
  try {
    const st = await fh.stat({ bigint: true });
    if (Number(st.uid) !== uid) throw new VmStartError(`the working directory ${path} is owned by uid ${st.uid}, not by the job's uid ${uid}`);
    return { dev: st.dev, ino: st.ino, uid };
  } finally {
    await fh.close();
  }
}

/** Wait until virtiofsd (pid) has forked its sandboxed server and check that the server's root is the pinned
 * directory. Throws VmStartError when it serves anything else or never gets there within timeoutMs. */
export async function checkServedRoot(virtiofsdPid: number, pinned: PinnedDir, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const hostRoot = await stat('/', { bigint: true });
  for (;;) {
    const kids = (await readFile(`/proc/${virtiofsdPid}/task/${virtiofsdPid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean);
    for (const kid of kids) {
      const root = await stat(`/proc/${kid}/root`, { bigint: true }).catch(() => undefined);
      if (!root || (root.dev === hostRoot.dev && root.ino === hostRoot.ino)) continue; // not pivoted yet
      if (root.dev === pinned.dev && root.ino === pinned.ino) return;
      throw new VmStartError('the working directory was replaced while it was being shared into the VM');
    }
    if (Date.now() > deadline) throw new VmStartError(`virtiofsd did not start serving the working directory within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The pids of running virtiofsd processes serving `hostPath` (for drivers where a daemon, libvirtd, started
 * virtiofsd and did not tell us its pid). */
export async function virtiofsdPidsFor(hostPath: string): Promise<number[]> {
  const { readdir } = await import('node:fs/promises');
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!argv[0]?.endsWith('virtiofsd')) continue;
    if (argv.some((a) => a === `source=${hostPath}` || a === `--shared-dir=${hostPath}`)) out.push(Number(name));
  }
  // virtiofsd's sandboxed child has the same command line: keep only the processes that started it
  const parentOf = async (pid: number): Promise<number> =>
    Number(/^\d+ \(.*\) \S+ (\d+)/s.exec(await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''))?.[1] ?? 0);
  const parents = await Promise.all(out.map(parentOf));
  return out.filter((_, i) => !out.includes(parents[i]!));
}
