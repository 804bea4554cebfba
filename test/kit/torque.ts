// A real Torque 6.1.3 for tests: installed from ../shared/torque's prebuilt tarball (never the network), started on
// loopback inside a private network + mount + UTS namespace (Torque's ports 15001-15004, PBS_HOME /var/spool/torque
// and /tmp/trqauthd-unix are fixed: each fixture gets its own, so two test Torques never collide), one host that is
// server, scheduler and the only MOM. Commands run inside with nsenter, as root or as an unprivileged job user.
// Start/stop commands and timings as observed: /work/shared/torque/README.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, openSync, closeSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, readlink, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { reachableRepo } from './reachable.js';
import { execa } from 'execa';
import { withLock } from '../../src/util/lock.js';
import type { TestUser } from './pbsmom.js';

export const TORQUE_TARBALL = process.env.WNOD_TORQUE_TARBALL ?? '/work/shared/torque/torque-6.1.3-debian12-amd64.tar.xz';
const STAMP_DIR = '/var/lib/wnod-test';
/** the namespace holder of `repo` (default: this checkout; the demo's bundle names its own) */
const nsHelperOf = (repo?: string) => (repo ? join(repo, 'test', 'kit', 'torque-ns.sh') : join(import.meta.dirname, 'torque-ns.sh'));
export const SBIN = '/usr/local/sbin';
export const BIN = '/usr/local/bin';
/** pbs_mom hands its own environment to the hooks: keep it what an init script gives it */
const DAEMON_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

export interface ExecResult { exitCode: number; stdout: string; stderr: string }

/** Why a real Torque cannot run here (a reason to skip), or undefined. */
export function torqueUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'a real Torque needs root (namespaces, pbs_mom)';
  if (!existsSync(TORQUE_TARBALL)) return `no Torque tarball at ${TORQUE_TARBALL} (set WNOD_TORQUE_TARBALL)`;
  for (const tool of ['/usr/bin/unshare', '/usr/bin/nsenter', '/usr/bin/setpriv']) if (!existsSync(tool)) return `${tool} is missing (util-linux)`;
  return undefined;
}

/** Unpack the tarball into / once per tarball content (single-flight across test files), then ldconfig. */
export async function installTorque(tarball = TORQUE_TARBALL): Promise<void> {
  const sha = createHash('sha256').update(await readFile(tarball)).digest('hex');
  await mkdir(STAMP_DIR, { recursive: true, mode: 0o755 });
  const stamp = join(STAMP_DIR, 'torque.sha256');
  await withLock(join(STAMP_DIR, 'torque.lock'), 'exclusive', async () => {
    const have = await readFile(stamp, 'utf8').catch(() => '');
    if (have.trim() === sha && existsSync(join(SBIN, 'pbs_server')) && existsSync('/usr/local/lib/libtorque.so.2') && existsSync('/var/spool/torque/mom_priv')) return;
    // as the README says (the host's PBS_HOME is only the mount point: each fixture binds its own over it)
    await execa('tar', ['-xJf', tarball, '-C', '/']);
    await execa('ldconfig', []);
    await writeFile(stamp + '.tmp', sha + '\n');
    await rename(stamp + '.tmp', stamp);
  }, { timeoutMs: 120_000 });
}

/** A fresh PBS_HOME skeleton from the tarball into `dest` (modes and owners as `make install` made them). */
async function spoolFromTarball(dest: string, tarball: string): Promise<void> {
  const tmp = `${dest}.x`;
  await mkdir(tmp, { recursive: true });
  await execa('tar', ['-xJf', tarball, '-C', tmp, '--same-permissions', 'var/spool/torque']);
  await rename(join(tmp, 'var', 'spool', 'torque'), dest);
  await rm(tmp, { recursive: true, force: true });
}

export interface TorqueOptions {
  /** test-user prefix of the engineer/test owning it: private dirs are /tmp/<tag>-trq-*, stale ones of that tag go */
  tag: string;
  /** the node's name inside the namespace (resolves to 127.0.0.1 there) */
  host?: string;
  /** slots of the node */
  np?: number;
  /** extra qmgr commands after the standard ones (one per qmgr call) */
  qmgr?: string[];
  /** run once the server is configured, before pbs_mom starts (install hooks, write mom_priv/config) */
  beforeMom?: (t: TorqueNode) => Promise<void>;
  tarball?: string;
  /** the wnod checkout as job users reach it (default: this one, reachableRepo()) */
  repo?: string;
}

