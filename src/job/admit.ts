/** Admission of a job on this node (root): read its script's header, verify its ticket and consume its nonce,
 * decide, record, and — through the VM engine — boot its VM. Every failure becomes an Outcome: a Refusal is told
 * to the user, a transient fault is worth a bounded retry.
 * One admission per job id at a time (the job's claim, jobstate.ts): a second prologue for the same id waits, and
 * finds the job admitted (its VM up) rather than replacing it. Each admission is counted when it starts, so one the
 * LRM kills (Torque's $prologalarm) counts too, and the retries stay bounded. */
import { join } from 'node:path';
import type { SiteConfig } from '../config/types.js';
import { describe } from '../util/errors.js';
import { verifyTicket, loadTicketKey, checkAndRecordNonce, TicketError, type TicketClaims } from '../ticket/index.js';
import { readScriptHeader, oneLine } from '../header/scriptHeader.js';
import { readJobRecord, updateJobRecord, countAttempt, newJobRecord, ensureJobStateDir, claimJob } from './jobstate.js';
import { decideWithTicket, decideWithoutTicket, fitToHolds, ticketShapeProblem, type Decision } from './decision.js';
import { rememberStateDir } from './pointer.js';
import type { Lock } from '../util/lock.js';
import { Refusal, TransientFault } from './outcome.js';
import type { HookLog } from './log.js';
import type { ClusterBoot, JobContext, JobStart, Outcome } from './contract.js';
import { setUpJobNetwork } from './jobNetwork.js';

/** Where replayed tickets are detected on this node. */
export function nonceDir(cfg: SiteConfig): string {
  return join(cfg.vm.stateDir, 'nonces');
}

/** Admit `job`: resolves to the outcome the adapter maps onto its protocol; never throws. */
export async function admitJob(cfg: SiteConfig, job: JobStart, ctx: JobContext, log: HookLog): Promise<Outcome> {
  let claim: Lock | undefined;
  let attempts: number | undefined;
  try {
    await ensureJobStateDir(cfg.vm.stateDir);
    // the epilogue finds this state dir even when it cannot read the config (pointer.ts)
    if (ctx.configPath) await rememberStateDir(ctx.configPath, cfg.vm.stateDir).catch((err) => log.detail('state-dir-pointer-failed', { error: describe(err) }));
    claim = await claimJob(cfg.vm.stateDir, job.jobId, cfg.lrm.prologueBudgetS * 1000);
    if (await alreadyAdmitted(cfg, job, ctx)) {
      await log.detail('already-admitted', { note: 'another admission of this job id booted its VM; left as it is' });
      return { kind: 'go' };
    }
    attempts = (await countAttempt(cfg.vm.stateDir, job.jobId, job.user, cfg.lrm.maxRequeues)).attempts;
    if (attempts > cfg.lrm.maxRequeues + 1) throw new AttemptsExhausted(attempts - 1);
    await accept(cfg, job, ctx, log);
    return { kind: 'go' };
  } catch (err) {
    return await refuseOrRetry(cfg, job, err, log, attempts);
  } finally {
    await claim?.release().catch(() => {});
  }
}

/** The last allowed admission never answered (the LRM killed it): give up before trying again. */
class AttemptsExhausted extends Error {
  constructor(readonly started: number) {
    super(`${started} admissions of this job were started and none succeeded`);
  }
}

/** A job whose VM another admission already booted and handed over (a second prologue for one job id). */
async function alreadyAdmitted(cfg: SiteConfig, job: JobStart, ctx: JobContext): Promise<boolean> {
  const rec = await readJobRecord(cfg.vm.stateDir, job.jobId);
  if (rec?.mode !== 'vm' || rec.vmId === undefined || !ctx.vm?.running) return false;
  return ctx.vm.running({ jobId: job.jobId, user: job.user, group: job.group, cfg });
}

