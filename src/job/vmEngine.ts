/** The core's VM engine (JobVmEngine, see contract.ts) on the VM drivers (src/vm) and the image cache
 * (src/images), split over the LRM's three processes (Torque: prologue, starter, epilogue):
 *   admission (root)  stage the image, boot the job's VM detached, wait until its agent answers, hand it to the user;
 *   run (job user)    run the job script in that VM through the agent sockets, forward SIGTERM, stop it after a grace;
 *   teardown (root)   destroy whatever exists of it (never created, half created, running), release the cache.
 * The VM is found from the job id alone (vmIdForJob): the job's run cannot read root's records. */
import { appendFile, mkdir, readFile, readdir, readlink, realpath, rm, stat } from 'node:fs/promises';
import { closeSync, constants, openSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { basename, dirname, join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { Writable } from 'node:stream';
import { userInfo } from 'node:os';
import type { SiteConfig, Image } from '../config/types.js';
import { describe } from '../util/errors.js';
import { withLock, type Lock } from '../util/lock.js';
import type { VmDriver, VmSpec, VmState, UnixUser } from '../vm/driver.js';
import { AgentError, VmNotReadyError, VmSpecError, VmStartError } from '../vm/errors.js';
import { AGENT_NOTES, hypervisorAlive, readAgentNotes, readRecord, removeRecord, runDirOf, vmIdForJob, vmSockets } from '../vm/state.js';
import { vmHostname } from '../vm/qemu.js';
import { newVmDriver, recordDriver } from '../vm/drivers.js';
import { agentExec, requestPoweroff, type AgentExec } from '../vm/agent.js';
import { isAlive, parseStatStartTime, type ProcRef } from '../vm/proc.js';
import { ImageCache, type CachedImage } from '../images/cache.js';
import { imageDigest } from '../images/artifacts.js';
import type { JobVmEngine, VmJob, LeaseBoot, GuestRun, VmStarted, ClusterBoot } from './contract.js';
import { leaseForward, leaseGuestEnv, writeLeaseInfo } from './lease.js';
import { LeasePortsUnprotected, NoFreePort } from './leasePorts.js';
import type { JobRecord } from './jobstate.js';
import { readJobRecord } from './jobstate.js';
import { jobUser } from './jobUser.js';
import { runningWorkdir, shareableWorkdir } from './workdir.js';
import { NODE_FAULT_EXIT, Refusal, TransientFault, userLine } from './outcome.js';
import { guestCwd, guestJobArgv, guestJobEnv, guestNoteFilter, GUEST_PATH } from './guestJob.js';
import { takeBootSlot, BootSlotTimeout } from './bootSlots.js';
import { HOOK_BUNDLES } from './detachedBoot.js';
import { buildNow } from '../vm/snapshot.js';
import { assertTrustedPath } from '../util/trustedPath.js';

/** A driver that can hand its VM's agent sockets to the job user (both drivers do; not part of VmDriver). */
type HandingDriver = VmDriver & { grantAgentAccess(state: VmState, uid: number, gid: number): Promise<void> };

/** Linux reports process CPU times in clock ticks of 1/100 s (USER_HZ on every architecture we run on). */
const CLK_TCK = 100;
/** Hypervisor processes a half-created VM may leave behind (see killStragglers). */
const HYPERVISOR_EXES = /^(qemu-system-[a-z0-9_]+|virtiofsd)$/;

export interface JobVmOptions {
  /** where the job's run writes its output (default: its own stdout/stderr = the job's output files) */
  stdout?: Writable;
  stderr?: Writable;
}

/** Build the engine the core gets as `ctx.vm`. */
export function jobVmEngine(opts: JobVmOptions = {}): JobVmEngine {
  return new JobVm(opts);
}

class JobVm implements JobVmEngine {
  constructor(private readonly opts: JobVmOptions) {}

  /** Admission: boot the job's VM within lrm.prologue_budget_s. Refusal = the job can never run here; anything
   * else is a TransientFault (bounded requeue). What exists of a failed VM is destroyed before throwing. */
  async start(job: VmJob & { image: Image; cpus: number; memoryMB: number; workdir?: string; lease?: LeaseBoot; cluster?: ClusterBoot }): Promise<VmStarted> {
    const { cfg } = job;
    const t0 = performance.now();
    const deadline = Date.now() + cfg.lrm.prologueBudgetS * 1000;
    const vmId = vmIdForJob(job.jobId);
    const user = await jobUser(job.user);
    const workdir = await shareableWorkdir(job.workdir, user);
    // a requeued job whose earlier VM survived (its epilogue failed): start from nothing
    await this.destroyVm(cfg, vmId, undefined);
    const cache = new ImageCache(cfg.cache);
    let cached: CachedImage;
    try {
      // staging ends by the prologue's deadline: a download cut there is resumed by the next attempt
      cached = await cache.acquire(job.image, vmId, { lockTimeoutMs: remaining(deadline), signal: AbortSignal.timeout(remaining(deadline)) });
    } catch (err) {
      throw new TransientFault('image-staging', `staging image ${job.image.id}: ${describe(err)}`, {}, { cause: err });
    }
    let state: VmState | undefined;
    let slot: Lock | undefined;
    let port: Awaited<ReturnType<typeof leaseForward>> | undefined;
    let driver: HandingDriver | undefined;
    try {
      // a lease pilot: user-mode network (restrict=on) whatever vm.network says, ssh forwarded from a free port
      if (job.lease) {
        if (cfg.vm.driver !== 'qemu') throw new Refusal('lease-driver', 'this worker node cannot forward a lease\'s ssh port (it runs VMs through libvirt); the lease was not started');
        // a lease group's member: on this node's underlay address, the one the CE reaches it by (loopback is the node's own)
        port = await leaseForward(cfg, job.cluster?.underlay);
      }
      const spec: VmSpec = {
        id: vmId, jobId: job.jobId, cpus: job.cpus, memoryMB: job.memoryMB, hostname: job.cluster?.hostname ?? vmHostname(vmId),
        image: {
          id: job.image.id, digest: cached.digest, kind: job.image.kind, files: cached.files,
          ...(job.image.disk ? { diskFormat: job.image.disk.format } : {}), ...(job.image.cmdline ? { cmdline: job.image.cmdline } : {}),
          ...(job.image.acpi === false ? { acpi: false } : {}), diskGB: job.image.diskGB.default,
        },
        user, ...(workdir ? { workdir: { hostPath: workdir, uid: user.uid, gid: user.gid } } : {}),
        env: { PATH: GUEST_PATH, HOME: workdir ?? '/tmp' },
        network: {
          ...(port ? { mode: 'user', forwards: [port.forward] } : { mode: cfg.vm.network, ...(cfg.vm.bridge ? { bridge: cfg.vm.bridge } : {}) }),
          // a multi-node job's private network (its tap is made); a lease group's VM also learns its forwarded address
          ...(job.cluster ? { job: { ...job.cluster.nic, ...(port ? { leaseAddress: `${port.forward.hostAddr}:${port.forward.hostPort}` } : {}) } } : {}),
        },
      };
      driver = driverFor(cfg, { cpus: job.image.cpus.default, memoryMB: job.image.memoryMB.default });
      state = await driver.prepare(spec);
      slot = await takeBootSlot(cfg.vm.stateDir, cfg.vm.maxBooting, deadline);
      await driver.start(state);
      if (port && job.lease) {
        await writeLeaseInfo(cfg.vm.stateDir, vmId, job.lease.id, port.forward, user.gid);
        await port.lock.release(); // QEMU listens on it now
      }
      await driver.waitReady(state, Math.min(cfg.vm.readyTimeoutS * 1000, remaining(deadline)));
      await slot.release();
      slot = undefined;
      await driver.grantAgentAccess(state, user.uid, user.gid);
    } catch (err) {
      await slot?.release().catch(() => {});
      await port?.lock.release().catch(() => {});
      if (state) await driver?.destroy(state).catch(() => {});
      await killStragglers(runDirOf(cfg.vm.stateDir, vmId), user.uid);
      await cache.release(cached.digest, vmId).catch(() => {});
      throw classify(err, job.image.id);
    }
    const boot = state.extra?.boot ? { mode: state.extra.boot, ...(state.extra.coldReason ? { coldReason: state.extra.coldReason } : {}) } : undefined;
    return { vmId, bootS: (performance.now() - t0) / 1000, cache: cached.fetchedBytes > 0 ? 'miss' : 'hit', ...(boot ? { boot } : {}), ...(state.accel ? { accel: state.accel } : {}) };
  }

  /** The job's run (job user): run the job script in the job's VM; resolves to the in-VM exit status. */
  async runJob(job: VmJob & GuestRun): Promise<number> {
    const { cfg } = job;
    const stdout = this.opts.stdout ?? process.stdout;
    const stderr = this.opts.stderr ?? process.stderr;
    const say = (text: string) => { stderr.write(userLine(text) + '\n'); };
    if (job.argv) {
      // pbsdsh/TM tasks come from the host side of the job, which lives in the VM: one agent stream per VM, no TM
      say('parallel tasks (pbsdsh, TM) cannot be started in this job\'s virtual machine; only the batch script runs there');
      return 1;
    }
    let vmId: string;
    let argv: string[];
    let user: UnixUser;
    const noteTag = `wnod-note-${randomBytes(16).toString('hex')}`;
    try {
      vmId = vmIdForJob(job.jobId);
      argv = guestJobArgv(await job.script(), job.args ?? [], noteTag);
      user = await starterUser(cfg, job.jobId);
    } catch (err) {
      say(`the job could not be started in its virtual machine: ${describe(err)}`);
      return 1;
    }
    const control = vmSockets(cfg.vm.stateDir, vmId).control;
    if (!(await stat(control).then(() => true, () => false))) {
      say('the job\'s virtual machine is not running on this node; the job was not started');
      return 1;
    }
    if (job.peers?.length) {
      // every node's Prolog ran before this (Slurm: PrologFlags=Alloc): a peer whose VM is not up now never will be
      let missing: string[];
      try {
        missing = await missingPeers(cfg.vm.stateDir, vmId, job.peers, user, job.peersWaitS);
      } catch (err) {
        say(`the job could not be started in its virtual machine: ${describe(err)}`);
        return 1;
      }
      if (missing.length) {
        say(`the job's virtual machine${missing.length > 1 ? 's' : ''} ${missing.join(', ')} on its other node${missing.length > 1 ? 's' : ''} did not come up; the job was not started (the site's log on that node says why)`);
        return NODE_FAULT_EXIT;
      }
    }
    const workdir = await runningWorkdir(job.workdir);
    const cwd = guestCwd(await realpath(job.cwd).catch(() => job.cwd), workdir);
    const graceMs = cfg.vm.stopGraceS * 1000;
    const term = new AbortController();
    const poweroff = new AbortController();
    let terminated = false;
    let stopped = false;
    let graceTimer: NodeJS.Timeout | undefined;
    // the LRM (cancel, time limit) signals our session: TERM goes on to the job's session in the guest; once it
    // ends, or after the grace, the VM is powered off — inside the LRM's kill delay (Torque: kill_delay, set above it)
    const onSignal = () => {
      if (terminated) return;
      terminated = true;
      term.abort();
      // the agent's control port serves one connection at a time: the POWEROFF travels on the exec's own
      graceTimer = setTimeout(() => { stopped = true; poweroff.abort(); }, graceMs);
    };
    const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
    for (const s of signals) process.on(s, onSignal);
    // the wrapper's note (an interpreter the image lacks) is for the admin: into the notes file the teardown logs
    let noted: Promise<unknown> = Promise.resolve();
    const jobStderr = guestNoteFilter(noteTag, stderr, (text) => {
      noted = appendFile(join(runDirOf(cfg.vm.stateDir, vmId), 'agent', AGENT_NOTES), `${text}\n`, { flag: constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW })
        .catch(() => {});
    });
    try {
      const code = await execInJobVm(cfg.vm.stateDir, vmId, {
        argv, cwd, env: { ...guestJobEnv(job.env, workdir ?? '/tmp'), ...(await leaseGuestEnv(cfg.vm.stateDir, vmId)) }, uid: user.uid, gid: user.gid,
        stdout, stderr: jobStderr, signal: term.signal, poweroff: poweroff.signal,
      });
      jobStderr.flush();
      await noted;
      if (terminated) {
        stopped = true;
        await requestPoweroff(control); // the job is being ended: its VM goes now, the epilogue removes the rest
      }
      return code;
    } catch (err) {
      if (stopped) {
        say(`the job did not end within ${cfg.vm.stopGraceS} s of SIGTERM; its virtual machine was stopped`);
        return 128 + 15;
      }
      say(`lost contact with the job's virtual machine (${(err as { code?: string }).code ?? 'error'}); the job's result is unknown`);
      return 1;
    } finally {
      jobStderr.flush();
      if (graceTimer) clearTimeout(graceTimer);
      for (const s of signals) process.off(s, onSignal);
    }
  }

  /** Teardown (root): destroy the job's VM, whatever state it is in, and drop its image-cache reference. */
  async destroy(job: VmJob & { record?: JobRecord; final?: boolean }): Promise<{ vmCpuS?: number; notes?: string[] }> {
    return this.destroyVm(job.cfg, vmIdForJob(job.jobId), job.record, job.final === true);
  }

  /** The job's VM is up and handed over to it (its hypervisor alive). */
  async running(job: VmJob): Promise<boolean> {
    const state = await readRecord(job.cfg.vm.stateDir, vmIdForJob(job.jobId)).catch(() => undefined);
    return state?.handedOver === true && await isAlive(state.pids.qemu);
  }

  private async destroyVm(cfg: SiteConfig, vmId: string, rec: JobRecord | undefined, final = false): Promise<{ vmCpuS?: number; notes?: string[] }> {
    // read before the runtime dir goes with the VM
    const notes = await readAgentNotes(join(runDirOf(cfg.vm.stateDir, vmId), 'agent'));
    const { state, vmCpuS } = await destroyVmProcesses(cfg.vm.stateDir, vmId, cfg.vm.accel);
    const digests = new Set<string>();
    if (state?.spec.image.digest) digests.add(state.spec.image.digest);
    const img = rec?.decision ? cfg.images.find((i) => i.id === rec.decision!.image) : undefined;
    if (img) digests.add(imageDigest(img));
    if (digests.size > 0) {
      const cache = new ImageCache(cfg.cache);
      for (const d of digests) {
        await cache.release(d, vmId);
        // the job's last attempt is over: a partial download kept for its retry is left to nobody
        if (final) await cache.discardPartial(d);
      }
    }
    return { ...(vmCpuS === undefined ? {} : { vmCpuS }), ...(notes.length ? { notes } : {}) };
  }
}

/** Destroy VM `vmId`'s processes and runtime files from its record and runtime dir alone — no site config needed
 * (the record names its driver): the teardown of a job whose config cannot be read uses it too (finish.ts). */
export async function destroyVmProcesses(stateDir: string, vmId: string, accel?: SiteConfig['vm']['accel']): Promise<{ state?: VmState; vmCpuS?: number }> {
  const state = await readRecord(stateDir, vmId);
  let vmCpuS: number | undefined;
  if (state) {
    vmCpuS = await cpuSeconds(state.pids.qemu);
    await recordDriver(state, accel).destroy(state);
  }
  // a prologue killed by $prologalarm between QEMU's daemonising and the record update leaves a QEMU the record
  // does not name: find it by its runtime dir
  await killStragglers(runDirOf(stateDir, vmId), state?.spec.user.uid);
  await rm(runDirOf(stateDir, vmId), { recursive: true, force: true });
  // with or without a record: a boot killed mid-write (the epilogue's stopBoot) leaves only a temp file of it
  await removeRecord(stateDir, vmId);
  return { ...(state ? { state } : {}), ...(vmCpuS === undefined ? {} : { vmCpuS }) };
}

/** One command in VM `id` through its agent, one at a time per VM — the lock and sockets of src/vm/qemu.ts's
 * execInVm (shared by both drivers), with the poweroff signal passed on. */
async function execInJobVm(stateDir: string, id: string, req: AgentExec): Promise<number> {
  const vmAlive = await hypervisorAlive(stateDir, id);
  return withLock(join(runDirOf(stateDir, id), 'agent', 'exec.lock'), 'exclusive', () => agentExec(vmSockets(stateDir, id), { ...req, ...(vmAlive ? { vmAlive } : {}) }));
}

/** The peers (host names on the job network) whose ssh server does not answer from VM `id`, as the job user:
 * each gets a few seconds (ARP, a server still starting), or all together `waitS` seconds. */
async function missingPeers(stateDir: string, id: string, peers: string[], user: UnixUser, waitS?: number): Promise<string[]> {
  for (const p of peers) if (!/^[a-z][a-z0-9-]{0,62}$/.test(p)) throw new Error(`bad peer name ${JSON.stringify(p)}`);
  const wait = waitS !== undefined && Number.isInteger(waitS) && waitS > 0 ? Math.min(waitS, 3600) : 0;
  // busybox's nc has no -z: the server's banner ("SSH-2.0-…") says it is up; the guest's clock bounds the wait
  const script = 'end=$(( $(date +%s) + $1 )); shift; for h; do ok=; i=0; while :; do [ "$(timeout 3 nc -w 2 "$h" 22 </dev/null 2>/dev/null | head -c 4)" = SSH- ] && ok=1 && break; i=$((i+1)); [ $i -ge 5 ] && [ "$(date +%s)" -ge "$end" ] && break; sleep 1; done; [ -n "$ok" ] || echo "$h"; done';
  const out: Buffer[] = [];
  const sink = new Writable({ write(c: Buffer, _e, cb) { if (out.length < 64) out.push(c); cb(); } });
  const none = new Writable({ write(_c, _e, cb) { cb(); } });
  await execInJobVm(stateDir, id, { argv: ['/bin/sh', '-c', script, 'wnod-peers', String(wait), ...peers], cwd: '/', env: { PATH: GUEST_PATH }, uid: user.uid, gid: user.gid, stdout: sink, stderr: none, timeoutMs: 120_000 + wait * 1000 });
  return Buffer.concat(out).toString('utf8').split('\n').filter((l) => peers.includes(l));
}

const remaining = (deadline: number): number => Math.max(1, deadline - Date.now());

/** The job's VM driver; with snapshots, a missing template of the image's `defaults` shape (or of a shape asked
 * for again: buildNow) is requested. */
function driverFor(cfg: SiteConfig, defaults: { cpus: number; memoryMB: number }): HandingDriver {
  const { stateDir, maxBooting } = cfg.vm;
  return newVmDriver(cfg.vm, cfg.vm.snapshots ? {
    snapshots: { dir: join(stateDir, 'templates'), onMissing: (spec: VmSpec, key: string) => { void requestTemplate(stateDir, maxBooting, spec, key, defaults); } },
  } : {});
}

/** Where the build puts the `wnod` CLI relative to this module — dist/hot/hook.cjs, dist/hot/slurm-hook.cjs or
 * dist/job/vmEngine.js → dist/cli/main.js — and nowhere else (undefined for any other location). Pure. */
export function pinnedCli(modulePath: string): string | undefined {
  const d = dirname(modulePath);
  if (Object.hasOwn(HOOK_BUNDLES, basename(modulePath)) && basename(d) === 'hot') return join(dirname(d), 'cli', 'main.js');
  if (basename(modulePath) === 'vmEngine.js' && basename(d) === 'job' && basename(dirname(d)) === 'dist') return join(dirname(d), 'cli', 'main.js');
  return undefined;
}

/** The `wnod` CLI a root hook may run: the pinned path, owned by root and writable by nobody else (nor its dirs). */
export async function wnodCli(modulePath = fileURLToPath(import.meta.url)): Promise<string> {
  const cli = pinnedCli(modulePath);
  if (!cli) throw new Error(`no wnod CLI is pinned for a hook running from ${modulePath}`);
  await assertTrustedPath(cli, 'the wnod CLI a root hook runs');
  return cli;
}

/** A job cold booted for want of a template: build it in a detached `wnod snapshot build` (single-flight, in a
 * boot slot), never in the job's own path. Best effort: a failure only means the next job cold boots too. */
async function requestTemplate(stateDir: string, maxBooting: number, spec: VmSpec, key: string, defaults: { cpus: number; memoryMB: number }): Promise<void> {
  const dir = join(stateDir, 'templates');
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // another shape than the default: remember this cold boot, build on the next one
    const seen = join(dir, `${key}.seen`);
    const lastSeen = await stat(seen).then((s) => s.mtimeMs, () => undefined);
    if (!buildNow(spec, defaults, lastSeen, Date.now())) {
      await writeFileAtomic(seen, '', 0o600);
      return;
    }
    const req = join(dir, `${key}.request.json`);
    // a burst of cold jobs of one shape asks once (the builder deletes the request when done)
    const asked = await stat(req).then((s) => Date.now() - s.mtimeMs < 600_000, () => false);
    if (asked) return;
    const cli = await wnodCli();
    await writeFileAtomic(req, JSON.stringify(spec) + '\n', 0o600);
    const log = openSync(join(dir, 'build.log'), 'a', 0o600);
    try {
      spawn(process.execPath, [cli, 'snapshot', 'build', '--state-dir', stateDir, '--spec', req, '--max-booting', String(maxBooting)],
        { detached: true, stdio: ['ignore', log, log] }).unref();
    } finally {
      closeSync(log);
    }
  } catch (err) {
    await appendFile(join(dir, 'build.log'), `${new Date().toISOString()} wnod hook: no template build for ${key}: ${describe(err)}\n`, { mode: 0o600 }).catch(() => {});
  }
}

/** The user the job's run runs the guest job as: itself, or — started as root (Torque's
 * $job_starter_run_privileged) — the job's owner from admission's record (never root). */
async function starterUser(cfg: SiteConfig, jobId: string): Promise<UnixUser> {
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0) return { name: userInfo().username, uid, gid: process.getgid?.() ?? uid };
  const rec = await readJobRecord(cfg.vm.stateDir, jobId);
  if (!rec) throw new Error(`running as root and no job record for ${jobId}: cannot tell whom to run the job as`);
  return jobUser(rec.user);
}

