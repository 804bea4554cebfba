/** A job's VM booted apart from the LRM's hook that admits it. Torque: pbs_server sends the MOM its next job only
 * once the running prologue returned, so a prologue that boots a VM makes the k-th of k simultaneous jobs wait k
 * boots. Slurm: slurmd starts the batch step only once the Prolog exited, so a boot inside it runs one after the
 * other with the Prolog's exit, slurmstepd and the runner's start. The hook therefore admits the job (ticket, nonce,
 * decision: prompt, refusals stay prompt) and starts the boot detached — its own session, bounded by
 * lrm.prologue_budget_s, output into the root log — and the job's run (Torque's starter, Slurm's runner) waits for it.
 *
 * Files in the job state dir (jobstate.ts, root-owned 0755), by validated job id only:
 *   <id>.boot.json  root 0600       what to boot (written by the hook, read by the boot)
 *   <id>.boot.pid   root 0600       the boot process (pid + start time): the end hook kills it before teardown
 *   <id>.boot       root:<gid> 0640 the outcome the run waits for: `ready`, `refuse\n<reason>`, `fault\n<line>`
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, watch, type FSWatcher } from 'node:fs';
import { lstat, mkdir, readFile, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Image, SiteConfig } from '../config/types.js';
import { removeFileAtomic, writeFileAtomic } from '../util/atomic.js';
import { describe, WnodError } from '../util/errors.js';
import { assertTrustedPath } from '../util/trustedPath.js';
import { jobStateDir, ensureJobStateDir, updateJobRecord, newJobRecord } from './jobstate.js';
import { jobUser } from './jobUser.js';
import { hookLog, logTarget } from './log.js';
import { NODE_FAULT_EXIT, REFUSED_EXIT, Refusal } from './outcome.js';
import type { ClusterBoot, JobVmEngine, LeaseBoot } from './contract.js';
import { isAlive, procRef, signalIfSame, waitGone, type ProcRef } from '../vm/proc.js';
import { vmIdForJob } from '../vm/state.js';
import { checkJobId } from './jobId.js';

type StartArgs = Parameters<JobVmEngine['start']>[0];

/** What the boot process boots (the image by its catalog id: the boot reads the same config). */
interface BootRequest {
  jobId: string; user: string; group: string; image: string; cpus: number; memoryMB: number;
  workdir?: string; lease?: LeaseBoot;
  /** a multi-node job: the VM's name and NIC on the job's network (its ssh keys: the request is root-only) */
  cluster?: ClusterBoot;
}

export type BootOutcome = { kind: 'ready' } | { kind: 'refuse'; reason: string } | { kind: 'fault'; reason: string };

export const bootFile = (cfg: SiteConfig, jobId: string, ext: string): string => join(jobStateDir(cfg.vm.stateDir), `${checkJobId(jobId)}${ext}`);
const path = bootFile;

/** The LRMs whose hook entry runs a boot (`<entry> --config FILE boot <jobId>`). */
export type BootLrm = 'torque' | 'slurm';

/** The root hook bundles (package.json `bundle`) and the LRM each serves. */
export const HOOK_BUNDLES: Readonly<Record<string, BootLrm>> = { 'hook.cjs': 'torque', 'slurm-hook.cjs': 'slurm' };

/** The hook entry a boot runs (pure): the LRM's bundle itself (dist/hot/hook.cjs, dist/hot/slurm-hook.cjs), or
 * the LRM's entry.js in the unbundled build (dist/job/detachedBoot.js → dist/lrm/<lrm>/entry.js). */
export function bootEntry(modulePath: string, lrm: BootLrm): string | undefined {
  const name = basename(modulePath);
  if (Object.hasOwn(HOOK_BUNDLES, name)) return HOOK_BUNDLES[name] === lrm ? modulePath : undefined;
  if (name === 'detachedBoot.js' && basename(dirname(modulePath)) === 'job') return join(dirname(dirname(modulePath)), 'lrm', lrm, 'entry.js');
  return undefined;
}

/** The admitting hook's engine: `start` writes the request and spawns the boot detached, then returns at once;
 * run and destroy are the real engine's. */
