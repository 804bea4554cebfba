/** The QEMU direct driver (the default, no daemon): QEMU runs detached (-daemonize: own session, pidfile), the
 * workdir is shared by a virtiofsd per VM, the guest agent is reached through Unix sockets in the VM's runtime
 * dir, and everything needed to find the VM again is in its state record. */
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { copyFile, appendFile, chmod, lstat, mkdir, open, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import { run, CommandError } from '../util/run.js';
import { withLock } from '../util/lock.js';
import { createOverlay } from '../images/overlay.js';
import type { ExecRequest, VmDriver, VmSpec, VmState, VmStatus } from './driver.js';
import { AgentLostError, VmNotReadyError, VmSpecError, VmStartError, VmStateError } from './errors.js';
import { checkVmId, handOverAgent, hypervisorAlive, readRecord, recordPath, removeRecord, runDirOf, stamp, vmSockets, writeRecord } from './state.js';
import { procRef, isAlive, terminate, waitGone, type ProcRef } from './proc.js';
import { contextCpio, jobNetContext, type GuestContext } from './context.js';
import { boundedConsoleChange, kernelCmdline, qemuArgs, runAsFor, tscKhzFromCpuinfo, type QemuPlan } from './qemuArgs.js';
import { agentExec, lockAgent, requestPoweroff } from './agent.js';
import { hostKhz, keyFor, lookupTemplate, restoreBlocker, restoreClone, RestoreError, restoreTimeoutMs, templateLacks, templateSpec, type SnapshotOptions } from './snapshot.js';
import { QmpClient } from './qmp.js';
import { checkServedRoot, checkSpecWorkdir, pinWorkdir, virtiofsdArgs } from './workdirShare.js';
import { chooseAccel, type AccelMode } from './accel.js';
import type { ProbeGuest } from './probeGuest.js';
import { mkdirMode } from '../util/atomic.js';

export const QEMU_BINARY = 'qemu-system-x86_64';
export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

export interface QemuDriverOptions {
  stateDir: string;
  accel?: AccelMode;          // default auto
  qemu?: string;
  virtiofsd?: string;
  /** the kernel used by the KVM probe (the test image's) when accel is auto */
  probeImage?: ProbeGuest;
  /** warm snapshots (src/vm/snapshot.ts): restore kernel images from a matching template instead of booting */
  snapshots?: SnapshotOptions;
  /** start QEMU inside this network namespace (a worker node kept in a namespace, as the tests' nodes are): its
   * taps live there */
  netns?: string;
}

/** Limits a spec must respect whatever the caller computed (the catalog bounds come before this). */
function checkSpec(spec: VmSpec): void {
  checkVmId(spec.id);
  if (!Number.isInteger(spec.cpus) || spec.cpus < 1 || spec.cpus > 256) throw new VmSpecError(`cpus must be 1..256, got ${spec.cpus}`);
  if (!Number.isInteger(spec.memoryMB) || spec.memoryMB < 64 || spec.memoryMB > 4 << 20) throw new VmSpecError(`memoryMB must be 64..4194304, got ${spec.memoryMB}`);
  const f = spec.image.files;
  if (spec.image.kind === 'kernel' && !f.kernel) throw new VmSpecError(`image ${spec.image.id}: kind kernel without a kernel file`);
  if (spec.image.kind === 'disk' && !f.disk) throw new VmSpecError(`image ${spec.image.id}: kind disk without a disk file`);
  for (const [role, p] of Object.entries(f)) {
    if (p !== undefined && (!p.startsWith('/') || /[\0\n]/.test(p))) throw new VmSpecError(`image ${spec.image.id}: ${role} path '${p}' is not absolute`);
  }
  if (spec.network.job) {
    const j = spec.network.job;
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(j.tap)) throw new VmSpecError(`invalid job network tap name '${j.tap}'`);
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(j.mac)) throw new VmSpecError(`invalid job network MAC '${j.mac}'`);
  }
  if (spec.network.mode === 'bridge') throw new VmSpecError('network mode bridge is not implemented by the QEMU driver yet (see src/vm/network.ts)');
}

