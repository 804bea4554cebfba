/** Warm VM snapshots (issue #6): a template VM per image and shape boots to the agent's wait loop and is saved by
 * QMP `migrate` to a file; each job restores a fresh QEMU from it (`-incoming fd:N`, an inherited read-only fd: no
 * shell), then hands the clone its per-job context over the control port (SETUP: entropy + CRNG reseed + clock
 * first, then user, 9p workdir, network). The template is never resumed or written to: nothing of one job reaches
 * the next.
 *
 *   <dir>/<key>/{snapshot,initrd.img,meta.json}   a ready template (the directory appears by one rename)
 *   <dir>/<key>.refused.json                      negative cache: this key's guest cannot be restored, and why
 *   <dir>/<key>.failed.json                       back-off after a transient build failure (VM died, no answer)
 *   <dir>/<key>.lock                              single-flight build lock
 *
 * The key is a sha256 over everything that must match between the saving and the restoring QEMU: image digest and
 * file identities, QEMU binary identity and version, the full argument list with per-VM paths masked (machine,
 * devices, cpus, memory, accel, network, cmdline), and TEMPLATE_FORMAT. Shapes never share a template; the job
 * engine asks for one for the image's default shape at once and for another shape on its second job (buildNow),
 * and at most MAX_TEMPLATES_PER_IMAGE are kept.
 *
 * A VM on a job's private network (multi-node jobs) restores from a template with the same NIC on no host network
 * (TEMPLATE_JOB_MAC, a QEMU hub port): every job of the image and shape shares it, whatever its network. The clone
 * gets the job's tap as the backend of that device and the job's MAC in its own -device (QEMU's announce after the
 * load uses it); the guest's view of the MAC is migrated state, the template's, and SETUP (the agent's job_net) sets
 * the job's before the link is up. QEMU holds the NIC's link down from the load (the clone starts paused: -S) until
 * the host has checked QEMU's view of the MAC (query-rx-filter): a clone whose NIC does not have the job's MAC
 * never puts a frame on the tap and is never handed over. The job's anti-spoofing rules drop whatever else it sends. */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { createWriteStream } from 'node:fs';
