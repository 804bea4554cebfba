/** The end of a job on this node (root), whatever happened before — refused or failed admission, cancel, time
 * limit — so it is idempotent and copes with "no VM", "half a VM" and "no record": tear the VM down (seam), write
 * the accounting record, clean up. A job the LRM will run again keeps its record and is not accounted. */
import { hostname } from 'node:os';
import type { SiteConfig } from '../config/types.js';
import { describe } from '../util/errors.js';
import { appendRecord } from '../accounting/store.js';
import type { AccountingRecord } from '../accounting/record.js';
import { readJobRecord, updateJobRecord, type JobRecord } from './jobstate.js';
import type { HookLog } from './log.js';
import type { JobContext, JobEnd } from './contract.js';

/** The accounting record for a job that had a decision (pure). */
export function accountingRecord(end: JobEnd, rec: JobRecord, teardownS: number, vmCpuS: number | undefined, at: Date, node: string): AccountingRecord | undefined {
  if (!rec.mode) return undefined;
  const d = rec.decision;
  return {
    v: 1, jobId: end.jobId, user: end.user,
    dn: d?.dn ?? '', fqan: d?.fqan ?? '', vo: d?.vo ?? '', image: d?.image ?? '', digest: d?.digest ?? '',
    cpus: d?.cpus ?? end.holds.cpus ?? 1, memoryMB: d?.memoryMB ?? end.holds.memoryMB ?? 0,
    bootS: rec.bootS ?? 0, runS: end.used.wallS ?? 0, teardownS,
    exitStatus: end.exitStatus, vmCpuS: vmCpuS ?? end.used.cpuS ?? 0,
    end: at.toISOString(), node, mode: rec.mode, ...(rec.lease ? { lease: rec.lease } : {}),
  };
}

/** End `job`: resolves to true when everything went well (false: the admin's log says what did not); never throws. */
export async function endJob(cfg: SiteConfig, job: JobEnd, ctx: JobContext, log: HookLog): Promise<boolean> {
  let ok = true;
  let rec: JobRecord | undefined;
  try {
    rec = await readJobRecord(cfg.vm.stateDir, job.jobId);
  } catch (err) {
    ok = false;
    await log.detail('record-unreadable', { error: describe(err) });
  }
  // tear down the job's VM (whatever exists of it): always, whenever an engine is wired (the adapter's entry wires vmEngine.ts)
  let teardownS = 0;
  let vmCpuS: number | undefined;
  if (ctx.vm) {
    const t0 = performance.now();
    try {
      vmCpuS = (await ctx.vm.destroy({ jobId: job.jobId, user: job.user, group: job.group, cfg, ...(rec ? { record: rec } : {}) })).vmCpuS;
    } catch (err) {
      ok = false;
      await log.detail('vm-destroy-failed', { error: describe(err), vmId: rec?.vmId });
    }
    teardownS = (performance.now() - t0) / 1000;
  }
  const retry = job.willRetry;
  if (rec && !retry) ok = (await account(cfg, job, rec, teardownS, vmCpuS, ctx, log)) && ok;
  if (!retry) {
    try {
      await updateJobRecord(cfg.vm.stateDir, job.jobId, () => undefined);
    } catch (err) {
      ok = false;
      await log.detail('cleanup-failed', { error: describe(err) });
    }
  }
  await log.detail('done', { exitStatus: job.exitStatus, retry, mode: rec?.mode ?? null, teardownS });
  return ok;
}

async function account(cfg: SiteConfig, job: JobEnd, rec: JobRecord, teardownS: number, vmCpuS: number | undefined, ctx: JobContext, log: HookLog): Promise<boolean> {
  const record = accountingRecord(job, rec, teardownS, vmCpuS, ctx.now?.() ?? new Date(), hostname());
  if (!record) return true;
  try {
    await appendRecord(cfg.accountingFile, record);
    return true;
  } catch (err) {
    await log.detail('accounting-failed', { error: describe(err) });
    return false;
  }
}
