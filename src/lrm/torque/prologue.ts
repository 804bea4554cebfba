/** The root prologue (pbs_mom's `prologue` / `prologue.<class>`): verify the job's ticket, decide, record, and —
 * through the VM seam — boot the job's VM. Exit 0 = go, 1 = refuse for good, 2 = requeue (bounded by our counter). */
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { SiteConfig } from '../../config/types.js';
import { describe } from '../../util/errors.js';
import { findTicketLine, verifyTicket, loadTicketKey, checkAndRecordNonce, TicketError, oneLine, type TicketClaims } from '../../ticket/index.js';
import { parsePrologueArgv, type PrologueArgs, type TorqueVersion } from './argv.js';
import { readJobScript, JobScriptError } from './jobscript.js';
import { readJobRecord, updateJobRecord, countAttempt, newJobRecord, ensureTorqueStateDir } from './jobstate.js';
import { decideWithTicket, decideWithoutTicket, type Decision } from './decision.js';
import { Refusal, TransientFault, PROLOGUE_EXIT, transientExitCode, userLine } from './outcome.js';
import { hookLog, type HookLog } from './log.js';
import type { TorqueVmEngine } from './vmseam.js';
import { findLeaseMarker } from '../../lease/pilot.js';

/** What every hook entry point gets besides argv and env. */
export interface HookContext {
  configPath: string;
  /** the job's output (pbs_mom: the .o file) */
  stdout?: Writable;
  now?: () => Date;
  /** the VM engine (vmEngine.ts, wired by entry.ts; see vmseam.ts); tests may leave it out or pass a stub */
  vm?: TorqueVmEngine;
  torqueVersion?: TorqueVersion | 'auto';
  /** injectable for tests; default src/config/load.ts */
  loadConfig?: (path: string) => Promise<SiteConfig>;
}

/** Where replayed tickets are detected on this node. */
export function nonceDir(cfg: SiteConfig): string {
  return join(cfg.vm.stateDir, 'nonces');
}

async function configFor(ctx: HookContext): Promise<SiteConfig> {
  const load = ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig;
  return load(ctx.configPath);
}

/** Run the prologue for pbs_mom's argv (without node and script); returns the exit code for pbs_mom. */
export async function main(argv: string[], env: NodeJS.ProcessEnv, ctx: HookContext): Promise<number> {
  const out = ctx.stdout ?? process.stdout;
  let cfg: SiteConfig;
  try {
    cfg = await configFor(ctx);
  } catch (err) {
    // No config = no log file and no state dir to damp a requeue loop: abort the job, tell the admin on stderr.
    out.write(userLine('this worker node is misconfigured (wnod site config); the job was not started') + '\n');
    process.stderr.write(`wnod prologue: ${describe(err)}\n`);
    return PROLOGUE_EXIT.abort;
  }
  let args: PrologueArgs;
  try {
    args = parsePrologueArgv(argv, ctx.torqueVersion ?? 'auto');
  } catch (err) {
    out.write(userLine('the batch system called the wnod prologue with unexpected arguments; the job was not started') + '\n');
    await hookLog(cfg.logFile, 'prologue', undefined, out).detail('bad-argv', { error: describe(err), argv });
    return PROLOGUE_EXIT.abort;
  }
  const log = hookLog(cfg.logFile, 'prologue', args.jobId, out);
  try {
    await ensureTorqueStateDir(cfg.vm.stateDir);
    await accept(cfg, args, ctx, log, env.PBS_O_WORKDIR);
    return PROLOGUE_EXIT.go;
  } catch (err) {
    return refuseOrRequeue(cfg, args, err, log);
  }
}

