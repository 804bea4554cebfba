/** A private libvirt daemon for tests: a root `libvirtd` in its own mount namespace, whose /etc/libvirt, /run/libvirt,
 * /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt (and /etc/passwd, /etc/group) are bind mounts of a temp dir,
 * listening on a socket in that temp dir. Nothing of the host's libvirt state is read or written.
 *
 * Why a namespace: as root libvirtd is the "system" daemon, whose qemu.conf and state paths are compiled in. Debian 12
 * without libvirt-daemon-system has no qemu.conf and no `libvirt-qemu` user, and libvirtd refuses to start the QEMU
 * driver when that user does not exist — so the namespace sees a passwd copy with it, and a qemu.conf that runs
 * QEMU as root without cgroups, namespaces or a security driver (a sandbox has none of them). Running QEMU as root
 * also keeps libvirt's /dev/kvm access check consistent, so it does not re-probe QEMU on every call (DESIGN A5). */
import { mkdtemp, mkdir, readFile, writeFile, rm, access, readdir } from 'node:fs/promises';
import { constants, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { run } from '../../src/util/run.js';
import { WnodError } from '../../src/util/errors.js';

export class LibvirtdStartError extends WnodError {
  constructor(message: string) {
    super('libvirtd-start', message);
  }
}

/** A running private daemon. */
export interface PrivateLibvirtd {
  /** connection URI for virsh -c / the libvirt driver */
  uri: string;
  /** the temp dir holding config, state, sockets and the daemon's log */
  dir: string;
  logFile: string;
  pid: number;
  /** Destroy every domain it runs, stop the daemon (TERM, then KILL), remove the temp dir unless keepDir. */
  stop(opts?: { keepDir?: boolean }): Promise<void>;
}

export interface StartOptions {
  /** parent of the temp dir; keep it short (Unix socket paths are limited to 107 bytes). Default /tmp */
  parent?: string;
  /** bound on start-up including the first QEMU capability probe (~8 s under TCG here). Default 90 s */
  timeoutMs?: number;
  libvirtd?: string;
}

const BIND_MOUNTS: [string, string][] = [
  ['etc', '/etc/libvirt'], ['run', '/run/libvirt'], ['lib', '/var/lib/libvirt'],
  ['cache', '/var/cache/libvirt'], ['log', '/var/log/libvirt'],
];

// A fixed script; every path reaches it as a positional parameter, never spliced into the text.
const NAMESPACE_SCRIPT = `set -e
d=$1; shift
mount --bind "$d/passwd" /etc/passwd
mount --bind "$d/group" /etc/group
while [ $# -gt 1 ]; do mkdir -p "$2"; mount --bind "$d/$1" "$2"; shift 2; done
exec "$d/libvirtd" -f "$d/etc/libvirtd.conf" -p "$d/libvirtd.pid"
`;

/** The libvirtd.conf of the private daemon (unix socket only, no auth: the socket dir is root-only). */
export function privateLibvirtdConf(dir: string): string {
  return [
    `unix_sock_dir = "${dir}/sock"`,
    'unix_sock_group = "root"',
    'unix_sock_ro_perms = "0700"',
    'unix_sock_rw_perms = "0700"',
    'auth_unix_ro = "none"',
    'auth_unix_rw = "none"',
    'listen_tcp = 0',
    'listen_tls = 0',
    `log_outputs = "3:file:${dir}/log/libvirtd.log"`,
    '',
  ].join('\n');
}

/** The qemu.conf of the private daemon. */
export function privateQemuConf(): string {
  return [
    'user = "root"',
    'group = "root"',
    'dynamic_ownership = 0',
    'remember_owner = 0',
    'security_driver = "none"',
    'namespaces = []',
    'cgroup_controllers = []',
    'stdio_handler = "file"',   // no virtlogd needed
    '',
  ].join('\n');
}

/** Why a private libvirtd cannot run here (a reason for t.skip), or undefined when it can be tried. */
export async function libvirtdUnavailable(libvirtd = '/usr/sbin/libvirtd'): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (libvirtd as the system daemon in a private mount namespace)';
  for (const bin of [libvirtd, '/usr/bin/virsh', '/usr/bin/unshare', '/usr/bin/qemu-system-x86_64']) {
    try {
      await access(bin, constants.X_OK);
    } catch {
      return `${bin} is missing (scripts/install-deps.sh installs libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients)`;
    }
  }
  try {
    await run('unshare', ['--mount', '--propagation', 'private', '--', 'true'], { timeoutMs: 10_000 });
  } catch (err) {
    return `cannot create a mount namespace: ${(err as Error).message}`;
  }
  return undefined;
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/** Append the libvirt-qemu user/group (libvirtd's compiled-in default, overridden by qemu.conf) unless present. */
function withLibvirtQemu(text: string, line: string): string {
  const body = text.endsWith('\n') ? text : text + '\n';
  return /^libvirt-qemu:/m.test(body) ? body : body + line + '\n';
}

/** Start a private libvirtd and wait until `virsh version` answers through its socket. */
export async function startPrivateLibvirtd(opts: StartOptions = {}): Promise<PrivateLibvirtd> {
  const { parent = '/tmp', timeoutMs = 90_000, libvirtd = '/usr/sbin/libvirtd' } = opts;
  const dir = await mkdtemp(join(parent, 'wnod-lv-'));
  for (const [sub] of BIND_MOUNTS) await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
  await mkdir(join(dir, 'sock'), { mode: 0o700 });
  await writeFile(join(dir, 'etc', 'libvirtd.conf'), privateLibvirtdConf(dir));
  await writeFile(join(dir, 'etc', 'qemu.conf'), privateQemuConf());
  await writeFile(join(dir, 'passwd'), withLibvirtQemu(await readFile('/etc/passwd', 'utf8'),
    'libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin'));
  await writeFile(join(dir, 'group'), withLibvirtQemu(await readFile('/etc/group', 'utf8'), 'libvirt-qemu:x:64055:'));
  // the script execs "$d/libvirtd": a symlink keeps the binary out of the script text
  await execa('ln', ['-s', libvirtd, join(dir, 'libvirtd')]);

  const logFile = join(dir, 'log', 'libvirtd.log');
  const uri = `qemu+unix:///system?socket=${dir}/sock/libvirt-sock`;
  const child: ResultPromise = execa('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', NAMESPACE_SCRIPT, 'sh',
    dir, ...BIND_MOUNTS.flat()], { reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', cleanup: true });
  let exited = false;
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
  const done = child.then(() => { exited = true; });
  const pid = child.pid ?? 0;

  // execa's cleanup kills libvirtd if this process dies without stop(); its QEMUs would survive it: kill them too
  const onExit = (): void => killStraysSync(dir);
  process.once('exit', onExit);
  const stop = async (o: { keepDir?: boolean } = {}): Promise<void> => {
    process.off('exit', onExit);
    if (!exited) {
      // QEMU processes outlive libvirtd by design: end the domains first, while the daemon can still do it
      const names = await run('virsh', ['-c', uri, 'list', '--name'], { timeoutMs: 20_000, env: { LC_ALL: 'C' } })
        .then((r) => r.stdout.split('\n').map((s) => s.trim()).filter(Boolean)).catch(() => [] as string[]);
      for (const n of names) await run('virsh', ['-c', uri, 'destroy', n], { timeoutMs: 30_000 }).catch(() => {});
      await killStrays(dir);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await done;
      clearTimeout(timer);
    }
    await killStrays(dir);
    if (!o.keepDir) await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    if (exited) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      await stop({ keepDir: true });
      throw new LibvirtdStartError(`libvirtd exited during start-up: ${stderr.trim() || lastLines(log, 5)} (dir ${dir})`);
    }
    if (await exists(join(dir, 'sock', 'libvirt-sock'))) {
      try {
        await run('virsh', ['-c', uri, 'version'], { timeoutMs: Math.max(1000, deadline - Date.now()), env: { LC_ALL: 'C' } });
        break;
      } catch (err) {
        last = (err as Error).message;
      }
    }
    if (Date.now() > deadline) {
      await stop({ keepDir: true });
      throw new LibvirtdStartError(`libvirtd did not answer within ${timeoutMs} ms: ${last || 'no socket'} (log ${logFile})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { uri, dir, logFile, pid, stop };
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join(' / ');
}

/** Kill QEMU processes left by the private daemon (their pidfiles live in its run/qemu dir). */
async function killStrays(dir: string): Promise<void> {
  const runDir = join(dir, 'run', 'qemu');
  const files = await readdir(runDir).catch(() => [] as string[]);
  for (const f of files.filter((x) => x.endsWith('.pid'))) {
    const text = await readFile(join(runDir, f), 'utf8').catch(() => '');
    killIfQemu(text, await readFile(`/proc/${pidOf(text)}/comm`, 'utf8').catch(() => ''));
  }
}

/** The same, synchronously, for process.on('exit'). */
function killStraysSync(dir: string): void {
  const runDir = join(dir, 'run', 'qemu');
  let files: string[] = [];
  try {
    files = readdirSync(runDir);
  } catch { /* no VM ever ran */ }
  for (const f of files.filter((x) => x.endsWith('.pid'))) {
    try {
      const text = readFileSync(join(runDir, f), 'utf8');
      killIfQemu(text, readFileSync(`/proc/${pidOf(text)}/comm`, 'utf8'));
    } catch { /* gone */ }
  }
}

function pidOf(pidfile: string): number {
  const pid = Number.parseInt(pidfile.trim(), 10);
  return Number.isInteger(pid) && pid > 1 ? pid : -1;
}

// only a QEMU: a stale pidfile may name a reused pid
function killIfQemu(pidfile: string, comm: string): void {
  const pid = pidOf(pidfile);
  if (pid > 1 && comm.startsWith('qemu-system')) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch { /* already gone */ }
  }
}
