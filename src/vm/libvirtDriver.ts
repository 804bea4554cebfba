/** The libvirt VM driver (`vm.driver: libvirt`): the same lifecycle as the direct-QEMU driver, but the VM is a
 * transient libvirt domain (`virsh create`), so a site gets libvirt's nwfilter (clean-traffic), networks and audit.
 *
 * Costs measured here (DESIGN A5): about +2 s per job over direct QEMU, q35 only (libvirt rejects microvm). The VM
 * lives outside the job's session: Torque neither kills nor accounts it, so the epilogue must call `destroy`.
 * The guest side is unchanged: the same agent over three named virtio-serial ports, the same context cpio. */
import { chmod, mkdir, readFile, writeFile, rm, unlink, copyFile, appendFile, open, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { ExecRequest, VmDriver, VmSpec, VmState, VmStatus } from './driver.js';
import { checkServedRoot, checkSpecWorkdir, pinWorkdir, virtiofsdPidsFor } from './workdirShare.js';
import { VmNotReadyError, VmSpecError, VmStartError, VmStateError } from './errors.js';
import { checkVmId, handOverAgent, readRecord, recordDir, recordPath, removeRecord, runDirOf, stamp, writeRecord } from './state.js';
import { createOverlay } from '../images/overlay.js';
import { contextCpio, type GuestContext } from './context.js';
import { AGENT_PORTS, DEFAULT_USER_MAC, WORKDIR_TAG, kernelCmdline, tscKhzFromCpuinfo } from './qemuArgs.js';
import { agentExec, lockAgent, requestPoweroff } from './agent.js';
import { procRef } from './proc.js';
import { buildDomainXml, type DomainSpec, type DomainNetwork } from './libvirtXml.js';
import { Virsh, type DomainState } from './libvirtVirsh.js';
import { chooseAccel, type AccelMode } from './accel.js';
import type { ProbeGuest } from './probeGuest.js';
import { withLock } from '../util/lock.js';
import { mkdirMode, writeFileAtomic } from '../util/atomic.js';

export interface LibvirtDriverOptions {
  stateDir: string;
  /** libvirt connection; a site's system daemon by default */
  uri?: string;
  /** when the spec names no accel: auto (default) = the cached verdict of the KVM probe (src/vm/accel.ts) */
  accel?: AccelMode;
  /** the kernel the KVM probe boots when accel is auto and no verdict is cached (without it: TCG) */
  probeImage?: ProbeGuest;
  /** bound on each virsh call (the first call after a daemon start may probe QEMU for seconds) */
  virshTimeoutMs?: number;
  /** virtiofsd for the workdir share */
  virtiofsd?: string;
  /** clean-traffic nwfilter on bridge ports (needs libvirt's nwfilter definitions, libvirt-daemon-config-nwfilter) */
  bridgeFilter?: boolean;
  /** the static guest address on a bridge, per VM (a site's slot table); DHCP / clean-traffic learning otherwise */
  bridgeIp?: (spec: VmSpec) => string | undefined;
  /** host TSC in kHz for the TCG cmdline; read from /proc/cpuinfo when absent */
  tscKhz?: number;
}

/** The libvirt domain name of a VM id (ids are checked by checkVmId, so the name is too). */
export const domainName = (id: string): string => `wnod-${id}`;

const SOCKETS = { control: 'control.sock', stdout: 'stdout.sock', stderr: 'stderr.sock' } as const;
// libvirt states in which QEMU still runs
const LIVE: readonly DomainState[] = ['running', 'idle', 'paused', 'in shutdown', 'pmsuspended', 'no state'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A connected Unix socket, or undefined while nobody listens there yet (libvirt creates it at `virsh create`). */
function connectOrUndefined(path: string): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', () => { s.destroy(); resolve(undefined); });
  });
}

/** Map a libvirt domain state and the record's steps to the driver's status. Pure. */
export function statusFrom(dom: DomainState, steps: VmState['steps']): VmStatus {
  if (LIVE.includes(dom)) return steps.ready ? 'ready' : 'running';
  if (dom === 'shut off' || dom === 'crashed') return 'stopped';
  // absent: a transient domain disappears from libvirt as soon as it stops
  if (steps.destroyed) return 'destroyed';
  if (steps.started) return 'stopped';
  return 'prepared';
}