/** One running Torque in its namespaces. */
export class TorqueNode {
  readonly momPriv = '/var/spool/torque/mom_priv';
  private stopped = false;

  constructor(readonly dir: string, readonly host: string, private readonly holder: ChildProcess) {}

  get pid(): number {
    return this.holder.pid!;
  }

  /** Run argv inside the namespaces: as root (a daemon's minimal env), or as `user` with a login-like clean env. */
  async exec(argv: string[], o: { user?: TestUser; cwd?: string; input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<ExecResult> {
    const as = o.user ? ['/usr/bin/setpriv', `--reuid=${o.user.uid}`, `--regid=${o.user.gid}`, '--init-groups', '--'] : [];
    const env = {
      ...DAEMON_ENV,
      ...(o.user ? { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: o.user.home, USER: o.user.name, LOGNAME: o.user.name, SHELL: '/bin/bash' } : {}),
      ...o.env,
    };
    const r = await execa('/usr/bin/nsenter', ['-t', String(this.pid), '-n', '-m', '-u', ...(o.cwd ? [`--wd=${o.cwd}`] : []), '--', ...as, ...argv], {
      env, extendEnv: false, reject: false, timeout: o.timeoutMs ?? 60_000, ...(o.input !== undefined ? { input: o.input } : { stdin: 'ignore' }),
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** exec, throwing with the output when it fails */
  async must(argv: string[], o: Parameters<TorqueNode['exec']>[1] = {}): Promise<string> {
    const r = await this.exec(argv, o);
    if (r.exitCode !== 0) throw new Error(`${argv.join(' ')} (in the Torque namespace${o.user ? ` as ${o.user.name}` : ''}) exited ${r.exitCode}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** Start a forking Torque daemon inside the namespaces; its early output goes to <dir>/logs/<name>.log. */
  async daemon(argv: string[]): Promise<void> {
    await mkdir(join(this.dir, 'logs'), { recursive: true });
    const log = openSync(join(this.dir, 'logs', `${argv[0]!.split('/').pop()}.log`), 'a');
    try {
      const child = spawn('/usr/bin/nsenter', ['-t', String(this.pid), '-n', '-m', '-u', '--wd=/', '--', ...argv], { env: DAEMON_ENV, stdio: ['ignore', log, log] });
      const code = await new Promise<number>((res) => { child.on('exit', (c) => res(c ?? -1)); child.on('error', () => res(-1)); });
      if (code !== 0) throw new Error(`${argv.join(' ')} exited ${code} (see ${join(this.dir, 'logs')})`);
    } finally {
      closeSync(log);
    }
  }

  /** One qmgr command (qmgr runs only the last of several -c). */
  async qmgr(command: string): Promise<void> {
    await this.must([`${BIN}/qmgr`, '-c', command]);
  }

  /** qsub as `user` from `cwd` with the script on stdin; resolves to the job id. */
  async qsub(user: TestUser, script: string, o: { cwd: string; args?: string[] }): Promise<string> {
    const out = await this.must([`${BIN}/qsub`, ...(o.args ?? [])], { user, cwd: o.cwd, input: script });
    const id = out.trim().split('\n').pop()!.trim();
    if (!/^\d+\.[A-Za-z0-9.-]+$/.test(id)) throw new Error(`qsub printed no job id: ${JSON.stringify(out)}`);
    return id;
  }

  /** `qstat -f -1 ID` as a map of attributes, or undefined when the server does not know the job. */
  async job(id: string): Promise<Record<string, string> | undefined> {
    const r = await this.exec([`${BIN}/qstat`, '-f', '-1', id]);
    if (r.exitCode !== 0) return undefined;
    const attrs: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const m = /^\s+([A-Za-z_.]+) = (.*)$/.exec(line);
      if (m) attrs[m[1]!] = m[2]!;
    }
    return attrs;
  }

  /** Poll until the job reaches one of `states` (qstat job_state letters); resolves to its attributes. */
  async waitJob(id: string, states = 'C', timeoutMs = 300_000): Promise<Record<string, string>> {
    const end = Date.now() + timeoutMs;
    let last: Record<string, string> | undefined;
    while (Date.now() < end) {
      last = await this.job(id);
      if (last && states.includes(last.job_state ?? '')) return last;
      await sleep(250);
    }
    throw new Error(`job ${id} did not reach state ${states} within ${timeoutMs / 1000} s (last: ${JSON.stringify(last)})`);
  }

  /** The state of node `host` (default: this one) as pbsnodes on this host reports it. */
  async nodeState(host = this.host): Promise<string> {
    const r = await this.exec([`${BIN}/pbsnodes`, host]);
    return /^\s+state = (.*)$/m.exec(r.stdout)?.[1] ?? '';
  }

  /** pbs_mom's log of today (for diagnostics). */
  async momLog(): Promise<string> {
    const d = join(this.dir, 'spool', 'mom_logs');
    const files = (await readdir(d).catch(() => [] as string[])).sort();
    return files.length ? readFile(join(d, files.at(-1)!), 'utf8') : '';
  }

  /** Restart pbs_mom (e.g. after its config changed) and wait until the node is free again. */
  async restartMom(): Promise<void> {
    await this.exec([`${SBIN}/momctl`, '-s']);
    await waitGone(join(this.dir, 'spool', 'mom_priv', 'mom.lock'), this.pid, 'pbs_mom');
    await this.daemon([`${SBIN}/pbs_mom`]);
    await this.waitFree();
  }

  /** Wait until node `host` (default: this one) is free, as this host's pbsnodes says. */
  async waitFree(timeoutMs = 90_000, host = this.host): Promise<void> {
    const end = Date.now() + timeoutMs;
    let state = '';
    while (Date.now() < end) {
      state = await this.nodeState(host);
      if (/^free/.test(state)) return;
      await sleep(500);
    }
    throw new Error(`node ${host} not free within ${timeoutMs / 1000} s (state ${JSON.stringify(state)}); mom log:\n${(await this.momLog()).slice(-3000)}`);
  }

  /** Stop the daemons as the README says, kill whatever is left in the namespace, remove the private dir. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.exec([`${BIN}/qterm`, '-t', 'quick'], { timeoutMs: 10_000 }).catch(() => undefined);
    await this.exec([`${SBIN}/momctl`, '-s'], { timeoutMs: 10_000 }).catch(() => undefined);
    await this.exec([`${SBIN}/trqauthd`, '-d'], { timeoutMs: 10_000 }).catch(() => undefined);
    await killNamespace(this.pid);
    this.holder.stdin?.end();
    await new Promise<void>((res) => { if (this.holder.exitCode !== null) res(); else this.holder.on('exit', () => res()); });
    await rm(this.dir, { recursive: true, force: true });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function netNs(pid: number | string): Promise<string | undefined> {
  return readlink(`/proc/${pid}/ns/net`).catch(() => undefined);
}

/** SIGKILL every process in `holder`'s network namespace except the holder; wait until they are gone. */
async function killNamespace(holder: number): Promise<void> {
  const mine = await netNs(holder);
  if (!mine) return;
  for (let round = 0; round < 20; round++) {
    const victims: number[] = [];
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === holder) continue;
      if ((await netNs(name)) === mine) victims.push(Number(name));
    }
    if (victims.length === 0) return;
    for (const pid of victims) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    await sleep(100);
  }
}

async function waitGone(lockFile: string, _holder: number, what: string): Promise<void> {
  const pid = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim());
  for (let i = 0; i < 100 && pid > 0; i++) {
    if (!existsSync(`/proc/${pid}`)) return;
    await sleep(100);
  }
  if (pid > 0 && existsSync(`/proc/${pid}`)) throw new Error(`${what} (pid ${pid}) did not stop`);
}

/** Kill the namespaces and remove the dirs that earlier runs of this tag left behind (their owner died). */
export async function cleanStale(tag: string): Promise<void> {
  const prefix = `/tmp/${tag}-trq-`;
  const live = new Set<string>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const i = argv.findIndex((a) => a.endsWith('/torque-ns.sh'));
    if (i < 0 || !argv[i + 1]?.startsWith(prefix)) continue;
    const owner = Number(argv[i + 3]);
    if (owner > 0 && existsSync(`/proc/${owner}`)) {
      live.add(argv[i + 1]!);
      if (argv[i + 5]) live.add(argv[i + 5]!); // the dir a multi-node site shares
      continue;
    }
    await killNamespace(Number(name));
    try { process.kill(Number(name), 'SIGKILL'); } catch { /* gone */ }
  }
  for (const entry of await readdir('/tmp')) {
    const path = `/tmp/${entry}`;
    if (path.startsWith(prefix) && !live.has(path)) await rm(path, { recursive: true, force: true });
  }
}

/** The namespaces of one Torque host (`dir` directly under /tmp, holding its spool): a fresh network namespace, or
 * the existing one `netns` names (a node of a multi-node site, test/kit/torqueNodes.ts); `shared` is a dir every
 * node sees (torque-ns.sh). Resolves once the holder is ready. */
export async function openNamespaces(dir: string, host: string, o: { repo?: string | undefined; netns?: string; shared?: string } = {}): Promise<TorqueNode> {
  const holderArgv = ['/bin/sh', nsHelperOf(o.repo), dir, host, String(process.pid), o.repo ?? reachableRepo(), ...(o.shared ? [o.shared] : [])];
  const argv = o.netns
    ? ['/usr/bin/nsenter', `--net=/run/netns/${o.netns}`, '--', '/usr/bin/unshare', '--mount', '--uts', '--', ...holderArgv]
    : ['/usr/bin/unshare', '--net', '--mount', '--uts', '--', ...holderArgv];
  const holder = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'], env: DAEMON_ENV });
  const node = new TorqueNode(dir, host, holder);
  try {
    await new Promise<void>((res, rej) => {
      let out = '';
      holder.stdout!.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('ready\n')) res(); });
      holder.on('exit', (c) => rej(new Error(`the namespace holder exited ${c} before it was ready: ${out}`)));
    });
  } catch (err) {
    await node.stop().catch(() => undefined);
    throw err;
  }
  return node;
}

/** A fresh PBS_HOME for a host whose server is `server`, in a new private dir of the tag. */
export async function torqueDir(tag: string, server: string, tarball = TORQUE_TARBALL): Promise<string> {
  const dir = await mkdtemp(`/tmp/${tag}-trq-`);
  await chmod(dir, 0o755); // job users reach their workdirs and the wnod state under it
  await spoolFromTarball(join(dir, 'spool'), tarball);
  await writeFile(join(dir, 'spool', 'server_name'), `${server}\n`);
  return dir;
}

/** trqauthd and pbs_server on `node`, the standard queue and server settings, one `create node` per MOM. */
export async function startServer(node: TorqueNode, moms: Array<{ host: string; np: number }>, qmgr: string[] = []): Promise<void> {
  await node.daemon([`${SBIN}/trqauthd`]);
  await node.daemon([`${SBIN}/pbs_server`, '-t', 'create', '-f']);
  for (let i = 0; ; i++) {
    if ((await node.exec([`${BIN}/qstat`, '-B'])).exitCode === 0) break;
    if (i > 100) throw new Error('pbs_server does not answer qstat -B');
    await sleep(200);
  }
  for (const c of [
    'set server scheduling = true', 'set server keep_completed = 3600', 'create queue batch queue_type = execution',
    'set queue batch enabled = true', 'set queue batch started = true', 'set server default_queue = batch',
    ...moms.map((m) => `create node ${m.host} np=${m.np}`), ...qmgr,
  ]) await node.qmgr(c);
}

/** Install (once), then start trqauthd, pbs_server, the queue/node config, pbs_mom and pbs_sched in fresh
 * namespaces; resolves when the node is free. */
export async function startTorque(opts: TorqueOptions): Promise<TorqueNode> {
  if (!/^[a-z][a-z0-9]{1,8}$/.test(opts.tag)) throw new Error(`bad fixture tag ${opts.tag}`);
  const tarball = opts.tarball ?? TORQUE_TARBALL;
  await installTorque(tarball);
  await cleanStale(opts.tag);
  const host = opts.host ?? `${opts.tag}node`;
  const dir = await torqueDir(opts.tag, host, tarball);
  const node = await openNamespaces(dir, host, { repo: opts.repo });
  try {
    await startServer(node, [{ host, np: opts.np ?? 4 }], opts.qmgr);
    await opts.beforeMom?.(node);
    await node.daemon([`${SBIN}/pbs_mom`]);
    await node.daemon([`${SBIN}/pbs_sched`]);
    await node.waitFree();
    return node;
  } catch (err) {
    await node.stop().catch(() => undefined);
    throw err;
  }
}