async function tscKhz(): Promise<number | undefined> {
  return tscKhzFromCpuinfo(await readFile('/proc/cpuinfo', 'utf8').catch(() => ''));
}

async function tail(path: string, bytes = 2000): Promise<string> {
  try {
    const b = await readFile(path);
    return b.subarray(Math.max(0, b.length - bytes)).toString('utf8');
  } catch {
    return '';
  }
}

async function waitForPath(path: string, timeoutMs: number, alive: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await stat(path).then(() => true, () => false)) return true;
    if (!(await alive())) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

export class QemuDriver implements VmDriver {
  readonly name = 'qemu';
  constructor(private readonly opts: QemuDriverOptions) {}

  private get stateDir(): string {
    return this.opts.stateDir;
  }

  /** Create the record first (so gc can always find what follows), then the runtime dir, context and overlay. */
  async prepare(spec: VmSpec): Promise<VmState> {
    checkSpec(spec);
    // sun_path holds 107 bytes: say so now, rather than as QEMU's error at start
    for (const p of Object.values(vmSockets(this.stateDir, spec.id))) {
      if (Buffer.byteLength(p) > 107) throw new VmSpecError(`the state dir ${this.stateDir} is too long for the VM's Unix sockets (${p} is ${Buffer.byteLength(p)} bytes, at most 107): use a shorter vm.state_dir`);
    }
    if (await readRecord(this.stateDir, spec.id)) throw new VmSpecError(`a VM with id ${spec.id} exists already (${recordPath(this.stateDir, spec.id)})`);
    if (spec.workdir) await checkSpecWorkdir(spec.workdir);
    const runDir = runDirOf(this.stateDir, spec.id);
    const me = await procRef(process.pid);
    const state: VmState = {
      version: 1, id: spec.id, jobId: spec.jobId, driver: this.name, stateDir: this.stateDir, spec, runDir, pids: {},
      sockets: vmSockets(this.stateDir, spec.id), files: [], steps: {}, owner: me ?? { pid: process.pid, startTime: '0' },
    };
    // the state dir is traversable (the job user reaches its agent sockets below run/), records are not
    // (modes set explicitly: root hooks may run under umask 077)
    await mkdirMode(this.stateDir, 0o711);
    await writeRecord(this.stateDir, state);
    try {
      await mkdirMode(join(this.stateDir, 'run'), 0o711);
      await mkdir(runDir, { mode: 0o711 });
      await chmod(runDir, 0o711);
      await mkdir(join(runDir, 'agent'), { mode: 0o700 });
      state.accel = spec.accel ?? (await chooseAccel({ stateDir: this.stateDir, mode: this.opts.accel ?? 'auto', qemu: this.opts.qemu,
        probeImage: this.opts.probeImage }));
      if (this.opts.snapshots) state.extra = { ...state.extra, ...(await this.chooseBoot(spec, state.accel)) };
      if (state.extra?.boot !== 'restore') await this.coldFiles(state);
    } catch (err) {
      await this.destroy(state).catch(() => {});
      throw err;
    }
    return stamp(this.stateDir, state, 'prepared');
  }

  /** Restore from a template, or cold boot and why (state.extra: boot, coldReason, template). */
  private async chooseBoot(spec: VmSpec, accel: 'kvm' | 'tcg'): Promise<Record<string, string>> {
    const snap = this.opts.snapshots!;
    const blocker = restoreBlocker(spec);
    if (blocker) return { boot: 'cold', coldReason: blocker };
    const key = await keyFor(snap.dir, this.opts.qemu ?? QEMU_BINARY, spec, accel, await hostKhz());
    const t = await lookupTemplate(snap.dir, key);
    if (t.status === 'ready') {
      const lacks = templateLacks(spec, t.meta.caps);
      if (lacks) return { boot: 'cold', coldReason: lacks, template: key };
      return { boot: 'restore', template: key };
    }
    if (t.status === 'refused') return { boot: 'cold', coldReason: `snapshot template refused: ${t.reason}`, template: key };
    try { snap.onMissing?.({ ...templateSpec(spec), accel }, key); } catch { /* a failed build request must not fail the job */ }
    return { boot: 'cold', coldReason: 'no snapshot template yet for this image and shape', template: key };
  }