import { appendFile, chmod, copyFile, mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { run } from '../util/run.js';
import { writeFileAtomic } from '../util/atomic.js';
import { acquireLock, LockTimeoutError } from '../util/lock.js';
import { WnodError } from '../util/errors.js';
import type { VmSpec } from './driver.js';
import { CONSOLE_RING_BYTES, JOB_NIC_ID, kernelCmdline, qemuArgs, runAsFor, tscKhzFromCpuinfo, type QemuPlan } from './qemuArgs.js';
import { cpioArchive } from './cpio.js';
import { jobNetContext, renderContext, type GuestContext } from './context.js';
import { agentCaps, agentSetup, ping } from './agent.js';
import { QmpClient } from './qmp.js';
import { ramDigest, sealedRam, stopHolder } from './templateRam.js';
import { isAlive, procRef, terminate, type ProcRef } from './proc.js';

const IP = '/usr/sbin/ip';
/** Bump when the template layout or the guest contract it relies on changes: part of the key. */
export const TEMPLATE_FORMAT = 2;
/** The template's guest RAM is its own file (TemplateRam): the migration stream carries device state only. */
const IGNORE_SHARED = { capabilities: [{ capability: 'x-ignore-shared', state: true }] };
/** What a guest must offer for its template to be saved at all. */
export const REQUIRED_CAPS = ['setup', 'lock', 'reseed'] as const;
/** Templates kept per image id (the shapes jobs hold × network none/user × with a job NIC or not); older ones are
 * pruned after each build. A clone shares its template's RAM, so a template costs the node its touched pages once,
 * not once per VM. */
export const MAX_TEMPLATES_PER_IMAGE = 6;
/** The MAC of a template's job NIC: locally administered, never a job's (planJobNet's carry the VNI, never 0). A
 * clone must not send one frame with it. */
export const TEMPLATE_JOB_MAC = '02:00:00:00:00:01';
/** A shape other than the image's default gets a template once a second job of it cold booted within this window:
 * one odd job does not make the node build (and keep) a template. */
export const SHAPE_REPEAT_MS = 86_400_000;
/** First back-off after a transient build failure; doubles per consecutive failure up to a day. */
export const BUILD_BACKOFF_MS = 600_000;

export interface SnapshotOptions {
  /** root-only templates directory, e.g. <vm.stateDir>/templates */
  dir: string;
  /** bound on restore + SETUP before falling back to a cold boot (default: restoreTimeoutMs(spec)) */
  restoreTimeoutMs?: number;
  /** called (not awaited) when a job cold boots because its template is missing: start a build elsewhere */
  onMissing?: (spec: VmSpec, key: string) => void;
}

/** A restore that failed: the caller destroys what exists and cold boots with this reason. */
export class RestoreError extends WnodError {
  constructor(message: string) {
    super('vm-restore', message);
  }
}

export interface TemplateMeta {
  format: number;
  key: string;
  createdAt: string;
  imageId: string;
  digest: string;
  cpus: number;
  memoryMB: number;
  accel: 'kvm' | 'tcg';
  network: string;
  caps: string[];
  snapshotBytes: number;
  /** the guest RAM file (`ram`): its size and sha256, checked on every copy a clone maps (templateRam.ts) */
  ram: { bytes: number; sha256: string };
  buildS: number;
  qemuVersion: string;
}

export type TemplateLookup = { status: 'ready'; dir: string; meta: TemplateMeta } | { status: 'refused'; reason: string; retryAt?: string } | { status: 'missing' };

/** Whether a job that cold booted for want of a template should have one built now: the image's default shape at
 * once, another shape when its previous cold boot (`lastSeenMs`) was within SHAPE_REPEAT_MS — so that per-job
 * cpus/memory choices cannot make the node build a template per job. Pure. */
export function buildNow(job: { cpus: number; memoryMB: number }, defaults: { cpus: number; memoryMB: number }, lastSeenMs: number | undefined, now: number): boolean {
  if (job.cpus === defaults.cpus && job.memoryMB === defaults.memoryMB) return true;
  return lastSeenMs !== undefined && now - lastSeenMs >= 0 && now - lastSeenMs < SHAPE_REPEAT_MS;
}

/** How long to wait before building again after `failures` consecutive transient failures. Pure. */
export const backoffMs = (failures: number): number => Math.min(BUILD_BACKOFF_MS * 2 ** Math.max(0, failures - 1), 86_400_000);

/** The default bound on restore + SETUP: 10 s, and 30 s for a VM on a job network, whose SETUP also starts the
 * job's ssh server (a dozen programs, each translated afresh under TCG: nine at once at load 20 took 9–11 s, and a
 * fallback then costs a whole cold boot on top). Pure. */
export const restoreTimeoutMs = (spec: VmSpec): number => (spec.network.job ? 30_000 : 10_000);

/** Why this spec cannot be restored from a snapshot at all (undefined = it can). Pure. */
export function restoreBlocker(spec: VmSpec): string | undefined {
  if (spec.image.kind !== 'kernel') return 'bootable disk images are not snapshotted (kernel images only)';
  if (spec.image.files.disk) return 'images with a root disk are not snapshotted (the disk overlay would be shared)';
  if (spec.network.mode === 'bridge') return 'bridged networking is not snapshotted';
  return undefined;
}

/** Paths a snapshot plan puts in a VM's runtime dir (the same layout as state.ts's vmSockets). */
function runPaths(runDir: string) {
  return {
    sockets: { control: join(runDir, 'agent', 'control.sock'), stdout: join(runDir, 'agent', 'stdout.sock'),
      stderr: join(runDir, 'agent', 'stderr.sock'), qmp: join(runDir, 'qmp.sock') },
    console: join(runDir, 'console.log'), pidfile: join(runDir, 'qemu.pid'),
  };
}

/** The QEMU plan of a template and of each of its clones: identical but for the paths, a clone's port forwards (a
 * lease's ssh) and its job NIC's tap and MAC: netdev backends are not migrated, so a clone listens where its
 * template never did and its NIC sits on its job's tap. The key and the template have neither: a lease and a plain
 * user-network job share a template, and so do all jobs with a private network. Pure. */
export function snapshotPlan(o: { spec: VmSpec; accel: 'kvm' | 'tcg'; khz: number | undefined; runDir: string; initrd: string;
  ninep: string; incoming?: string; ram: { path: string; share: boolean } }): QemuPlan {
  const s = o.spec;
  return {
    machine: 'microvm', accel: o.accel, cpus: s.cpus, memoryMB: s.memoryMB, ...(s.image.acpi === false ? { acpi: false } : {}),
    kernel: s.image.files.kernel, initrd: o.initrd,
    cmdline: kernelCmdline(o.accel, o.khz, [s.image.cmdline, 'init_on_free=1'].filter(Boolean).join(' ')), ...runPaths(o.runDir), network: { mode: s.network.mode, ...(s.network.mac ? { mac: s.network.mac } : {}),
      ...(o.incoming && s.network.forwards?.length ? { forwards: s.network.forwards } : {}),
      ...(s.network.job ? { job: o.incoming ? { tap: s.network.job.tap, mac: s.network.job.mac } : { mac: TEMPLATE_JOB_MAC } } : {}) },
    ninep: o.ninep, ...(o.incoming ? { incoming: o.incoming } : {}), templateRam: o.ram,
  };
}

/** The argument list with every per-VM path replaced by a placeholder: what the key covers. Pure. */
export function maskedArgs(spec: VmSpec, accel: 'kvm' | 'tcg', khz: number | undefined): string[] {
  return qemuArgs(snapshotPlan({ spec, accel, khz, runDir: '/RUN', initrd: '/TEMPLATE/initrd.img', ninep: '/WORKDIR', ram: { path: '/TEMPLATE/ram', share: true } }));
}

export interface KeyInput {
  digest: string;
  files: Record<string, string>;   // role → "size:mtimeMs:ino" of kernel/initrd
  qemu: string;                    // path, size, mtime, inode and `--version` of the binary
  args: string[];
}

/** The network a template has, as its meta.json records it (none|user, +job with a job NIC). Pure. */
export const templateNetwork = (spec: VmSpec): string => `${spec.network.mode}${spec.network.job ? '+job' : ''}`;

/** What a template build needs of a spec: a job NIC's presence, not the job's addresses and keys (the build
 * request is a file). Pure. */
export function templateSpec(spec: VmSpec): VmSpec {
  if (!spec.network.job) return spec;
  return { ...spec, network: { ...spec.network, job: { tap: spec.network.job.tap, mac: TEMPLATE_JOB_MAC, ip: '0.0.0.0/32', mtu: spec.network.job.mtu, hosts: [] } } };
}

/** Why a ready template cannot serve this spec (undefined = it can): capabilities its guest lacks. Pure. */
export function templateLacks(spec: VmSpec, caps: readonly string[]): string | undefined {
  if (spec.workdir && !caps.includes('9p')) return 'the snapshot template\'s guest has no 9p for the workdir';
  if (spec.network.job && !caps.includes('jobnet')) return 'the snapshot template\'s guest agent cannot set up a job network';
  return undefined;
}

/** The template key. Pure. */
export function templateKey(k: KeyInput): string {
  return createHash('sha256').update(JSON.stringify({ format: TEMPLATE_FORMAT, ...k })).digest('hex').slice(0, 32);
}

async function fileId(path: string): Promise<string> {
  const st = await stat(path);
  return `${st.size}:${Math.floor(st.mtimeMs)}:${st.ino}`;
}

async function which(bin: string): Promise<string> {
  if (bin.includes('/')) return bin;
  for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const p = join(d, bin);
    if (await stat(p).then((s) => s.isFile(), () => false)) return p;
  }
  throw new RestoreError(`${bin} not found in PATH`);
}

