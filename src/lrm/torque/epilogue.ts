/** The root epilogue (pbs_mom's `epilogue` / `epilogue.<class>`): pbs_mom's argv into a JobEnd for the core's
 * teardown and accounting (src/job/finish.ts). pbs_mom runs it once the job reached the node — also after a refused
 * or failed prologue, qdel or a walltime kill. Its exit code is only logged by pbs_mom; 0 unless something failed. */
import type { SiteConfig } from '../../config/types.js';
import { describe } from '../../util/errors.js';
import { endJob, endJobWithoutConfig } from '../../job/finish.js';
import { hookLog, logTarget } from '../../job/log.js';
import type { JobEnd } from '../../job/contract.js';
import { parseEpilogueArgv, isRetryStatus, type EpilogueArgs } from './argv.js';
import { fallbackLog, type HookContext } from './prologue.js';
import { stopBoot, clearBoot } from '../../job/detachedBoot.js';
import { isWnodJob, SISTER_REQUEST } from './sister.js';

/** The core's view of a job pbs_mom is done with (pure). */
export function jobEnd(args: EpilogueArgs): JobEnd {
  return {
    lrm: 'torque', jobId: args.jobId, user: args.user, group: args.group,
    exitStatus: args.exitStatus, willRetry: isRetryStatus(args.exitStatus),
    holds: { cpus: args.resourceList.ppn, memoryMB: args.resourceList.memMB, nodes: args.resourceList.nodeCount },
    used: { wallS: args.resourcesUsed.walltimeS, cpuS: args.resourcesUsed.cputS },
  };
}

/** Run the epilogue (or, `sister`, epilogue.parallel on a sister host) for pbs_mom's argv; returns the exit code
 * (only logged by pbs_mom). */
export async function main(argv: string[], _env: NodeJS.ProcessEnv, ctx: HookContext & { sister?: boolean }): Promise<number> {
  const load = ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig;
  let cfg: SiteConfig;
  try {
    cfg = await load(ctx.configPath);
  } catch (err) {
    await fallbackLog(ctx, 'epilogue', argv[0], { event: 'config-unreadable', error: describe(err) }); // the admin's, not the job's files
    // the job's VM must not outlive it (QEMU is in its own session: pbs_mom's kill misses it): tear down without config
    let args: EpilogueArgs | undefined;
    try { args = parseEpilogueArgv(argv, ctx.torqueVersion ?? 'auto'); } catch { /* no job id: nothing to destroy */ }
    if (args) {
      const notes: string[] = [];
      await endJobWithoutConfig(ctx.configPath, jobEnd(args), (l) => notes.push(l));
      for (const note of notes) await fallbackLog(ctx, 'epilogue', args.jobId, { event: 'teardown-without-config', note });
    }
    return 1;
  }
  let args: EpilogueArgs;
  try {
    args = parseEpilogueArgv(argv, ctx.torqueVersion ?? 'auto');
  } catch (err) {
    await hookLog(logTarget(cfg), 'epilogue', undefined, ctx.stdout).detail('bad-argv', { error: describe(err), argv });
    return 1;
  }
  // epilogue.parallel runs for every multi-node job: a sister sees no job class, only the queue
  if (ctx.sister && !isWnodJob(cfg, args)) return 0;
  const log = hookLog(logTarget(cfg), ctx.sister ? 'epilogue.parallel' : 'epilogue', args.jobId, ctx.stdout);
  // a boot still running (qdel, walltime or a starter that gave up during it) goes first: it would start a VM
  // after the teardown (detachedBoot.ts)
  await stopBoot(cfg, args.jobId).catch((err: unknown) => log.detail('boot-stop-failed', { error: describe(err) }));
  const ok = await endJob(cfg, jobEnd(args), ctx, log);
  await clearBoot(cfg, args.jobId, [SISTER_REQUEST]);
  return ok ? 0 : 1;
}