export function detachedBoot(real: JobVmEngine, configPath: string, lrm: BootLrm, modulePath = fileURLToPath(import.meta.url)): JobVmEngine {
  return {
    runJob: (job) => real.runJob(job),
    destroy: (job) => real.destroy(job),
    // a boot under way counts as up: a second admitting hook of the job id (its claim waited for the first) must not
    // start another boot, which would replace the first's VM
    async running(job) {
      return await bootUnderWay(job.cfg, job.jobId) || ((await real.running?.(job)) ?? false);
    },
    async start(job: StartArgs) {
      const { cfg } = job;
      await ensureJobStateDir(cfg.vm.stateDir);
      await unlink(path(cfg, job.jobId, '.boot')).catch(() => {}); // a requeued job's earlier outcome
      const req: BootRequest = {
        jobId: job.jobId, user: job.user, group: job.group, image: job.image.id, cpus: job.cpus, memoryMB: job.memoryMB,
        ...(job.workdir ? { workdir: job.workdir } : {}), ...(job.lease ? { lease: job.lease } : {}), ...(job.cluster ? { cluster: job.cluster } : {}),
      };
      await writeFileAtomic(path(cfg, job.jobId, '.boot.json'), JSON.stringify(req) + '\n', 0o600);
      await spawnDetached(cfg, configPath, lrm, 'boot', job.jobId, modulePath);
      return { vmId: vmIdForJob(job.jobId), bootS: 0, boot: { mode: 'detached' } };
    },
  };
}

/** Start `entry <hook> <jobId>` (root) detached: its own session (the LRM's kill of the hook's session must not
 * reach it), a clean environment, its output into the root log. Its pid is recorded before this returns, so the
 * end hook can stop it however early a cancel comes (the process itself needs a while to start). */
export async function spawnDetached(cfg: SiteConfig, configPath: string, lrm: BootLrm, hook: 'boot' | 'sister-boot', jobId: string, modulePath = fileURLToPath(import.meta.url)): Promise<void> {
  const entry = bootEntry(modulePath, lrm);
  if (!entry) throw new WnodError('no-boot-entry', `no hook entry beside ${modulePath} to boot the VM with`);
  await assertTrustedPath(entry, 'the hook entry a root hook runs');
  await mkdir(dirname(cfg.logFile), { recursive: true, mode: 0o700 });
  const log = openSync(cfg.logFile, 'a', 0o600);
  let pid: number | undefined;
  try {
    const child = spawn(process.execPath, [entry, '--config', configPath, hook, checkJobId(jobId)], {
      detached: true, stdio: ['ignore', log, log], cwd: '/', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' },
    });
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(log);
  }
  const ref = pid === undefined ? undefined : await procRef(pid);
  if (ref) await writeFileAtomic(path(cfg, jobId, '.boot.pid'), JSON.stringify(ref) + '\n', 0o600);
}

/** The job's boot was requested and has not ended (no outcome yet) and its process, once known, is alive. */
export async function bootUnderWay(cfg: SiteConfig, jobId: string): Promise<boolean> {
  if (!(await lstat(path(cfg, jobId, '.boot.json')).catch(() => undefined))) return false;
  if (await lstat(path(cfg, jobId, '.boot')).catch(() => undefined)) return false; // ended: ready, refuse or fault
  const ref = await readFile(path(cfg, jobId, '.boot.pid'), 'utf8').then((t) => JSON.parse(t) as ProcRef, () => undefined);
  return ref === undefined || await isAlive(ref); // no pid yet: spawned, not yet started
}

/** The job's boot was requested (the admitting hook wrote its request): the job's run waits for its outcome. */
export async function bootRequested(cfg: SiteConfig, jobId: string): Promise<boolean> {
  return (await lstat(path(cfg, jobId, '.boot.json')).catch(() => undefined)) !== undefined;
}

/** The boot process (root, detached): boot the job's VM with the real engine, record the outcome. Never throws
 * once the config is read and `parseJobId` (the adapter's own rule) accepted the job id. */