/** The QEMU binary's identity: path, file identity and version (the version cached per file identity). */
export async function qemuIdentity(dir: string, bin: string): Promise<{ id: string; version: string }> {
  const path = await which(bin);
  const fid = `${path}:${await fileId(path)}`;
  const cacheFile = join(dir, 'qemu-version.json');
  const cached = await readFile(cacheFile, 'utf8').then((t) => JSON.parse(t) as { fid?: string; version?: string }, () => undefined);
  if (cached?.fid === fid && typeof cached.version === 'string') return { id: `${fid}:${cached.version}`, version: cached.version };
  const version = (await run(path, ['--version'], { timeoutMs: 10_000 })).stdout.split('\n')[0]!.trim();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(cacheFile, JSON.stringify({ fid, version }) + '\n', 0o600);
  return { id: `${fid}:${version}`, version };
}

/** The host's TSC frequency (part of the cmdline, hence of the key). */
export async function hostKhz(): Promise<number | undefined> {
  return tscKhzFromCpuinfo(await readFile('/proc/cpuinfo', 'utf8').catch(() => ''));
}

/** The key of the template this spec restores from. */
export async function keyFor(dir: string, qemu: string, spec: VmSpec, accel: 'kvm' | 'tcg', khz: number | undefined): Promise<string> {
  const files: Record<string, string> = {};
  for (const role of ['kernel', 'initrd'] as const) {
    const p = spec.image.files[role];
    if (p) files[role] = await fileId(p);
  }
  return templateKey({ digest: spec.image.digest, files, qemu: (await qemuIdentity(dir, qemu)).id, args: maskedArgs(spec, accel, khz) });
}

const KEY = /^[0-9a-f]{32}$/;
export const templateDir = (dir: string, key: string): string => {
  if (!KEY.test(key)) throw new RestoreError(`invalid template key '${key}'`);
  return join(dir, key);
};

/** Is there a usable template for `key`, a remembered refusal, or nothing? */
export async function lookupTemplate(dir: string, key: string): Promise<TemplateLookup> {
  const tdir = templateDir(dir, key);
  const meta = await readFile(join(tdir, 'meta.json'), 'utf8').then((t) => JSON.parse(t) as TemplateMeta, () => undefined);
  if (meta && meta.format === TEMPLATE_FORMAT && meta.key === key) return { status: 'ready', dir: tdir, meta };
  const refused = await readFile(join(dir, `${key}.refused.json`), 'utf8').then((t) => JSON.parse(t) as { reason?: string }, () => undefined);
  if (refused) return { status: 'refused', reason: String(refused.reason ?? 'unknown') };
  const failed = await readFailure(dir, key);
  if (failed) {
    const retry = Date.parse(failed.at) + backoffMs(failed.failures);
    if (Date.now() < retry) {
      const retryAt = new Date(retry).toISOString();
      return { status: 'refused', reason: `the last build failed (${failed.failures}x in a row: ${failed.reason}); next try after ${retryAt}`, retryAt };
    }
  }
  return { status: 'missing' };
}