/** Map a failure of the boot path onto admission's two outcomes. Hypervisor detail goes into `detail` (root log). */
function classify(err: unknown, imageId: string): Error {
  if (err instanceof Refusal || err instanceof TransientFault) return err;
  const cause = { cause: err };
  // a lease that cannot get a protected port here: say why, and do not promise a retry the lease will not see
  if (err instanceof NoFreePort || err instanceof LeasePortsUnprotected) return new Refusal(err.code, `${err.reason}; the lease was not started`, {}, cause);
  const detail = { error: describe(err), ...((err as { consoleTail?: string }).consoleTail ? { console: (err as { consoleTail: string }).consoleTail } : {}) };
  if (err instanceof VmSpecError) return new Refusal('vm-spec', `the job cannot be run in a VM of image ${imageId} on this node`, detail, cause);
  if (err instanceof VmNotReadyError && err.reason === 'no-agent') {
    return new Refusal('image-no-agent', `image ${imageId} does not start the wnod guest agent, so no job can run in it`, detail, cause);
  }
  if (err instanceof AgentError && err.code === 'vm-agent-lock') {
    // an agent that cannot LOCK would run anything as root for the job user: never hand such a VM over
    return new Refusal('image-agent-no-lock', `image ${imageId} has a wnod guest agent too old to be locked to the job's user`, detail, cause);
  }
  if (err instanceof VmNotReadyError) return new TransientFault('vm-not-ready', describe(err), detail, cause);
  if (err instanceof VmStartError) return new TransientFault('vm-start', describe(err), detail, cause);
  if (err instanceof BootSlotTimeout) return new TransientFault('node-busy', describe(err), detail, cause);
  return new TransientFault('vm-failed', describe(err), detail, cause);
}

