/** The root Epilog (slurm.conf `Epilog=`) for jobs of `lrm.partition`: Slurm's environment into a JobEnd for the
 * core's teardown and accounting (src/job/finish.ts), which always destroys the VM (created, half-created or never)
 * and accounts the job. The job's status is the runner's report: Slurm gives the Epilog 0:0 for cancelled and
 * timed-out jobs. An Epilog that fails drains the node: it fails only when the teardown or the accounting did. */
import type { SiteConfig } from '../../config/types.js';
import { describe } from '../../util/errors.js';
import { endJob, endJobWithoutConfig } from '../../job/finish.js';
import { clearBoot, stopBoot } from '../../job/detachedBoot.js';
import { hookLog, logTarget } from '../../job/log.js';
import type { JobEnd } from '../../job/contract.js';
import { parseEpilogEnv } from './env.js';
import { clearJob, readReport, type RunReport } from './marks.js';
import type { SlurmHookContext } from './prolog.js';

/** The job's exit status for the record (pure): the runner's report; without one (the runner never ran, or was
 * SIGKILLed after KillWait) Slurm's own code when it says something, else -1 (unknown). */
export function exitStatusOf(report: RunReport | undefined, slurmExit: number | undefined): number {
  if (report) return report.exit;
  return slurmExit !== undefined && slurmExit !== 0 ? slurmExit : -1;
}

export async function main(env: NodeJS.ProcessEnv, ctx: SlurmHookContext): Promise<number> {
  let cfg: SiteConfig;
  try {
    cfg = await (ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig)(ctx.configPath);
  } catch (err) {
    process.stderr.write(`wnod epilog: the site config cannot be read: ${describe(err)}\n`);
    // whatever the partition, a VM under this job id is the job's: destroy it without the config
    let jobId: string | undefined;
    try { jobId = parseEpilogEnv(env).jobId; } catch { /* no job id: nothing to destroy */ }
    if (jobId) await endJobWithoutConfig(ctx.configPath, { jobId, willRetry: false }, (l) => process.stderr.write(`wnod epilog: ${l}\n`));
    return 1;
  }
  if (cfg.lrm.type !== 'slurm' || env.SLURM_JOB_PARTITION !== cfg.lrm.partition) return 0;
  let job: ReturnType<typeof parseEpilogEnv>;
  try {
    job = parseEpilogEnv(env);
  } catch (err) {
    await hookLog(logTarget(cfg), 'epilog', undefined).detail('bad-env', { error: describe(err) });
    return 1;
  }
  const log = hookLog(logTarget(cfg), 'epilog', job.jobId);
  let report: RunReport | undefined;
  try {
    report = await readReport(cfg.vm.stateDir, job.jobId, job.uid);
  } catch (err) {
    await log.detail('report-unreadable', { error: describe(err) });
  }
  const end: JobEnd = {
    lrm: 'slurm', jobId: job.jobId, user: job.user, group: '',
    exitStatus: exitStatusOf(report, job.exitCode),
    willRetry: false,
    holds: {},
    used: report ? { wallS: (report.endedAt - report.startedAt) / 1000 } : {},
  };
  // a boot still running (scancel or a time limit during it) goes first: it would start a VM after the teardown
  await stopBoot(cfg, job.jobId).catch((err: unknown) => log.detail('boot-stop-failed', { error: describe(err) }));
  const ok = await endJob(cfg, end, ctx, log);
  await clearBoot(cfg, job.jobId);
  try {
    await clearJob(cfg.vm.stateDir, job.jobId);
  } catch (err) {
    await log.detail('clear-failed', { error: describe(err) });
  }
  return ok ? 0 : 1;
}