/** Spawn QEMU (it daemonizes: the parent exits once the VM is set up) with extra inherited fds at 3, 4, …; the
 * pid from the pidfile. */
async function startQemu(bin: string, args: string[], fds: number[], pidfile: string, timeoutMs: number, netns?: string): Promise<ProcRef> {
  if (netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(netns)) throw new RestoreError(`invalid network namespace name '${netns}'`);
  const child = netns !== undefined ? spawn(IP, ['netns', 'exec', netns, bin, ...args], { stdio: ['ignore', 'ignore', 'pipe', ...fds] })
    : spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe', ...fds] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { if (err.length < 8192) err += d.toString('utf8'); });
  const code = await new Promise<number | null>((resolve, reject) => {
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new RestoreError(`QEMU did not start within ${timeoutMs} ms`)); }, timeoutMs);
    child.once('error', (e) => { clearTimeout(t); reject(new RestoreError(`cannot start ${bin}: ${e.message}`)); });
    child.once('exit', (c) => { clearTimeout(t); resolve(c); });
  });
  if (code !== 0) throw new RestoreError(`QEMU refused to start (exit ${code}): ${err.trim().split('\n').slice(-3).join(' / ')}`);
  // QEMU deletes its pidfile when it exits: a missing one means it is gone already (a refused snapshot stream)
  const pid = Number((await readFile(pidfile, 'utf8').catch(() => '')).trim());
  const ref = pid > 0 ? await procRef(pid) : undefined;
  if (!ref) throw new RestoreError('QEMU exited right after starting (it refused the snapshot stream?)');
  return ref;
}

/** The workdir, opened without following a final symlink and owner-checked; QEMU gets this fd (9p path
 * /proc/self/fd/N), so a swap of the path after the check cannot redirect the share. */
export async function openPinnedDir(path: string, uid: number): Promise<{ fh: FileHandle; dev: bigint; ino: bigint }> {
  const fh = await open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch((e: NodeJS.ErrnoException) => {
    throw new RestoreError(`the working directory ${path} cannot be shared: ${e.code === 'ELOOP' || e.code === 'ENOTDIR' ? 'a symbolic link or not a directory' : e.message}`);
  });
  const st = await fh.stat({ bigint: true });
  if (Number(st.uid) !== uid) {
    await fh.close();
    throw new RestoreError(`the working directory ${path} is owned by uid ${st.uid}, not by the job's uid ${uid}`);
  }
  return { fh, dev: st.dev, ino: st.ino };
}

/** True if process `pid` holds an open fd (other than `except`) on the directory dev/ino. */
export async function holdsDir(pid: number, dev: bigint, ino: bigint, except: number): Promise<boolean> {
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    if (Number(fd) === except) continue;
    const st = await stat(`/proc/${pid}/fd/${fd}`, { bigint: true }).catch(() => undefined);
    if (st && st.isDirectory() && st.dev === dev && st.ino === ino) return true;
  }
  return false;
}

/** The SETUP context of one clone: the cold-boot assignments plus seed (hex) and clock with ns, rendered now. */
export function setupContext(ctx: Omit<GuestContext, 'clock' | 'seed'>, seed: Buffer, nowNs: bigint): string {
  const sec = nowNs / 1_000_000_000n;
  const nsec = nowNs % 1_000_000_000n;
  return renderContext({ ...ctx, clock: Number(sec), seed }) + `WNOD_CLOCK_NSEC='${nsec}'\nWNOD_SEED='${seed.toString('hex')}'\n`;
}

const epochNs = (): bigint => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));

export interface RestoreInput {
  qemu: string;
  spec: VmSpec;
  accel: 'kvm' | 'tcg';
  khz: number | undefined;
  runDir: string;
  template: { dir: string; meta: TemplateMeta };
  timeoutMs: number;
  /** called with QEMU's ref as soon as it is known (the caller records it so that destroy can kill it) */
  onPid: (ref: ProcRef) => Promise<void>;
  /** start the clone inside this network namespace (its job tap is there) */
  netns?: string;
}

/** Restore one clone and hand it its context; resolves once the agent said OK. Throws RestoreError; what was
 * started is known to the caller through onPid. */