export async function bootMain(rest: string[], ctx: { configPath: string; vm: JobVmEngine; loadConfig?: (p: string) => Promise<SiteConfig> }, parseJobId: (v: string | undefined, what: string) => string): Promise<number> {
  const cfg = await (ctx.loadConfig ?? (await import('../config/load.js')).loadConfig)(ctx.configPath);
  const jobId = parseJobId(rest[0], 'boot job id');
  const log = hookLog(logTarget(cfg), 'boot', jobId);
  let gid: number | undefined;
  const outcome = async (o: BootOutcome) => {
    const text = o.kind === 'ready' ? 'ready\n' : `${o.kind}\n${o.reason.replace(/[\x00-\x1f\x7f]+/g, ' ').trim().slice(0, 500)}\n`;
    // published whole and already root:<job gid>: the job's run waits for it
    await writeFileAtomic(path(cfg, jobId, '.boot'), text, 0o640, { uid: 0, gid: gid ?? 0 });
  };
  // bounded: the engine's own deadline is lrm.prologue_budget_s; this is the backstop for a wedged boot
  const budgetMs = (cfg.lrm.prologueBudgetS + 30) * 1000;
  const watchdog = setTimeout(() => {
    void log.detail('boot-overran', { budgetS: cfg.lrm.prologueBudgetS })
      .then(() => outcome({ kind: 'fault', reason: 'the job\'s virtual machine did not start in time on this worker node; resubmit the job' }))
      .finally(() => process.exit(1));
  }, budgetMs);
  watchdog.unref();
  try {
    const req = await readRequest(cfg, jobId);
    gid = (await jobUser(req.user)).gid;
    const image = cfg.images.find((i: Image) => i.id === req.image);
    if (!image) throw new Refusal('stale-image', `image ${req.image} is no longer offered by this site`);
    const { vmId, bootS, boot, cache, accel } = await ctx.vm.start({
      jobId, user: req.user, group: req.group, cfg, image, cpus: req.cpus, memoryMB: req.memoryMB,
      ...(req.workdir ? { workdir: req.workdir } : {}), ...(req.lease ? { lease: req.lease } : {}), ...(req.cluster ? { cluster: req.cluster } : {}),
    });
    await updateJobRecord(cfg.vm.stateDir, jobId, (cur) => ({ ...(cur ?? newJobRecord(jobId, req.user)), vmId, bootS }));
    await outcome({ kind: 'ready' });
    // as admitJob logs it for a VM it boots itself: restore or cold (and why), cache hit or fetch, KVM or TCG
    await log.detail('vm-ready', { vmId, bootS, ...(boot ? { boot } : {}), ...(cache ? { cache } : {}), ...(accel ? { accel } : {}) });
    return 0;
  } catch (err) {
    if (err instanceof Refusal) {
      await log.detail('refused', { code: err.code, reason: err.reason, ...err.detail });
      await outcome({ kind: 'refuse', reason: err.reason }).catch(() => {});
    } else {
      // the detail (hypervisor output, paths) is the admin's; the user reads that the node failed, not the job
      const code = (err as { code?: string }).code ?? 'unexpected';
      await log.detail('boot-failed', { code, error: describe(err), ...((err as { detail?: object }).detail ?? {}) });
      await outcome({ kind: 'fault', reason: `a problem on this worker node stopped the job's virtual machine (${code}); the job did not run, resubmit it` }).catch(() => {});
    }
    return 1;
  } finally {
    clearTimeout(watchdog);
  }
}

async function readRequest(cfg: SiteConfig, jobId: string): Promise<BootRequest> {
  const p = path(cfg, jobId, '.boot.json');
  const st = await lstat(p);
  if (!st.isFile() || st.uid !== 0 || (st.mode & 0o077) !== 0) throw new WnodError('bad-boot-request', `${p} is not a root-only file`);
  const r = JSON.parse(await readFile(p, 'utf8')) as BootRequest;
  if (r.jobId !== jobId || typeof r.user !== 'string' || typeof r.image !== 'string' || !Number.isInteger(r.cpus) || !Number.isInteger(r.memoryMB)) {
    throw new WnodError('bad-boot-request', `${p} is not a boot request for ${jobId}`);
  }
  return r;
}

/** How often the run looks for the boot's outcome besides being told (inotify on its directory): a back-up
 * for a file system that does not report the rename; without a watch, the old schedule (50 ms, growing to 250). */