  /** The cold boot's per-VM files: the initrd with the context appended (or the fw_cfg blob) and the overlay. */
  private async coldFiles(state: VmState): Promise<void> {
    const spec = state.spec;
    const runDir = state.runDir;
    const ctx: GuestContext = {
      hostname: spec.hostname, user: spec.user, workdir: spec.workdir?.hostPath,
      network: spec.network.mode === 'user' ? { ip: '10.0.2.15/24', gateway: '10.0.2.2', dns: '10.0.2.3' } : undefined,
      jobNet: jobNetContext(spec.network.job),
      clock: Math.floor(Date.now() / 1000), seed: randomBytes(64),
      features: [spec.image.kind === 'kernel' ? 'mmio' : 'pci', 'base', ...(spec.image.files.disk ? ['blk'] : []),
        ...(spec.workdir ? ['fs'] : []), ...(spec.network.mode !== 'none' || spec.network.job ? ['net'] : []),
        // a lease's (or a job's) ssh server needs the kernel's RNG ready at once: virtio-rng credits it (else ~1.4 s under TCG)
        ...(spec.network.forwards?.length || spec.network.job?.ssh ? ['rng'] : [])],
    };
    const cpio = contextCpio(ctx);
    if (spec.image.kind === 'kernel') {
      const initrd = join(runDir, 'initrd.img');
      if (spec.image.files.initrd) await copyFile(spec.image.files.initrd, initrd);
      // the context (entropy seed, a job's ssh keys) is root's: the runtime dir is 0711, the cached initrd 0644
      await writeFile(initrd, '', { flag: 'a', mode: 0o600 });
      await chmod(initrd, 0o600);
      await appendFile(initrd, cpio);
    } else {
      await writeFile(join(runDir, 'context.cpio'), cpio, { mode: 0o600 });
    }
    if (spec.image.files.disk) {
      const overlay = spec.overlay ?? join(runDir, 'disk.qcow2');
      state.spec.overlay = overlay;
      state.files.push(overlay);
      await writeRecord(this.stateDir, state); // the overlay path is known before the file exists
      await createOverlay(spec.image.files.disk, spec.image.diskFormat ?? 'raw', overlay, undefined, { needGB: spec.image.diskGB });
    }
  }

  /** Restore from the template chosen in prepare and hand the clone its context; throws RestoreError. */
  private async restore(state: VmState): Promise<void> {
    const snap = this.opts.snapshots!;
    const key = state.extra?.template ?? '';
    const t = await lookupTemplate(snap.dir, key);
    if (t.status !== 'ready') throw new RestoreError(`snapshot template ${key} is gone`);
    await restoreClone({
      qemu: this.opts.qemu ?? QEMU_BINARY, spec: state.spec, accel: state.accel ?? 'tcg', khz: await tscKhz(), runDir: state.runDir,
      template: t, timeoutMs: snap.restoreTimeoutMs ?? restoreTimeoutMs(state.spec), ...(this.opts.netns !== undefined ? { netns: this.opts.netns } : {}),
      onPid: async (ref) => { state.pids.qemu = ref; await writeRecord(this.stateDir, state); },
    });
  }

  private plan(state: VmState, khz: number | undefined): QemuPlan {
    const s = state.spec;
    const accel = state.accel ?? 'tcg';
    const kernel = s.image.kind === 'kernel';
    return {
      machine: kernel ? 'microvm' : 'q35', accel, cpus: s.cpus, memoryMB: s.memoryMB, acpi: s.image.acpi,
      kernel: kernel ? s.image.files.kernel : undefined,
      initrd: kernel ? join(state.runDir, 'initrd.img') : undefined,
      cmdline: kernel ? kernelCmdline(accel, khz, s.image.cmdline) : undefined,
      disk: s.overlay ? { path: s.overlay, format: 'qcow2' } : undefined,
      contextBlob: kernel ? undefined : join(state.runDir, 'context.cpio'),
      sockets: { ...state.sockets, qmp: state.sockets.qmp!, virtiofs: s.workdir ? state.sockets.virtiofs : undefined },
      console: join(state.runDir, 'console.log'), pidfile: join(state.runDir, 'qemu.pid'), network: s.network,
      runAs: runAsFor(s.user),
    };
  }