async function accept(cfg: SiteConfig, job: JobStart, ctx: JobContext, log: HookLog): Promise<void> {
  const header = readScriptHeader(await job.script());
  let decision: Decision;
  let nonce: string | undefined;
  if (header.deny !== undefined) {
    throw new Refusal('denied', `the site refused this job: ${oneLine(header.deny, 300)}`);
  } else if (header.ticket !== undefined) {
    const claims = await verifiedClaims(cfg, header.ticket, ctx.now?.() ?? new Date());
    decision = decideWithTicket(cfg, claims, job.user);
    // a ticket admits a job of its own shape: a copied ticket cannot size a VM beyond what the LRM gave the job
    const shape = job.sizeByHolds ? undefined : ticketShapeProblem(claims, job.holds);
    if (shape) throw new Refusal('ticket-shape', `the wnod ticket was issued for ${shape}; the job was not started`, { holds: job.holds, cpus: claims.cpus, memoryMB: claims.memoryMB });
    nonce = await consumeNonce(cfg, job, claims);
  } else {
    decision = decideWithoutTicket(cfg, job.group);
  }
  if (decision.mode === 'vm' && job.sizeByHolds) {
    const shape = fitToHolds(cfg, decision.record, job.holds);
    if (shape.cpus !== decision.record.cpus || shape.memoryMB !== decision.record.memoryMB) {
      await log.detail('sized-by-holds', { decided: { cpus: decision.record.cpus, memoryMB: decision.record.memoryMB }, holds: job.holds, vm: shape });
    }
    decision = { ...decision, record: { ...decision.record, ...shape } };
  }
  const now = (ctx.now?.() ?? new Date()).toISOString();
  await updateJobRecord(cfg.vm.stateDir, job.jobId, (cur) => ({
    ...(cur ?? newJobRecord(job.jobId, job.user)),
    mode: decision.mode, decidedAt: now, ...(decision.mode === 'vm' ? { decision: decision.record } : {}), ...(nonce ? { nonce } : {}),
    ...(header.lease ? { lease: header.lease } : {}),
  }));
  await log.detail('accepted', { mode: decision.mode, ...(decision.mode === 'vm' ? decision.record : {}), user: job.user, queue: job.queue });
  if (decision.mode !== 'vm') return;
  // a job on several nodes: its private network on this node first (the VM's tap), recorded for the teardown
  let cluster: ClusterBoot | undefined;
  if (job.cluster) {
    const nodes = await job.cluster();
    const c = await setUpJobNetwork(cfg, job, nodes);
    cluster = { hostname: c.plan.self.hostname, nic: c.nic, underlay: c.plan.self.underlay };
    await log.detail('job-network', { vni: c.plan.vni, subnet: c.plan.subnet, self: c.plan.self.hostname, nodes: nodes.nodes });
  }
  // the VM engine boots the job's VM (vmEngine.ts, wired by the adapter's entry); without one the decision is recorded only
  if (!ctx.vm) {
    await log.detail('vm-engine-not-wired', { image: decision.image.id });
    return;
  }
  const { vmId, bootS, boot, cache, accel } = await ctx.vm.start({
    jobId: job.jobId, user: job.user, group: job.group, cfg, image: decision.image, cpus: decision.record.cpus, memoryMB: decision.record.memoryMB,
    // the job's submit dir; the engine shares it only if it is the job user's own
    ...(job.workdir ? { workdir: job.workdir } : {}),
    ...(header.lease ? { lease: { id: header.lease } } : {}), // a lease pilot (src/lease/pilot.ts): its ssh gets forwarded
    ...(cluster ? { cluster } : {}),
  });
  await updateJobRecord(cfg.vm.stateDir, job.jobId, (cur) => ({ ...(cur ?? newJobRecord(job.jobId, job.user)), vmId, bootS }));
  // an adapter that boots apart (Torque: off pbs_server's dispatch path): its boot process logs vm-ready or the fault
  if (boot?.mode === 'detached') {
    await log.detail('boot-started', { vmId });
    return;
  }
  // the node's decisions for this VM: restore or cold boot (and why), cache hit or fetch, KVM or TCG
  await log.detail('vm-ready', { vmId, bootS, ...(boot ? { boot } : {}), ...(cache ? { cache } : {}), ...(accel ? { accel } : {}) });
}