const WATCHED_POLL_MS = 1000;

/** The job's run (job user): wait for the boot's outcome until `deadline` (epoch ms). The outcome is renamed into
 * place (writeFileAtomic): a watch on its directory wakes the run at once, rather than at its next look. */
export async function waitBoot(cfg: SiteConfig, jobId: string, deadline: number, o: { pollMs?: number } = {}): Promise<BootOutcome> {
  const p = path(cfg, jobId, '.boot');
  const name = basename(p);
  // a change seen while not waiting (between a look and the wait) must not be lost: latched until the next wait
  let changed = false;
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(p), { persistent: false }, (_event, file) => {
      if (file !== null && String(file) !== name) return;
      changed = true;
      wake?.();
    });
    watcher.on('error', () => { watcher?.close(); watcher = undefined; });
  } catch {
    watcher = undefined; // no inotify here (or no watches left): looking alone
  }
  try {
    for (let i = 0; ; i++) {
      changed = false;
      const text = await readFile(p, 'utf8').catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return undefined; throw e; });
      if (text !== undefined) {
        const [kind, reason = ''] = text.slice(0, 1024).split('\n');
        if (kind === 'ready') return { kind: 'ready' };
        if (kind === 'refuse' || kind === 'fault') return { kind, reason };
        throw new WnodError('bad-boot-outcome', `${p}: not a boot outcome`);
      }
      if (Date.now() >= deadline) return { kind: 'fault', reason: 'the job\'s virtual machine did not start in time on this worker node; resubmit the job' };
      if (changed) continue;
      const pollMs = o.pollMs ?? (watcher ? WATCHED_POLL_MS : Math.min(50 + 10 * i, 250));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(pollMs, Math.max(1, deadline - Date.now())));
        wake = () => { clearTimeout(timer); resolve(); };
      });
      wake = undefined;
    }
  } finally {
    watcher?.close();
  }
}

/** The job's run (job user): wait for the job's boot within the site's budget. Undefined once its VM is up; else
 * what the user reads and the job's exit status (a refusal: REFUSED_EXIT; a node fault: NODE_FAULT_EXIT). */
export async function awaitBootForRun(cfg: SiteConfig, jobId: string): Promise<{ say: string; exit: number } | undefined> {
  let boot: BootOutcome;
  try {
    boot = await waitBoot(cfg, jobId, Date.now() + (cfg.lrm.prologueBudgetS + 60) * 1000);
  } catch {
    return { say: 'the job could not be started: its virtual machine\'s state on this worker node is unreadable; resubmit the job', exit: NODE_FAULT_EXIT };
  }
  if (boot.kind === 'ready') return undefined;
  return { say: boot.reason, exit: boot.kind === 'refuse' ? REFUSED_EXIT : NODE_FAULT_EXIT };
}

/** How long a killed boot may take to die: SIGKILL waits for an uninterruptible syscall to return (an fsync of its
 * record on a busy disk), and a teardown that ran before it died would miss what it was still writing. */
const BOOT_DEATH_MS = 30_000;

/** The end hook (root): stop a boot still running (a cancel during the boot), before the VM is torn down. */
export async function stopBoot(cfg: SiteConfig, jobId: string): Promise<void> {
  const ref = await readFile(path(cfg, jobId, '.boot.pid'), 'utf8').then((t) => JSON.parse(t) as ProcRef, () => undefined);
  if (!ref || !Number.isInteger(ref.pid) || typeof ref.startTime !== 'string' || !(await signalIfSame(ref, 'SIGKILL'))) return;
  if (!(await waitGone(ref, BOOT_DEATH_MS))) throw new WnodError('boot-not-stopped', `the boot process ${ref.pid} did not die within ${BOOT_DEATH_MS / 1000} s of SIGKILL`);
}

/** The end hook (root): remove the job's boot files (and the adapter's own `more`, by extension). */
export async function clearBoot(cfg: SiteConfig, jobId: string, more: readonly string[] = []): Promise<void> {
  for (const ext of ['.boot', '.boot.json', '.boot.pid', ...more]) await removeFileAtomic(path(cfg, jobId, ext)).catch(() => {});
}