  /** Start virtiofsd (if a workdir is shared) and QEMU, both detached; record their pids. */
  async start(state: VmState): Promise<VmState> {
    const s = state.spec;
    if (state.extra?.boot === 'restore') {
      try {
        await this.restore(state);
        state.extra = { ...state.extra, restoredAt: new Date().toISOString() };
        return await stamp(this.stateDir, state, 'started');
      } catch (err) {
        // any failure of the warm path: destroy what it started and cold boot, with the reason on record
        await terminate(state.pids.qemu, 0);
        delete state.pids.qemu;
        for (const f of ['empty9p', 'qemu.pid', 'qmp.sock', 'console.log']) await rm(join(state.runDir, f), { recursive: true, force: true });
        for (const k of ['control', 'stdout', 'stderr'] as const) await rm(state.sockets[k], { force: true });
        state.extra = { ...state.extra, boot: 'cold', coldReason: `restore failed: ${(err as Error).message}` };
        await writeRecord(this.stateDir, state);
        await this.coldFiles(state);
      }
    }
    const pinned = s.workdir ? await pinWorkdir(s.workdir.hostPath, s.workdir.uid) : undefined;
    if (s.workdir) {
      const log = await open(join(state.runDir, 'virtiofsd.log'), 'a', 0o600);
      try {
        const child = spawn(this.opts.virtiofsd ?? VIRTIOFSD, virtiofsdArgs(state.sockets.virtiofs!, s.workdir.hostPath),
          { detached: true, stdio: ['ignore', log.fd, log.fd] });
        child.unref();
        const pid = child.pid;
        if (pid === undefined) throw new VmStartError(`cannot start ${VIRTIOFSD}`);
        const ref = await procRef(pid);
        if (ref) state.pids.virtiofsd = ref;
        await writeRecord(this.stateDir, state);
        const ok = await waitForPath(state.sockets.virtiofs!, 5000, () => isAlive(ref));
        if (!ok) throw new VmStartError(`virtiofsd did not create ${state.sockets.virtiofs}: ${(await tail(join(state.runDir, 'virtiofsd.log'))).trim()}`);
      } finally {
        await log.close();
      }
    }
    const args = qemuArgs(this.plan(state, await tscKhz()));
    try {
      const qemu = this.opts.qemu ?? QEMU_BINARY;
      if (this.opts.netns !== undefined) {
        if (!/^[A-Za-z0-9_.-]{1,64}$/.test(this.opts.netns)) throw new VmSpecError(`invalid network namespace name '${this.opts.netns}'`);
        await run('/usr/sbin/ip', ['netns', 'exec', this.opts.netns, qemu, ...args], { timeoutMs: 30_000 });
      } else await run(qemu, args, { timeoutMs: 30_000 });
    } catch (err) {
      const msg = err instanceof CommandError ? err.stderr.trim().split('\n').slice(-3).join(' / ') : String(err);
      await terminate(state.pids.virtiofsd, 500);
      throw new VmStartError(`QEMU did not start for VM ${state.id}: ${msg}`, await tail(join(state.runDir, 'console.log')), { cause: err });
    }
    const pid = Number((await readFile(join(state.runDir, 'qemu.pid'), 'utf8')).trim());
    const ref = await procRef(pid);
    if (!ref) throw new VmStartError(`QEMU for VM ${state.id} exited right after starting`, await tail(join(state.runDir, 'console.log')));
    state.pids.qemu = ref;
    if (pinned && state.pids.virtiofsd) {
      try {
        await checkServedRoot(state.pids.virtiofsd.pid, pinned, 10_000);
      } catch (err) {
        await writeRecord(this.stateDir, state); // destroy needs the pids
        await this.destroy(state);
        throw err;
      }
    }
    return stamp(this.stateDir, state, 'started');
  }