/** What the guest network looks like to the XML. Pure. */
export function domainNetwork(spec: VmSpec, filter: boolean, ip: string | undefined): DomainNetwork {
  const n = spec.network;
  if (n.job) throw new VmSpecError(`VM ${spec.id}: job networks are implemented by the QEMU driver only (vm.driver: qemu)`);
  if (n.mode === 'none') return { mode: 'none' };
  if (n.mode === 'user') return { mode: 'user', mac: n.mac ?? DEFAULT_USER_MAC };
  if (!n.bridge || !n.mac) throw new VmSpecError(`VM ${spec.id}: network bridge needs vm.bridge and a fixed MAC per slot`);
  return { mode: 'bridge', bridge: n.bridge, mac: n.mac, filter, ...(ip ? { ip } : {}) };
}

export class LibvirtDriver implements VmDriver {
  readonly name = 'libvirt';
  readonly virsh: Virsh;
  private readonly opts: Required<Pick<LibvirtDriverOptions, 'stateDir' | 'uri' | 'virtiofsd' | 'bridgeFilter'>> & LibvirtDriverOptions;

  constructor(opts: LibvirtDriverOptions) {
    this.opts = { uri: 'qemu:///system', virtiofsd: '/usr/lib/qemu/virtiofsd', bridgeFilter: true, ...opts };
    this.virsh = new Virsh(this.opts.uri, opts.virshTimeoutMs ?? 120_000);
  }

  private lockPath(id: string): string {
    return join(recordDir(this.opts.stateDir), `${id}.lock`);
  }

