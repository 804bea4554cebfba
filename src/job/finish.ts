/** The end of a job on this node (root), whatever happened before — refused or failed admission, cancel, time
 * limit — so it is idempotent and copes with "no VM", "half a VM" and "no record": tear the VM down (seam), write
 * the accounting record, clean up. A job the LRM will run again keeps its record and is not accounted. */
import { hostname } from 'node:os';
import type { SiteConfig } from '../config/types.js';
import { describe } from '../util/errors.js';
import { appendRecord } from '../accounting/store.js';
import type { AccountingRecord } from '../accounting/record.js';
import { readJobRecord, updateJobRecord, claimPath, type JobRecord } from './jobstate.js';
import { fallbackStateDir } from './pointer.js';
import { vmIdForJob } from '../vm/state.js';
import { rm } from 'node:fs/promises';
import type { HookLog } from './log.js';
import type { JobContext, JobEnd } from './contract.js';
import { tearDownJobNetwork } from './jobNetwork.js';

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
      const d = await ctx.vm.destroy({ jobId: job.jobId, user: job.user, group: job.group, cfg, final: !job.willRetry, ...(rec ? { record: rec } : {}) });
      vmCpuS = d.vmCpuS;
      // written by the job user's run (e.g. the script's interpreter is not in the image): the job's side, as text
      for (const note of d.notes ?? []) await log.detail('guest-note', { vmId: rec?.vmId, note: note.slice(0, 512) });
    } catch (err) {
      ok = false;
      await log.detail('vm-destroy-failed', { error: describe(err), vmId: rec?.vmId });
    }
    teardownS = (performance.now() - t0) / 1000;
  }
  // a multi-node job's network on this node: after its VM (the tap is the VM's port), always
  try {
    if (await tearDownJobNetwork(rec)) await log.detail('job-network-removed', { vni: rec?.jobNet?.plan.vni });
  } catch (err) {
    ok = false;
    await log.detail('job-network-remove-failed', { error: describe(err), vni: rec?.jobNet?.plan.vni });
  }
  const retry = job.willRetry;
  if (rec && !retry) ok = (await account(cfg, job, rec, teardownS, vmCpuS, ctx, log)) && ok;
  if (!retry) {
    try {
      await updateJobRecord(cfg.vm.stateDir, job.jobId, () => undefined);
      await rm(claimPath(cfg.vm.stateDir, job.jobId), { force: true }); // a waiter on it retries on a new inode (lock.ts)
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

/** End `job` when the site config cannot be read (a broken edit, a missing file): still destroy what belongs to the
 * job id — its VM and runtime files, found in the state dir admission pointed at (pointer.ts) or the default one —
 * and drop its record unless the LRM will retry it. Nothing can be accounted (the accounting file is in the config):
 * `say` tells the admin. Resolves to false (the hook reports the config fault); never throws. */
export async function endJobWithoutConfig(configPath: string | undefined, job: Pick<JobEnd, 'jobId' | 'willRetry'>, say: (line: string) => void): Promise<false> {
  try {
    const { stateDir, from } = await fallbackStateDir(configPath);
    const { destroyVmProcesses } = await import('./vmEngine.js');
    const { state } = await destroyVmProcesses(stateDir, vmIdForJob(job.jobId));
    say(`job ${job.jobId}: ${state ? `destroyed its VM ${state.id}` : 'no VM to destroy'} in ${stateDir} (${from === 'pointer' ? 'named by the state-dir pointer' : 'the default state dir'}); not accounted`);
    if (await tearDownJobNetwork(await readJobRecord(stateDir, job.jobId))) say(`job ${job.jobId}: removed its private network on this node`);
    if (!job.willRetry) {
      await updateJobRecord(stateDir, job.jobId, () => undefined);
      await rm(claimPath(stateDir, job.jobId), { force: true });
    }
  } catch (err) {
    say(`job ${job.jobId}: cannot destroy its VM without the site config: ${describe(err)}`);
  }
  return false;
}