  /** One PING on one connection, raced against QEMU's death and the deadline. Knows from QMP whether the guest ever
   * opened the agent's control port, which tells "no agent in the image" from "still booting". */
  async waitReady(state: VmState, timeoutMs: number): Promise<VmState> {
    if (state.extra?.boot === 'restore' && state.extra.restoredAt) {
      // the clone answered SETUP in start()
      if (!(await isAlive(state.pids.qemu))) throw new VmNotReadyError('exited', `VM ${state.id}: the restored QEMU is gone`);
      return stamp(this.stateDir, state, 'ready');
    }
    const deadline = Date.now() + timeoutMs;
    const qmp = await QmpClient.connect(state.sockets.qmp!, 3000).catch(() => undefined);
    let portOpened = false;
    qmp?.onEvent((ev) => {
      if (ev.event === 'VSERPORT_CHANGE' && (ev.data as { id?: string; open?: boolean })?.id === 'ch-control' && (ev.data as { open?: boolean }).open) portOpened = true;
    });
    const nonce = randomBytes(16).toString('hex');
    let sock: Socket | undefined;
    let answered = false;
    let buf = '';
    try {
      while (Date.now() < deadline) {
        if (!(await isAlive(state.pids.qemu))) break;
        if (!sock) {
          sock = await new Promise<Socket | undefined>((resolve) => {
            const s = connect(state.sockets.control);
            s.once('connect', () => resolve(s));
            s.once('error', () => { s.destroy(); resolve(undefined); });
          });
          if (sock) {
            sock.on('data', (d: Buffer) => {
              buf += d.toString('latin1');
              if (buf.split('\n').some((l) => l.trim() === `PONG ${nonce}`)) answered = true;
              if (buf.length > 65536) buf = buf.slice(-1024);
            });
            sock.on('error', () => {});
            sock.write(`PING ${nonce}\n`);
          }
        }
        if (answered) {
          // from here on the guest may be the job's: its console goes to a bounded ring, not to the node's disk
          await boundConsole(qmp, state.id);
          return await stamp(this.stateDir, state, 'ready');
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      sock?.destroy();
      qmp?.close();
    }
    const con = await tail(join(state.runDir, 'console.log'));
    const alive = await isAlive(state.pids.qemu);
    const noAgentInit = /no guest agent|agent exited/.test(con);
    if (noAgentInit || (!portOpened && qmp && !alive)) {
      throw new VmNotReadyError('no-agent', `VM ${state.id}: the guest ${alive ? 'runs' : 'stopped'} without a wnod agent ` +
        `(virtio-serial port org.wnod.control was never opened) — is guest/wnod-agent installed and started by the image's init?`, con);
    }
    if (!alive) throw new VmNotReadyError('exited', `VM ${state.id}: QEMU exited before the guest agent answered; console: ${con.trim().split('\n').slice(-3).join(' / ')}`, con);
    throw new VmNotReadyError('timeout', `VM ${state.id}: the guest agent did not answer within ${timeoutMs} ms ` +
      `(${portOpened ? 'its port is open but it does not answer' : qmp ? 'the guest never opened its agent port' : 'QMP unavailable'})`, con);
  }

  /** Run a command through the agent (one at a time per VM: the channel is one stream per port). */
  async exec(state: VmState, req: ExecRequest): Promise<number> {
    if (!(await isAlive(state.pids.qemu))) throw new VmStateError(`VM ${state.id} is not running`);
    try {
      return await execInVm(this.stateDir, state.id, { ...req, env: { ...state.spec.env, ...req.env } });
    } catch (err) {
      if (err instanceof AgentLostError && err.reason === 'unresponsive') throw await withEvidence(state, err);
      throw err;
    }
  }

  async stop(state: VmState, graceMs: number): Promise<void> {
    if (await readRecord(this.stateDir, state.id)) await stamp(this.stateDir, state, 'stopping');
    if (await isAlive(state.pids.qemu)) {
      await requestPoweroff(state.sockets.control);
      if (!(await waitGone(state.pids.qemu, graceMs))) await terminate(state.pids.qemu, 1000);
    }
    await terminate(state.pids.virtiofsd, 1000);
  }

  /** Kill what is left (pids are checked against their start time), delete files, then the record. Idempotent. */
  async destroy(state: VmState): Promise<void> {
    await terminate(state.pids.qemu, 0);
    await terminate(state.pids.virtiofsd, 500);
    for (const f of state.files) await unlink(f).catch(() => {});
    await rm(state.runDir, { recursive: true, force: true });
    await removeRecord(this.stateDir, state.id);
  }

  async status(state: VmState): Promise<VmStatus> {
    if (!(await readRecord(this.stateDir, state.id))) return 'destroyed';
    if (await isAlive(state.pids.qemu)) return state.steps.ready ? 'ready' : 'running';
    if (state.steps.started) return 'stopped';
    return state.steps.prepared ? 'prepared' : 'unknown';
  }

  /** Let `uid:gid` (the job user) reach the agent sockets, so the job starter can exec without root. */
  async grantAgentAccess(state: VmState, uid: number, gid: number): Promise<void> {
    // first the one-way lock: with the sockets, the user could otherwise ask the agent for uid 0
    await lockAgent(state.sockets.control, uid, gid, 30_000); // the agent answered PING just before
    await handOverAgent(state.sockets, join(state.runDir, 'agent'), uid, gid);
    state.handedOver = true;
    await writeRecord(this.stateDir, state);
  }
}

/** Swap the serial console of a booted VM from its log file to a ring buffer (QMP chardev-change); a VM whose
 * console cannot be bounded is not handed to a job. */
async function boundConsole(qmp: QmpClient | undefined, id: string): Promise<void> {
  if (!qmp) throw new VmStartError(`VM ${id}: QMP is unavailable, so its console cannot be bounded`);
  try {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([qmp.execute('chardev-change', boundedConsoleChange()),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000); })])
      .finally(() => clearTimeout(timer));
  } catch (err) {
    throw new VmStartError(`VM ${id}: cannot bound its console (QMP chardev-change): ${(err as Error).message}`);
  }
}