  /** Serialise start and destroy of one VM across processes (prologue vs. an epilogue after qdel). */
  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    await mkdir(recordDir(this.opts.stateDir), { recursive: true, mode: 0o700 });
    return withLock(this.lockPath(id), 'exclusive', fn, { timeoutMs: 600_000 });
  }

  private async tscKhz(): Promise<number | undefined> {
    if (this.opts.tscKhz !== undefined) return this.opts.tscKhz;
    return tscKhzFromCpuinfo(await readFile('/proc/cpuinfo', 'utf8').catch(() => ''));
  }

  /** Write the record first (so gc can always find what follows), then the runtime dir, the per-job initrd (base +
   * context cpio) or fw_cfg context blob, the overlay over the image's disk, and the domain XML. */
  async prepare(spec: VmSpec): Promise<VmState> {
    checkVmId(spec.id);
    const stateDir = this.opts.stateDir;
    if (await readRecord(stateDir, spec.id)) throw new VmSpecError(`a VM with id ${spec.id} exists already (${recordPath(stateDir, spec.id)})`);
    const img = spec.image;
    if (img.kind === 'kernel' && !img.files.kernel) throw new VmSpecError(`image ${img.id}: kind kernel without a kernel file`);
    if (img.kind === 'disk' && !img.files.disk) throw new VmSpecError(`image ${img.id}: kind disk without a disk file`);
    if (spec.workdir) await checkSpecWorkdir(spec.workdir);
    const accel = spec.accel ?? await chooseAccel({ stateDir, mode: this.opts.accel ?? 'auto', ...(this.opts.probeImage ? { probeImage: this.opts.probeImage } : {}) });
    const runDir = runDirOf(stateDir, spec.id);
    const sockets = {
      control: join(runDir, 'agent', SOCKETS.control), stdout: join(runDir, 'agent', SOCKETS.stdout), stderr: join(runDir, 'agent', SOCKETS.stderr),
    };
    const owner = await procRef(process.pid);
    const name = domainName(spec.id);
    const state: VmState = {
      version: 1, id: spec.id, ...(spec.jobId !== undefined ? { jobId: spec.jobId } : {}), driver: this.name, stateDir, spec, runDir,
      pids: {}, sockets, files: [], steps: {}, owner: owner ?? { pid: process.pid, startTime: '0' }, accel,
      extra: { domain: name, uri: this.opts.uri },
    };
    await writeRecord(stateDir, state);
    try {
      // (modes set explicitly: root hooks may run under umask 077)
      await mkdirMode(stateDir, 0o711);
      await mkdirMode(join(stateDir, 'run'), 0o711);
      await mkdir(runDir, { mode: 0o711 });
      await chmod(runDir, 0o711);
      await mkdir(join(runDir, 'agent'), { mode: 0o700 });
      const ctx: GuestContext = {
        hostname: spec.hostname,
        user: spec.user,
        ...(spec.workdir ? { workdir: spec.workdir.hostPath } : {}),
        // libvirt's user-mode network is QEMU's slirp: the fixed 10.0.2.0/24 plan
        ...(spec.network.mode === 'user' ? { network: { ip: '10.0.2.15/24', gateway: '10.0.2.2', dns: '10.0.2.3' } } : {}),
        clock: Math.floor(Date.now() / 1000),
        seed: randomBytes(64),
      };
      const cpio = contextCpio(ctx);
      let boot: DomainSpec['boot'];
      const fwcfg: NonNullable<DomainSpec['fwcfg']> = [];
      if (img.kind === 'kernel') {
        // Linux unpacks concatenated cpio archives in order: the context lands on top of the cached base
        const initrd = join(runDir, 'initrd.img');
        if (img.files.initrd) await copyFile(img.files.initrd, initrd);
        await appendFile(initrd, cpio, { mode: 0o600 });
        boot = { kind: 'kernel', kernel: img.files.kernel!, initrd, cmdline: kernelCmdline(accel, await this.tscKhz(), img.cmdline) };
      } else {
        const blob = join(runDir, 'context.cpio');
        await writeFile(blob, cpio, { mode: 0o600 });
        fwcfg.push({ name: 'opt/org.wnod/context', file: blob });
        boot = { kind: 'disk' };
      }
      const disks: DomainSpec['disks'] = [];
      if (img.files.disk) {
        // every job writes its own copy-on-write overlay, never the shared cached image
        const overlay = spec.overlay ?? join(runDir, 'disk.qcow2');
        state.spec.overlay = overlay;
        state.files.push(overlay);
        await writeRecord(stateDir, state); // the overlay path is known before the file exists
        await createOverlay(img.files.disk, img.diskFormat ?? 'raw', overlay, undefined, { needGB: img.diskGB });
        disks.push({ path: overlay, format: 'qcow2' });
      }
      const dom: DomainSpec = {
        name,
        type: accel === 'kvm' ? 'kvm' : 'qemu',
        cpus: spec.cpus,
        memoryMB: spec.memoryMB,
        // -cpu host aborts on PVM hosts unless arch-capabilities is off (DESIGN A5); harmless elsewhere
        ...(accel === 'kvm' ? { cpuFeaturesOff: ['arch-capabilities'] } : {}),
        boot,
        disks,
        channels: (Object.keys(AGENT_PORTS) as (keyof typeof AGENT_PORTS)[]).map((k) => ({ name: AGENT_PORTS[k], path: sockets[k], mode: 'bind' as const })),
        ...(spec.workdir ? { share: { hostPath: spec.workdir.hostPath, tag: WORKDIR_TAG, driver: 'virtiofs' as const, virtiofsd: this.opts.virtiofsd } } : {}),
        network: domainNetwork(spec, this.opts.bridgeFilter, this.opts.bridgeIp?.(spec)),
        consoleLog: join(runDir, 'console.log'),
        ...(fwcfg.length ? { fwcfg } : {}),
      };
      await writeFileAtomic(join(runDir, 'domain.xml'), buildDomainXml(dom), 0o600);
    } catch (err) {
      await this.destroy(state).catch(() => {});
      throw err;
    }
    return stamp(stateDir, state, 'prepared');
  }

  /** `virsh create` the transient domain from the XML written by prepare. */
  async start(state: VmState): Promise<VmState> {
    return this.locked(state.id, async () => {
      const current = await readRecord(this.opts.stateDir, state.id);
      if (!current) throw new VmStateError(`VM ${state.id}: no state record (destroyed while starting?)`);
      const name = domainName(state.id);
      const workdir = state.spec.workdir;
      const pinned = workdir ? await pinWorkdir(workdir.hostPath, workdir.uid) : undefined;
      try {
        await this.virsh.create(join(state.runDir, 'domain.xml'));
      } catch (err) {
        throw new VmStartError(`VM ${state.id}: libvirt could not start domain ${name}: ${(err as Error).message}`, await this.consoleTail(state), { cause: err });
      }
      if (workdir && pinned) {
        // libvirtd started virtiofsd: every one serving this path must serve the pinned directory (see workdirShare.ts)
        const pids = await virtiofsdPidsFor(workdir.hostPath);
        try {
          if (pids.length === 0) throw new VmStartError(`VM ${state.id}: no virtiofsd serves ${workdir.hostPath}`);
          for (const pid of pids) await checkServedRoot(pid, pinned, 10_000);
        } catch (err) {
          await this.virsh.destroy(name).catch(() => {});
          throw err;
        }
      }
      return stamp(this.opts.stateDir, state, 'started');
    });
  }

  /** Let `uid:gid` (the job user) reach the agent sockets, so the job starter can exec without root. libvirtd
   * creates them at `virsh create` (as its own user): call this after start, as the QEMU driver's twin. */
  async grantAgentAccess(state: VmState, uid: number, gid: number): Promise<void> {
    // one-way: the agent then runs nothing as another uid/gid (generous bound: callers may hand over before ready)
    await lockAgent(state.sockets.control, uid, gid, 180_000);
    await handOverAgent(state.sockets, join(state.runDir, 'agent'), uid, gid);
    state.handedOver = true;
    await writeRecord(this.opts.stateDir, state);
  }

  /** Wait until the agent answers PING; fail early when the domain is gone. One connection is held while waiting:
   * a PING sent before the guest opens its port waits in the socket and is read by the agent's first read, whereas
   * closing and reconnecting would throw it away (and cost up to a poll period per attempt). */
  async waitReady(state: VmState, timeoutMs: number): Promise<VmState> {
    const deadline = Date.now() + timeoutMs;
    const nonce = randomBytes(16).toString('hex');
    let sock: Socket | undefined;
    let answered = false;
    let buf = '';
    let nextDomCheck = 0;
    try {
      while (Date.now() < deadline) {
        if (!sock || sock.destroyed) {
          sock = await connectOrUndefined(state.sockets.control);
          if (sock) {
            buf = '';
            sock.on('data', (d: Buffer) => {
              buf += d.toString('latin1');
              if (buf.split('\n').some((l) => l.trim() === `PONG ${nonce}`)) answered = true;
              if (buf.length > 65536) buf = buf.slice(-1024);
            });
            sock.on('error', () => sock?.destroy());
            sock.on('close', () => sock?.destroy());
            sock.write(`PING ${nonce}\n`);
          }
        }
        if (answered) return await stamp(this.opts.stateDir, state, 'ready');
        if (Date.now() >= nextDomCheck) {
          // a virsh call costs a process: ask libvirt about the domain twice a second, not every poll
          nextDomCheck = Date.now() + 500;
          const dom = await this.virsh.domState(domainName(state.id));
          if (!LIVE.includes(dom)) {
            throw new VmNotReadyError('exited', `VM ${state.id}: domain ${domainName(state.id)} is ${dom} before its agent answered`, await this.consoleTail(state));
          }
        }
        await sleep(20);
      }
    } finally {
      sock?.destroy();
    }
    throw new VmNotReadyError('timeout', `VM ${state.id}: the guest agent did not answer within ${timeoutMs} ms`, await this.consoleTail(state));
  }

  /** Run one command through the guest agent; resolves to its exit code. */
  async exec(state: VmState, req: ExecRequest): Promise<number> {
    // one command at a time per VM: each agent port is one byte stream
    return withLock(join(state.runDir, 'agent', 'exec.lock'), 'exclusive', () => agentExec(state.sockets, {
      argv: req.argv, cwd: req.cwd, env: { ...state.spec.env, ...req.env }, uid: req.user.uid, gid: req.user.gid,
      stdout: req.stdout, stderr: req.stderr,
      ...(req.signal ? { signal: req.signal } : {}),
      ...(req.timeoutMs !== undefined ? { timeoutMs: req.timeoutMs } : {}),
      ...(req.heartbeat ? { heartbeat: req.heartbeat } : {}),
    }));
  }

  /** Ask the guest to power off (agent, then ACPI), wait graceMs, then destroy the domain. */
  async stop(state: VmState, graceMs: number): Promise<void> {
    const name = domainName(state.id);
    if (!LIVE.includes(await this.virsh.domState(name))) return;
    // never recreate a record that a concurrent destroy has just removed
    if (await readRecord(this.opts.stateDir, state.id)) await stamp(this.opts.stateDir, state, 'stopping');
    await requestPoweroff(state.sockets.control);
    // busybox guests ignore ACPI; real distributions may not run the agent: ask both ways
    await this.virsh.shutdown(name).catch(() => {});
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      if (!LIVE.includes(await this.virsh.domState(name))) return;
      await sleep(100);
    }
    await this.virsh.destroy(name);
  }

  /** Force the domain off, delete runtime files, overlay and record. Idempotent: an absent domain or record is fine;
   * an unreachable libvirt throws and keeps the record, so a later destroy (or `wnod gc`) can finish the job. */
  async destroy(state: VmState): Promise<void> {
    checkVmId(state.id);
    await this.locked(state.id, async () => {
      await this.virsh.destroy(domainName(state.id));
      // only delete what this driver put in the record, and only under its own runtime dir or the named overlay
      for (const f of state.files) await rm(f, { force: true });
      await rm(runDirOf(this.opts.stateDir, state.id), { recursive: true, force: true });
      await removeRecord(this.opts.stateDir, state.id);
      // the lock file goes too (we hold it; a waiter notices the replaced inode and retries)
      await unlink(this.lockPath(state.id)).catch(() => {});
    });
    state.steps.destroyed = new Date().toISOString();
  }

  /** The VM's state from libvirt plus the record's steps; `unknown` when libvirt cannot be asked. */
  async status(state: VmState): Promise<VmStatus> {
    let dom: DomainState;
    try {
      dom = await this.virsh.domState(domainName(state.id));
    } catch {
      return 'unknown';
    }
    // destroy removes the record last: no domain and no record is a destroyed VM, whatever this copy says
    if (dom === 'absent' && !(await readRecord(this.opts.stateDir, state.id).catch(() => undefined))) return 'destroyed';
    return statusFrom(dom, state.steps);
  }

  private async consoleTail(state: VmState, bytes = 2048): Promise<string> {
    const path = join(state.runDir, 'console.log');
    try {
      const fh = await open(path, 'r');
      try {
        const { size } = await fh.stat();
        const len = Math.min(size, bytes);
        const buf = Buffer.alloc(len);
        await fh.read(buf, 0, len, size - len);
        return buf.toString('utf8');
      } finally {
        await fh.close();
      }
    } catch {
      return '';
    }
  }
}

/** The driver for `vm.driver: libvirt` from the site config's vm section (libvirt at qemu:///system unless opts say). */
export function libvirtDriverFromConfig(vm: { stateDir: string; accel: AccelMode }, opts: Partial<LibvirtDriverOptions> = {}): LibvirtDriver {
  return new LibvirtDriver({ stateDir: vm.stateDir, accel: vm.accel, ...opts });
}

/** The driver that can handle an existing libvirt record (epilogue, `wnod gc`): same state dir, same libvirt URI. */
export function libvirtDriverForRecord(state: VmState, opts: Partial<LibvirtDriverOptions> = {}): LibvirtDriver {
  if (state.driver !== 'libvirt') throw new VmStateError(`VM ${state.id}: record of driver '${state.driver}', not libvirt`);
  const uri = state.extra?.uri;
  return new LibvirtDriver({ stateDir: state.stateDir, ...(uri ? { uri } : {}), ...opts });
}