/** CPU seconds a live process used so far (utime + stime), if it is still the process `ref` names. */
async function cpuSeconds(ref: ProcRef | undefined): Promise<number | undefined> {
  if (!ref) return undefined;
  const text = await readFile(`/proc/${ref.pid}/stat`, 'utf8').catch(() => undefined);
  if (!text || parseStatStartTime(text) !== ref.startTime) return undefined;
  const f = text.slice(text.lastIndexOf(')') + 2).split(' '); // f[0] = state (field 3): utime = field 14, stime = 15
  const ticks = Number(f[11]) + Number(f[12]);
  return Number.isFinite(ticks) ? ticks / CLK_TCK : undefined;
}

/** The uid a process runs as if its real, effective, saved and fs uids agree (from /proc/<pid>/status), else
 * undefined. Not stat(/proc/<pid>).uid: after QEMU's setuid (-runas) the process is non-dumpable and its /proc
 * entries are root's. Pure. */
export function statusUid(status: string): number | undefined {
  const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/m.exec(status);
  if (!m || new Set(m.slice(1)).size !== 1) return undefined;
  return Number(m[1]);
}

/** Whose hypervisor processes killStragglers may kill: root's, and a QEMU that dropped to the uid its own
 * `-runas UID:GID` names — which must be the VM's job user when known. A user who forges such a process only gets
 * their own process killed. Pure. */
