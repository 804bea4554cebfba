// The job's working directory is served to the guest by virtiofsd, which runs as root. Between the check that the
// directory belongs to the job user and virtiofsd opening it, a user who owns a parent could swap it for a symlink
// (to /etc, say). So the directory is pinned by inode before virtiofsd starts, and what virtiofsd really serves —
// the root of its sandboxed child, known only once QEMU has connected — must be that same inode.
import { constants } from 'node:fs';
import { lstat, open, readFile, realpath, stat, statfs } from 'node:fs/promises';
import { VmSpecError, VmStartError } from './errors.js';

export type WorkdirProblem = { kind: 'not-dir' } | { kind: 'owner'; uid: number } | { kind: 'fs'; why: string };

/** Why `path` cannot be a working directory shared for uid `uid` (0: any owner), or undefined. lstat: a symlink
 * is not a directory here. The one check of a shared directory; pinWorkdir repeats it on the opened inode. */
export async function workdirProblem(path: string, uid: number): Promise<WorkdirProblem | undefined> {
  const st = await lstat(path).catch(() => undefined);
  if (!st || !st.isDirectory()) return { kind: 'not-dir' };
  // only real file systems are shared: a /proc/<pid> of the user's own process passes the owner check below
  const why = await workdirFsProblem(await realpath(path).catch(() => path));
  if (why) return { kind: 'fs', why };
  // the share is written with the guest caller's ids: never hand a job a directory its user does not own
  if (uid !== 0 && st.uid !== uid) return { kind: 'owner', uid: st.uid };
  return undefined;
}

/** A driver's check of a spec's workdir (VmSpecError naming the problem). */
export async function checkSpecWorkdir(w: { hostPath: string; uid: number }): Promise<void> {
  const p = await workdirProblem(w.hostPath, w.uid);
  if (p?.kind === 'not-dir') throw new VmSpecError(`workdir ${w.hostPath} is not a directory (symlinks are refused)`);
  if (p?.kind === 'fs') throw new VmSpecError(`workdir ${w.hostPath} cannot be shared: it ${p.why}`);
  if (p?.kind === 'owner') throw new VmSpecError(`workdir ${w.hostPath} is owned by uid ${p.uid}, not by the job user (uid ${w.uid})`);
}

/** A value inside virtiofsd's `-o a=b,c=d` list: libfuse's option parser splits at commas and takes `\x` as a
 * literal x, so every comma and backslash of a path is escaped (else `/scratch/a,b` would share `/scratch/a` or
 * fail on option `b`). Pure. */
export function fuseOptValue(value: string): string {
  if (/[\0\n]/.test(value)) throw new VmStartError(`cannot pass ${JSON.stringify(value.slice(0, 200))} to virtiofsd (a NUL or newline)`);
  return value.replace(/[\\,]/g, (c) => `\\${c}`);
}

/** virtiofsd's command line for one VM's working directory (Debian 12's C virtiofsd). Pure. */
export function virtiofsdArgs(socketPath: string, hostPath: string): string[] {
  return [`--socket-path=${socketPath}`, '-o', `source=${fuseOptValue(hostPath)}`, '-o', 'cache=auto',
    '-o', 'no_posix_lock', '-o', 'no_xattr', '-o', 'log_level=warn'];
}

/** Kernel pseudo file systems (statfs f_type): their directories are owned by whoever a process runs as
 * (/proc/<pid>), yet sharing them hands a guest the host's kernel interfaces. */
const PSEUDO_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'], [0x62656572, 'sysfs'], [0x1cd1, 'devpts'], [0x27e0eb, 'cgroup'], [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'], [0x74726163, 'tracefs'], [0x73636673, 'securityfs'], [0xcafe4a11, 'bpf'],
  [0x6165676c, 'pstore'], [0x62656570, 'configfs'], [0x65735543, 'fusectl'], [0x42494e4d, 'binfmt_misc'],
  [0x6e736673, 'nsfs'], [0x19800202, 'mqueue'], [0x958458f6, 'hugetlbfs'], [0x0187, 'autofs'], [0x50495045, 'pipefs'],
]);
/** Trees of the host's kernel and devices, refused whatever their file system says (devtmpfs looks like tmpfs). */
const HOST_TREES = ['/proc', '/sys', '/dev'];

/** Why a resolved working directory on a file system of type `fsType` must not be shared (undefined: it may).
 * Pure. */
export function pseudoFsProblem(realPath: string, fsType: number): string | undefined {
  const tree = HOST_TREES.find((t) => realPath === t || realPath.startsWith(`${t}/`));
  if (tree) return `is under ${tree}, the host's kernel and device tree`;
  const name = PSEUDO_FS.get(fsType);
  return name ? `is on the kernel's ${name} file system, not a real one` : undefined;
}

/** pseudoFsProblem for a path on this host (statfs of the resolved path). */
export async function workdirFsProblem(realPath: string): Promise<string | undefined> {
  const fs = await statfs(realPath).catch(() => undefined);
  if (!fs) return 'cannot be examined (statfs failed)';
  return pseudoFsProblem(realPath, Number(fs.type));
}

export interface PinnedDir { dev: bigint; ino: bigint; uid: number }

/** Open the directory without following a final symlink and check its owner; returns its identity. */
export async function pinWorkdir(path: string, uid: number): Promise<PinnedDir> {
  const fh = await open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
    throw new VmStartError(`the working directory ${path} cannot be shared: ${err.code === 'ELOOP' || err.code === 'ENOTDIR' ? 'it is a symbolic link or not a directory' : err.message}`, '', { cause: err });
  });
  try {
    const st = await fh.stat({ bigint: true });
    // the inode we hold, whatever the path says now: a pseudo file system (a /proc/<pid> of the user's) is refused
    const fs = await statfs(`/proc/self/fd/${fh.fd}`).catch(() => undefined);
    const problem = fs ? pseudoFsProblem(path, Number(fs.type)) : 'cannot be examined (statfs failed)';
    if (problem) throw new VmStartError(`the working directory ${path} cannot be shared: it ${problem}`);
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