export async function restoreClone(r: RestoreInput): Promise<void> {
  const deadline = Date.now() + r.timeoutMs;
  const s = r.spec;
  const lacks = templateLacks(s, r.template.meta.caps);
  if (lacks) throw new RestoreError(lacks);
  const snap = await open(join(r.template.dir, 'snapshot'), 'r');
  let pinned: Awaited<ReturnType<typeof openPinnedDir>> | undefined;
  try {
    const st = await snap.stat();
    if (st.size !== r.template.meta.snapshotBytes) throw new RestoreError(`snapshot size ${st.size} differs from the recorded ${r.template.meta.snapshotBytes}`);
    let ninep: string;
    if (s.workdir) {
      pinned = await openPinnedDir(s.workdir.hostPath, s.workdir.uid);
      ninep = '/proc/self/fd/4';
    } else {
      ninep = join(r.runDir, 'empty9p'); // the device must exist as in the template; an empty root-only dir
      await mkdir(ninep, { mode: 0o700 });
    }
    const ram = await sealedRam(r.template.dir, r.template.meta.key, r.template.meta.ram, Math.max(1000, deadline - Date.now()))
      .catch((e: Error) => { throw new RestoreError(e.message); });
    const plan = snapshotPlan({ spec: s, accel: r.accel, khz: r.khz, runDir: r.runDir, initrd: join(r.template.dir, 'initrd.img'), ninep, incoming: 'defer',
      ram: { path: ram, share: false } });
    // the clone drops to the job user after opening everything (not part of the key: the template stays root)
    plan.runAs = runAsFor(s.user);
    // chardev backends are not migrated: the clone's console is a bounded ring from the start (the job runs next)
    plan.consoleRing = CONSOLE_RING_BYTES;
    // a job NIC's link is the host's to open: the clone stays paused after the load until it is cut (below)
    if (s.network.job) plan.paused = true;
    const fds = [snap.fd, ...(pinned ? [pinned.fh.fd] : [])];
    const ref = await startQemu(r.qemu, qemuArgs(plan), fds, plan.pidfile, Math.max(1000, deadline - Date.now()), r.netns);
    await r.onPid(ref);
    // the template's RAM is not in the stream: both sides must agree on x-ignore-shared before it is read
    const qmp = await QmpClient.connect(plan.sockets.qmp, Math.max(100, deadline - Date.now()));
    try {
      await qmp.execute('migrate-set-capabilities', IGNORE_SHARED);
      await qmp.execute('migrate-incoming', { uri: 'fd:3' });
      if (s.network.job) await cutJobLink(qmp, deadline);
    } catch (err) {
      throw new RestoreError(`the clone did not take the snapshot stream: ${(err as Error).message}`);
    } finally {
      qmp.close();
    }
    if (pinned && !(await holdsDir(ref.pid, pinned.dev, pinned.ino, 4))) throw new RestoreError('QEMU does not hold the pinned working directory');
    const ctx: Omit<GuestContext, 'clock' | 'seed'> = {
      hostname: s.hostname, user: s.user, workdir: s.workdir?.hostPath,
      network: s.network.mode === 'user' ? { ip: '10.0.2.15/24', gateway: '10.0.2.2', dns: '10.0.2.3' } : undefined,
      jobNet: s.network.job ? { ...jobNetContext(s.network.job)!, nicMac: TEMPLATE_JOB_MAC } : undefined,
    };
    const seed = randomBytes(64);
    let watch: NodeJS.Timeout | undefined;
    const died = new Promise<never>((_, reject) => {
      watch = setInterval(() => { void isAlive(ref).then((a) => { if (!a) reject(new RestoreError('QEMU exited while loading the snapshot')); }); }, 50);
    });
    died.catch(() => {});
    try {
      await Promise.race([agentSetup(plan.sockets.control, () => setupContext(ctx, seed, epochNs()), Math.max(100, deadline - Date.now())), died]);
    } catch (err) {
      if (err instanceof RestoreError) throw err;
      if (!(await isAlive(ref))) throw new RestoreError('QEMU exited while loading the snapshot');
      throw new RestoreError(`the restored guest did not take its context: ${(err as Error).message}`);
    } finally {
      clearInterval(watch);
    }
    if (s.network.job) await openJobLink(plan.sockets.qmp, s.network.job.mac, Math.max(100, deadline - Date.now()));
  } finally {
    await snap.close().catch(() => {});
    await pinned?.fh.close().catch(() => {});
  }
}

/** A paused clone whose stream is loaded: its job NIC's link goes down in QEMU (nothing the guest sends reaches the
 * tap, whatever its init did with the template's NIC; the load itself restored the template's link state), then the
 * guest runs. */
async function cutJobLink(qmp: QmpClient, deadline: number): Promise<void> {
  for (;;) {
    const st = (await qmp.execute('query-status')) as { status?: string };
    if (st.status === 'paused') break;
    if (st.status !== 'inmigrate' && st.status !== 'prelaunch') throw new RestoreError(`the clone is ${st.status ?? 'in an unknown state'} after the load`);
    if (Date.now() > deadline) throw new RestoreError('the clone did not finish loading its snapshot in time');
    await new Promise((r) => setTimeout(r, 5));
  }
  await qmp.execute('set_link', { name: JOB_NIC_ID, up: false });
  await qmp.execute('cont');
}