async function verifiedClaims(cfg: SiteConfig, token: string, now: Date): Promise<TicketClaims> {
  let key: Buffer;
  try {
    key = await loadTicketKey(cfg.ticket.keyFile); // worker nodes: root-only key, never the CE's group mode
  } catch (err) {
    throw new TransientFault('bad-key', describe(err), {}, { cause: err }); // an admin can fix the key: worth a bounded retry
  }
  try {
    return verifyTicket(token, key, now);
  } catch (err) {
    if (err instanceof TicketError) throw new Refusal(err.code, `the job's wnod ticket is not valid: ${err.message}`, {}, { cause: err });
    throw err;
  }
}

/** A nonce is consumed once per job: a retried admission of the same job may present it again. Resolves to the
 * nonce for the job's record, written with the decision (one record write, nothing between them can fail). */
async function consumeNonce(cfg: SiteConfig, job: JobStart, claims: TicketClaims): Promise<string> {
  const rec = await readJobRecord(cfg.vm.stateDir, job.jobId);
  if (rec?.nonce === claims.nonce) return claims.nonce;
  try {
    await checkAndRecordNonce(nonceDir(cfg), claims);
  } catch (err) {
    if (err instanceof TicketError) throw new Refusal(err.code, `the job's wnod ticket is not valid: ${err.message}`, {}, { cause: err });
    throw err;
  }
  return claims.nonce;
}

async function refuseOrRetry(cfg: SiteConfig, job: JobStart, err: unknown, log: HookLog, counted: number | undefined): Promise<Outcome> {
  if (err instanceof AttemptsExhausted) {
    const said = `a problem on this worker node stopped the job ${err.started} times; giving up`;
    log.user(said);
    await log.detail('requeue-exhausted', { code: 'attempts-exhausted', attempts: err.started, maxRequeues: cfg.lrm.maxRequeues, note: 'the last admission never answered (killed by the batch system?)' });
    return { kind: 'refuse', code: 'attempts-exhausted', reason: said };
  }
  if (err instanceof Refusal) {
    log.user(err.reason);
    await log.detail('refused', { code: err.code, reason: err.reason, ...err.detail });
    return { kind: 'refuse', code: err.code, reason: err.reason };
  }
  // A transient fault — or a bug we did not foresee: bounded retries, then a refusal.
  const code = err instanceof TransientFault ? err.code : 'unexpected';
  // counted when the admission started; a fault before that (the claim, the state dir) is counted now
  let attempts = counted ?? Infinity;
  if (counted === undefined) {
    try {
      attempts = (await countAttempt(cfg.vm.stateDir, job.jobId, job.user, cfg.lrm.maxRequeues)).attempts;
    } catch (countErr) {
      await log.detail('attempt-counter-failed', { error: describe(countErr) }); // cannot damp: refuse rather than loop
    }
  }
  const retry = attempts <= cfg.lrm.maxRequeues;
  const said = retry
    ? `a temporary problem on this worker node stopped the job; it will be retried (attempt ${attempts} of ${cfg.lrm.maxRequeues + 1})`
    : `a problem on this worker node stopped the job ${Number.isFinite(attempts) ? `${attempts} times` : ''}; giving up`;
  log.user(said);
  await log.detail(retry ? 'requeue' : 'requeue-exhausted', {
    code, error: describe(err), attempts: Number.isFinite(attempts) ? attempts : null, maxRequeues: cfg.lrm.maxRequeues,
    ...(err instanceof TransientFault ? err.detail : {}),
  });
  return retry ? { kind: 'retry', code, message: describe(err) } : { kind: 'refuse', code, reason: said };
}
