/** The root epilogue (pbs_mom's `epilogue` / `epilogue.<class>`). pbs_mom runs it once the job reached the node
 * — also after a refused or failed prologue, qdel or a walltime kill — so it is idempotent and copes with "no VM",
 * "half a VM" and "no record". It tears the VM down (seam), writes the accounting record and cleans up. Its exit
 * code is only logged by pbs_mom; we return 0 unless the argv itself is wrong. */
import { hostname } from 'node:os';
import type { SiteConfig } from '../../config/types.js';
import { describe } from '../../util/errors.js';
import { appendRecord } from '../../accounting/store.js';
import type { AccountingRecord } from '../../accounting/record.js';
import { parseEpilogueArgv, isRetryStatus, type EpilogueArgs } from './argv.js';
import { readJobRecord, updateJobRecord, type JobRecord } from './jobstate.js';
import { hookLog, type HookLog } from './log.js';
import type { HookContext } from './prologue.js';

/** The accounting record for a job that had a decision (pure). */
export function accountingRecord(args: EpilogueArgs, rec: JobRecord, teardownS: number, vmCpuS: number | undefined, end: Date, node: string): AccountingRecord | undefined {
  if (!rec.mode) return undefined;
  const d = rec.decision;
  return {
    v: 1, jobId: args.jobId, user: args.user,
    dn: d?.dn ?? '', fqan: d?.fqan ?? '', vo: d?.vo ?? '', image: d?.image ?? '', digest: d?.digest ?? '',
    cpus: d?.cpus ?? args.resourceList.ppn ?? 1, memoryMB: d?.memoryMB ?? args.resourceList.memMB ?? 0,
    bootS: rec.bootS ?? 0, runS: args.resourcesUsed.walltimeS ?? 0, teardownS,
    exitStatus: args.exitStatus, vmCpuS: vmCpuS ?? args.resourcesUsed.cputS ?? 0,
    end: end.toISOString(), node, mode: rec.mode,
  };
}

/** Run the epilogue for pbs_mom's argv; returns the exit code (only logged by pbs_mom). */
export async function main(argv: string[], _env: NodeJS.ProcessEnv, ctx: HookContext): Promise<number> {
  const load = ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig;
  let cfg: SiteConfig;
  try {
    cfg = await load(ctx.configPath);
  } catch (err) {
    process.stderr.write(`wnod epilogue: ${describe(err)}\n`);
    return 1;
  }
  let args: EpilogueArgs;
  try {
    args = parseEpilogueArgv(argv, ctx.torqueVersion ?? 'auto');
  } catch (err) {
    await hookLog(cfg.logFile, 'epilogue', undefined, ctx.stdout).detail('bad-argv', { error: describe(err), argv });
    return 1;
  }
  const log = hookLog(cfg.logFile, 'epilogue', args.jobId, ctx.stdout);
  let ok = true;
  let rec: JobRecord | undefined;
  try {
    rec = await readJobRecord(cfg.vm.stateDir, args.jobId);
  } catch (err) {
    ok = false;
    await log.detail('record-unreadable', { error: describe(err) });
  }
  // tear down the job's VM (whatever exists of it): always, whenever an engine is wired (entry.ts wires vmEngine.ts)
  let teardownS = 0;
  let vmCpuS: number | undefined;
  if (ctx.vm) {
    const t0 = performance.now();
    try {
      vmCpuS = (await ctx.vm.destroy({ jobId: args.jobId, user: args.user, group: args.group, cfg, ...(rec ? { record: rec } : {}) })).vmCpuS;
    } catch (err) {
      ok = false;
      await log.detail('vm-destroy-failed', { error: describe(err), vmId: rec?.vmId });
    }
    teardownS = (performance.now() - t0) / 1000;
  }
  const retry = isRetryStatus(args.exitStatus);
  if (rec && !retry) ok = (await account(cfg, args, rec, teardownS, vmCpuS, ctx, log)) && ok;
  if (!retry) {
    try {
      await updateJobRecord(cfg.vm.stateDir, args.jobId, () => undefined);
    } catch (err) {
      ok = false;
      await log.detail('cleanup-failed', { error: describe(err) });
    }
  }
  await log.detail('done', { exitStatus: args.exitStatus, retry, mode: rec?.mode ?? null, teardownS });
  return ok ? 0 : 1;
}

async function account(cfg: SiteConfig, args: EpilogueArgs, rec: JobRecord, teardownS: number, vmCpuS: number | undefined, ctx: HookContext, log: HookLog): Promise<boolean> {
  const record = accountingRecord(args, rec, teardownS, vmCpuS, ctx.now?.() ?? new Date(), hostname());
  if (!record) return true;
  try {
    await appendRecord(cfg.accountingFile, record);
    return true;
  } catch (err) {
    await log.detail('accounting-failed', { error: describe(err) });
    return false;
  }
}