/** After SETUP: QEMU's own view of the clone's job NIC (its receive filter's MAC, which the guest set over the
 * control queue) must be the job's — what the agent answered is not taken on trust — before its link comes up. */
async function openJobLink(qmpSock: string, want: string, timeoutMs: number): Promise<void> {
  const qmp = await QmpClient.connect(qmpSock, timeoutMs);
  try {
    const f = (await qmp.execute('query-rx-filter', { name: JOB_NIC_ID })) as Array<{ 'main-mac'?: string }>;
    const mac = f[0]?.['main-mac']?.toLowerCase();
    if (mac !== want) throw new RestoreError(`the clone's job NIC has MAC ${mac ?? 'unknown'}, not the job's ${want}`);
    await qmp.execute('set_link', { name: JOB_NIC_ID, up: true });
  } finally {
    qmp.close();
  }
}

export interface BuildInput {
  dir: string;
  qemu: string;
  spec: VmSpec;            // image, cpus, memoryMB, network (the rest is ignored)
  accel: 'kvm' | 'tcg';
  readyTimeoutMs?: number; // the template's cold boot (default 120 s)
  /** take a boot slot before QEMU starts; returns its release */
  takeSlot?: () => Promise<() => Promise<void>>;
  log?: (s: string) => void;
}

export type BuildResult = { status: 'built'; key: string; seconds: number; bytes: number } | { status: 'exists' | 'busy'; key: string } |
  { status: 'refused'; key: string; reason: string } | { status: 'failed'; key: string; reason: string; retryAt: string };

/** What a template boot that did not get to a usable agent means. Only a guest lacking a capability is refused for
 * good; a VM that stopped or did not answer (memory pressure, a slow host) is transient: retried after a back-off.
 * undefined = the boot is usable. Pure. */
export function bootVerdict(o: { up: boolean; alive: boolean; console: string; timeoutMs: number; lacking: readonly string[] }):
  { kind: 'refuse' | 'transient'; reason: string } | undefined {
  if (!o.up && !o.alive) return { kind: 'transient', reason: `the template VM stopped before its agent answered: ${o.console}` };
  if (!o.up) return { kind: 'transient', reason: `the template VM's agent did not answer within ${o.timeoutMs} ms` };
  if (o.lacking.length) return { kind: 'refuse', reason: `the guest cannot be restored safely: its agent lacks ${o.lacking.join(', ')}` };
  return undefined;
}

interface Failure { reason: string; at: string; failures: number }

async function readFailure(dir: string, key: string): Promise<Failure | undefined> {
  const f = await readFile(join(dir, `${key}.failed.json`), 'utf8').then((t) => JSON.parse(t) as Partial<Failure>, () => undefined);
  if (!f || typeof f.at !== 'string' || !Number.isInteger(f.failures) || Number.isNaN(Date.parse(f.at))) return undefined;
  return { reason: String(f.reason ?? 'unknown'), at: f.at, failures: Math.max(1, f.failures!) };
}

/** Remember a transient failure (counting consecutive ones) so that a burst of cold jobs does not rebuild in a loop. */
async function noteFailure(dir: string, key: string, reason: string): Promise<BuildResult> {
  const failures = ((await readFailure(dir, key))?.failures ?? 0) + 1;
  const at = new Date();
  await writeFileAtomic(join(dir, `${key}.failed.json`), JSON.stringify({ reason, at: at.toISOString(), failures }) + '\n', 0o600);
  return { status: 'failed', key, reason, retryAt: new Date(at.getTime() + backoffMs(failures)).toISOString() };
}

/** The template context: no user, no workdir; the init loads every module (no WNOD_FEATURES). */
function templateCpio(): Buffer {
  const ctx = "# wnod snapshot template (generated)\nWNOD_TEMPLATE='1'\nWNOD_HOSTNAME='wnod-template'\n";
  return cpioArchive([
    { path: 'wnod', type: 'dir', mode: 0o700 },
    { path: 'wnod/context', type: 'file', mode: 0o600, data: ctx },
    { path: 'wnod/seed', type: 'file', mode: 0o600, data: randomBytes(64) },
  ]);
}

async function refuse(dir: string, key: string, reason: string): Promise<BuildResult> {
  await writeFileAtomic(join(dir, `${key}.refused.json`), JSON.stringify({ reason, at: new Date().toISOString() }) + '\n', 0o600);
  return { status: 'refused', key, reason };
}