export function stragglerOwnerOk(uid: number | undefined, argv: string[], jobUid: number | undefined): boolean {
  if (uid === 0) return true;
  if (uid === undefined || (jobUid !== undefined && uid !== jobUid)) return false;
  const i = argv.indexOf('-runas');
  return i >= 0 && new RegExp(`^${uid}:\\d+$`).test(argv[i + 1] ?? '');
}

/** SIGKILL our hypervisor processes (QEMU, virtiofsd) whose command line names a file in `runDir`: root's, or a
 * QEMU running as the job user (-runas; `jobUid` when the record still says who that is). */
export async function killStragglers(runDir: string, jobUid?: number): Promise<number[]> {
  const killed: number[] = [];
  const needle = `${runDir}/`;
  // a path names our file only in our own mount namespace: a hypervisor in another one (a container, or a test's
  // second node sharing this kernel) that names the same path runs another VM
  const ourMounts = await readlink('/proc/self/ns/mnt').catch(() => undefined);
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const exe = await readlink(`/proc/${name}/exe`).catch(() => '');
    if (!HYPERVISOR_EXES.test(basename(exe.replace(/ \(deleted\)$/, '')))) continue;
    const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!argv.some((arg) => arg.includes(needle))) continue;
    if (ourMounts !== undefined && (await readlink(`/proc/${name}/ns/mnt`).catch(() => ourMounts)) !== ourMounts) continue;
    const uid = statusUid(await readFile(`/proc/${name}/status`, 'utf8').catch(() => ''));
    if (!stragglerOwnerOk(uid, argv, jobUid)) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch { /* gone already */ }
  }
  // wait (briefly) until they are gone, so that the caller's rm of the runtime dir does not race a dying QEMU
  for (let i = 0; i < 50 && killed.length > 0; i++) {
    const alive = await Promise.all(killed.map((p) => stat(`/proc/${p}`).then(() => true, () => false)));
    if (!alive.some(Boolean)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return killed;
}