/** An unresponsive agent with what the host can still see of its VM (QEMU's run state, the console's last lines),
 * so that a wedged guest can be told from a wedged agent afterwards. */
async function withEvidence(state: VmState, err: AgentLostError): Promise<AgentLostError> {
  let status = 'unknown';
  const qmp = await QmpClient.connect(join(state.runDir, 'qmp.sock'), 5000).catch((e: Error) => { status = `unknown (QMP: ${e.message})`; return undefined; });
  if (qmp) {
    try {
      let timer: NodeJS.Timeout | undefined;
      const st = (await Promise.race([qmp.execute('query-status'),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('no answer')), 5000); })]).finally(() => clearTimeout(timer))) as { status?: string };
      status = String(st.status ?? 'unknown');
    } catch (e) {
      status = `unknown (${(e as Error).message})`;
    } finally {
      qmp.close();
    }
  }
  const con = (await tail(join(state.runDir, 'console.log'), 1500)).replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '').trim().split('\n').slice(-6).join(' / ');
  return new AgentLostError(err.reason, `${err.message} (QEMU: ${status}; console: ${con || 'empty'})`, { cause: err });
}

/** Run a command in VM `id` knowing only the state dir and the id — what the job starter (the job user, who
 * cannot read the root-only record) has. One command at a time per VM (a lock beside the sockets). */
export async function execInVm(stateDir: string, id: string, req: ExecRequest): Promise<number> {
  const sockets = vmSockets(stateDir, id);
  const vmAlive = await hypervisorAlive(stateDir, id);
  return withLock(join(runDirOf(stateDir, id), 'agent', 'exec.lock'), 'exclusive', () => agentExec(sockets, {
    argv: req.argv, cwd: req.cwd, env: req.env, uid: req.user.uid, gid: req.user.gid,
    stdout: req.stdout, stderr: req.stderr, signal: req.signal, timeoutMs: req.timeoutMs, heartbeat: req.heartbeat, ...(vmAlive ? { vmAlive } : {}),
  }));
}

/** Hostname for a VM: the node's short name and the VM id ("wn01-13"), reduced to valid characters. */
export function vmHostname(id: string): string {
  const host = osHostname().split('.')[0]!.replace(/[^A-Za-z0-9-]/g, '-');
  return `${host}-${id}`.replace(/[^A-Za-z0-9-]/g, '-').replace(/-+/g, '-').replace(/^-|-$/g, '').slice(0, 63) || 'wnod';
}

export type { ProcRef };