/** Save the migration stream QEMU sends to a Unix socket into `file`; resolves with its size once it ended. */
function receiveStream(sock: string, file: string): { server: Server; done: Promise<number> } {
  let resolveDone: (n: number) => void;
  let rejectDone: (e: Error) => void;
  const done = new Promise<number>((res, rej) => { resolveDone = res; rejectDone = rej; });
  const server = createServer((c) => {
    server.close();
    const out = createWriteStream(file, { mode: 0o600 });
    let n = 0;
    c.on('data', (d: Buffer) => { n += d.length; });
    c.pipe(out);
    out.once('finish', () => resolveDone(n));
    out.once('error', (e) => rejectDone(e));
    c.once('error', (e) => rejectDone(e));
  });
  server.listen(sock);
  return { server, done };
}

/** Build the template for this spec's image and shape, single-flight. Never throws for a guest that cannot be
 * restored: that is remembered (refused) so that later jobs cold boot without trying again; a transient failure
 * (status failed, or a throw) backs off (see backoffMs) instead. */
export async function buildTemplate(b: BuildInput): Promise<BuildResult> {
  const t0 = performance.now();
  const log = b.log ?? (() => {});
  await mkdir(b.dir, { recursive: true, mode: 0o700 });
  const blocker = restoreBlocker(b.spec);
  const khz = await hostKhz();
  const key = await keyFor(b.dir, b.qemu, b.spec, b.accel, khz);
  if (blocker) return refuse(b.dir, key, blocker);
  let lock;
  try {
    lock = await acquireLock(join(b.dir, `${key}.lock`), 'exclusive', { wait: false });
  } catch (err) {
    if (err instanceof LockTimeoutError) return { status: 'busy', key };
    throw err;
  }
  let ref: ProcRef | undefined;
  let releaseSlot: (() => Promise<void>) | undefined;
  let bdir = '';
  try {
    await clearStaleBuilds(b.dir, key);
    bdir = await mkdtemp(join(b.dir, '.b')); // short: QEMU's socket paths inside must stay < 108 bytes
    const found = await lookupTemplate(b.dir, key);
    if (found.status === 'ready') return { status: 'exists', key };
    if (found.status === 'refused') return { status: 'refused', key, reason: found.reason };
    await mkdir(join(bdir, 'agent'), { mode: 0o700 });
    await mkdir(join(bdir, 'empty9p'), { mode: 0o700 });
    const initrd = join(bdir, 'initrd.img');
    if (b.spec.image.files.initrd) await copyFile(b.spec.image.files.initrd, initrd);
    await appendFile(initrd, templateCpio());
    const plan = snapshotPlan({ spec: b.spec, accel: b.accel, khz, runDir: bdir, initrd, ninep: join(bdir, 'empty9p'), ram: { path: join(bdir, 'ram'), share: true } });
    releaseSlot = await b.takeSlot?.();
    log(`building snapshot template ${key} (${b.spec.image.id}, ${b.spec.cpus} cpu, ${b.spec.memoryMB} MB)`);
    ref = await startQemu(b.qemu, qemuArgs(plan), [], plan.pidfile, 30_000);
    const deadline = Date.now() + (b.readyTimeoutMs ?? 120_000);
    let up = false;
    while (!up && Date.now() < deadline && (await isAlive(ref))) up = await ping(plan.sockets.control, 1000);
    const caps = up ? await agentCaps(plan.sockets.control, 5000).catch(() => [] as string[]) : [];
    const verdict = bootVerdict({ up, alive: await isAlive(ref), timeoutMs: b.readyTimeoutMs ?? 120_000, lacking: up ? REQUIRED_CAPS.filter((c) => !caps.includes(c)) : [],
      console: up ? '' : (await readFile(plan.console, 'utf8').catch(() => '')).trim().split('\n').slice(-2).join(' / ') });
    if (verdict?.kind === 'refuse') return await refuse(b.dir, key, verdict.reason);
    if (verdict) return await noteFailure(b.dir, key, verdict.reason);
    await releaseSlot?.();
    releaseSlot = undefined;
    // live migration of the idle guest into a file (no `stop` first: measured in DESIGN A5)
    const snapFile = join(bdir, 'snapshot');
    const sock = join(bdir, 'm.sock');
    const rx = receiveStream(sock, snapFile);
    const qmp = await QmpClient.connect(plan.sockets.qmp, 5000);
    try {
      await qmp.execute('migrate-set-capabilities', IGNORE_SHARED);
      await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 ** 3, 'downtime-limit': 1000 });
      await qmp.execute('migrate', { uri: `unix:${sock}` });
      const until = Date.now() + 120_000;
      for (;;) {
        const st = (await qmp.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
        if (st.status === 'completed') break;
        if (st.status === 'failed' || st.status === 'cancelled') throw new RestoreError(`saving the template failed: ${st['error-desc'] ?? st.status}`);
        if (Date.now() > until) throw new RestoreError('saving the template took more than 120 s');
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      qmp.close();
    }
    const bytes = await rx.done;
    rx.server.close();
    await terminate(ref, 0);
    for (const f of ['agent', 'empty9p', 'm.sock', 'qmp.sock', 'qemu.pid', 'console.log']) await rm(join(bdir, f), { recursive: true, force: true });
    const ramFile = join(bdir, 'ram');
    await chmod(ramFile, 0o600);
    const ram = { bytes: (await stat(ramFile)).size, sha256: await ramDigest(ramFile) };
    if (ram.bytes !== b.spec.memoryMB * 1024 * 1024) throw new RestoreError(`the template's RAM file holds ${ram.bytes} bytes, not ${b.spec.memoryMB} MB`);
    const meta: TemplateMeta = {
      format: TEMPLATE_FORMAT, key, createdAt: new Date().toISOString(), imageId: b.spec.image.id, digest: b.spec.image.digest,
      cpus: b.spec.cpus, memoryMB: b.spec.memoryMB, accel: b.accel, network: templateNetwork(b.spec), caps, snapshotBytes: bytes, ram,
      buildS: (performance.now() - t0) / 1000, qemuVersion: (await qemuIdentity(b.dir, b.qemu)).version,
    };
    await writeFileAtomic(join(bdir, 'meta.json'), JSON.stringify(meta, null, 2) + '\n', 0o600);
    await rename(bdir, templateDir(b.dir, key));
    await rm(join(b.dir, `${key}.failed.json`), { force: true });
    await rm(join(b.dir, `${key}.seen`), { force: true });
    await pruneStale(b.dir, meta);
    // the clones' sealed copy of the RAM now, while no job waits for it (else the first clone pays copy and digest)
    await sealedRam(templateDir(b.dir, key), key, ram, 60_000)
      .catch((e: Error) => log(`snapshot template ${key}: its RAM holder did not start (${e.message}); the first clone starts one`));
    log(`snapshot template ${key} saved: ${(bytes / 1e6).toFixed(1)} MB in ${meta.buildS.toFixed(1)} s`);
    return { status: 'built', key, seconds: meta.buildS, bytes };
  } catch (err) {
    await noteFailure(b.dir, key, (err as Error).message).catch(() => {}); // back off from this one too
    throw err;
  } finally {
    await releaseSlot?.().catch(() => {});
    if (ref) await terminate(ref, 0);
    if (bdir) await rm(bdir, { recursive: true, force: true });
    await lock.release();
  }
}