async function accept(cfg: SiteConfig, args: PrologueArgs, ctx: HookContext, log: HookLog, workdir: string | undefined): Promise<void> {
  let text: string;
  try {
    text = await readJobScript(cfg.lrm.momPriv, args.jobId, args.scriptPath);
  } catch (err) {
    if (err instanceof JobScriptError && err.code === 'script-unsafe') throw new Refusal(err.code, 'the job script is not where the batch system keeps it; the job was not started', { error: err.message });
    throw new TransientFault('script-missing', describe(err));
  }
  const line = findTicketLine(text);
  const leaseId = findLeaseMarker(text);
  let decision: Decision;
  if (line.deny !== undefined) {
    throw new Refusal('denied', `the site refused this job: ${oneLine(line.deny, 300)}`);
  } else if (line.ticket !== undefined) {
    const claims = await verifiedClaims(cfg, line.ticket, ctx.now?.() ?? new Date());
    decision = decideWithTicket(cfg, claims, args.user);
    await consumeNonce(cfg, args, claims);
  } else {
    decision = decideWithoutTicket(cfg, args.group);
  }
  const now = (ctx.now?.() ?? new Date()).toISOString();
  await updateJobRecord(cfg.vm.stateDir, args.jobId, (cur) => ({
    ...(cur ?? newJobRecord(args.jobId, args.user)),
    mode: decision.mode, decidedAt: now, ...(decision.mode === 'vm' ? { decision: decision.record } : {}),
  }));
  await log.detail('accepted', { mode: decision.mode, ...(decision.mode === 'vm' ? decision.record : {}), user: args.user, queue: args.queue });
  if (decision.mode !== 'vm') return;
  // the VM engine boots the job's VM (vmEngine.ts, wired by entry.ts); without one the decision is recorded only
  if (!ctx.vm) {
    await log.detail('vm-engine-not-wired', { image: decision.image.id });
    return;
  }
  const { vmId, bootS, boot } = await ctx.vm.start({
    jobId: args.jobId, user: args.user, group: args.group, cfg, image: decision.image, cpus: decision.record.cpus, memoryMB: decision.record.memoryMB,
    // pbs_mom's PBS_O_WORKDIR (the job's submit dir); the engine shares it only if it is the job user's own
    ...(workdir ? { workdir } : {}),
    ...(leaseId ? { lease: { id: leaseId } } : {}), // a lease pilot (src/lease/pilot.ts): its ssh gets forwarded
  });
  await updateJobRecord(cfg.vm.stateDir, args.jobId, (cur) => ({ ...(cur ?? newJobRecord(args.jobId, args.user)), vmId, bootS }));
  await log.detail('vm-ready', { vmId, bootS, ...(boot ? { boot } : {}) }); // boot: restore, or cold and why
}

async function verifiedClaims(cfg: SiteConfig, token: string, now: Date): Promise<TicketClaims> {
  let key: Buffer;
  try {
    key = await loadTicketKey(cfg.ticket.keyFile); // worker nodes: root-only key, never the CE's group mode
  } catch (err) {
    throw new TransientFault('bad-key', describe(err)); // an admin can fix the key: worth a bounded retry
  }
  try {
    return verifyTicket(token, key, now);
  } catch (err) {
    if (err instanceof TicketError) throw new Refusal(err.code, `the job's wnod ticket is not valid: ${err.message}`);
    throw err;
  }
}

/** A nonce is consumed once per job: a requeued prologue of the same job may present it again. */
async function consumeNonce(cfg: SiteConfig, args: PrologueArgs, claims: TicketClaims): Promise<void> {
  const rec = await readJobRecord(cfg.vm.stateDir, args.jobId);
  if (rec?.nonce === claims.nonce) return;
  try {
    await checkAndRecordNonce(nonceDir(cfg), claims);
  } catch (err) {
    if (err instanceof TicketError) throw new Refusal(err.code, `the job's wnod ticket is not valid: ${err.message}`);
    throw err;
  }
  await updateJobRecord(cfg.vm.stateDir, args.jobId, (cur) => ({ ...(cur ?? newJobRecord(args.jobId, args.user)), nonce: claims.nonce }));
}

async function refuseOrRequeue(cfg: SiteConfig, args: PrologueArgs, err: unknown, log: HookLog): Promise<number> {
  if (err instanceof Refusal) {
    log.user(err.reason);
    await log.detail('refused', { code: err.code, reason: err.reason, ...err.detail });
    return PROLOGUE_EXIT.abort;
  }
  // A transient fault — or a bug we did not foresee: bounded retries, then abort.
  const code = err instanceof TransientFault ? err.code : 'unexpected';
  let attempts = Infinity;
  try {
    attempts = (await countAttempt(cfg.vm.stateDir, args.jobId, args.user, cfg.lrm.maxRequeues)).attempts;
  } catch (countErr) {
    await log.detail('attempt-counter-failed', { error: describe(countErr) }); // cannot damp: abort rather than loop
  }
  const exit = transientExitCode(attempts, cfg.lrm.maxRequeues);
  log.user(exit === PROLOGUE_EXIT.requeue
    ? `a temporary problem on this worker node stopped the job; it will be retried (attempt ${attempts} of ${cfg.lrm.maxRequeues + 1})`
    : `a problem on this worker node stopped the job ${Number.isFinite(attempts) ? `${attempts} times` : ''}; giving up`);
  await log.detail(exit === PROLOGUE_EXIT.requeue ? 'requeue' : 'requeue-exhausted', {
    code, error: describe(err), attempts: Number.isFinite(attempts) ? attempts : null, maxRequeues: cfg.lrm.maxRequeues,
    ...(err instanceof TransientFault ? err.detail : {}),
  });
  return exit;
}