/** Build dirs of this key left by a builder that died (we hold the key's lock: nobody else uses them): stop
 * their template QEMU (by pidfile, if it is still a QEMU of that dir) and remove them. */
async function clearStaleBuilds(dir: string, key: string): Promise<void> {
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    if (!n.startsWith(`.b${key.slice(0, 12)}`)) continue;
    const bdir = join(dir, n);
    const pid = Number((await readFile(join(bdir, 'qemu.pid'), 'utf8').catch(() => '')).trim());
    const cmd = pid > 0 ? await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '') : '';
    if (cmd.includes(`${bdir}/`)) await terminate(await procRef(pid), 0);
    await rm(bdir, { recursive: true, force: true });
  }
}

/** Keys of templates to remove after `fresh` was saved: others of the same image id and shape (an older image,
 * kernel or QEMU: never used again), and those of the image id beyond the newest `max` (fresh counts). Pure. */
export function templatesToPrune(others: TemplateMeta[], fresh: TemplateMeta, max = MAX_TEMPLATES_PER_IMAGE): string[] {
  const same = others.filter((m) => m.key !== fresh.key && m.imageId === fresh.imageId);
  const stale = same.filter((m) => m.cpus === fresh.cpus && m.memoryMB === fresh.memoryMB && m.network === fresh.network && m.accel === fresh.accel);
  const rest = same.filter((m) => !stale.includes(m)).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return [...stale, ...rest.slice(Math.max(0, max - 1))].map((m) => m.key);
}

async function pruneStale(dir: string, fresh: TemplateMeta): Promise<void> {
  const metas: TemplateMeta[] = [];
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    if (!KEY.test(n) || n === fresh.key) continue;
    const m = await readFile(join(dir, n, 'meta.json'), 'utf8').then((t) => JSON.parse(t) as TemplateMeta, () => undefined);
    if (m && m.key === n && typeof m.imageId === 'string' && typeof m.createdAt === 'string') metas.push(m);
  }
  for (const k of templatesToPrune(metas, fresh)) await removeTemplate(dir, k);
  // shapes asked for once and not again within the window (buildNow) are forgotten
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{32}\.seen$/.test(n)) continue;
    const st = await stat(join(dir, n)).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs >= SHAPE_REPEAT_MS) await rm(join(dir, n), { force: true });
  }
}

/** Remove a template: its RAM holder first (clones running from it keep their mapping of the sealed copy). */
export async function removeTemplate(dir: string, key: string): Promise<void> {
  const tdir = templateDir(dir, key);
  await stopHolder(tdir, key);
  await rm(tdir, { recursive: true, force: true });
}
