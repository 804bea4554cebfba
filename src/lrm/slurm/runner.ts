/** The runner (the job user): the SPANK plugin makes a marked job's batch step exec it instead of the script
 * (WNOD_JOB_SCRIPT names the script in slurmd's spool, WNOD_SLURM_JOB_ID the job, both set by the plugin from
 * slurmstepd's own data). It runs the script inside the job's VM through the core (src/job/run.ts) — as the user,
 * in the working directory, stdout and stderr to the job's own files, CONT/TERM passed on — and exits with the
 * guest's status. A job the Prolog refused gets the reason on its stderr and REFUSED_EXIT. A VM the Prolog started
 * booting detached (src/job/detachedBoot.ts) is waited for, bounded: a refusal there is told as the Prolog's, a
 * node fault gets its reason and NODE_FAULT_EXIT. Either way the status is reported to the Epilog (marks.ts). */
import { readFile } from 'node:fs/promises';
import type { SiteConfig } from '../../config/types.js';
import { describe } from '../../util/errors.js';
import { runJob } from '../../job/run.js';
import { guestClusterEnv } from '../../cluster/jobCluster.js';
import { userLine } from '../../job/outcome.js';
import { awaitBootForRun, bootRequested } from '../../job/detachedBoot.js';
import { parseSlurmJobId } from './jobId.js';
import { readMark, REFUSED_EXIT, writeReport } from './marks.js';
import type { SlurmHookContext } from './prolog.js';

const SCRIPT_MAX = 4 << 20;
/** Set by the plugin for the runner alone: the job in the guest does not see them. */
const RUNNER_ONLY = new Set(['WNOD_JOB_SCRIPT', 'WNOD_SLURM_JOB_ID']);

/** The number of nodes of the job (SLURM_JOB_NUM_NODES of the batch step, set by slurmstepd); 1 when unset. */
export function multiNodeCount(env: NodeJS.ProcessEnv): number {
  const n = env.SLURM_JOB_NUM_NODES;
  return n !== undefined && /^[1-9][0-9]{0,4}$/.test(n) ? Number(n) : 1;
}

export async function main(args: string[], env: NodeJS.ProcessEnv, ctx: SlurmHookContext): Promise<number> {
  const startedAt = Date.now();
  const say = (text: string) => { process.stderr.write(userLine(text) + '\n'); };
  let cfg: SiteConfig;
  let jobId: string;
  let script: string;
  try {
    cfg = await (ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig)(ctx.configPath);
    jobId = parseSlurmJobId(env.WNOD_SLURM_JOB_ID, 'WNOD_SLURM_JOB_ID');
    script = env.WNOD_JOB_SCRIPT ?? '';
    if (!script.startsWith('/')) throw new Error('WNOD_JOB_SCRIPT is not set: the runner runs only in place of a batch script (wnod SPANK plugin)');
  } catch (err) {
    say(`the job could not be started: ${describe(err)}`);
    return 1;
  }
  const report = async (exit: number) => {
    try {
      await writeReport(cfg.vm.stateDir, jobId, { exit, startedAt, endedAt: Date.now() });
    } catch (err) {
      say(`could not report the job's status to the node: ${describe(err)}`);
    }
    return exit;
  };
  let mark;
  try {
    mark = await readMark(cfg.vm.stateDir, jobId);
  } catch (err) {
    say(`the job could not be started: ${describe(err)}`);
    return report(1);
  }
  if (mark?.kind === 'refuse') {
    say(mark.reason || 'this worker node refused the job');
    return report(REFUSED_EXIT);
  }
  // its VM may still be booting (the Prolog detached it): wait for the outcome, within the site's budget
  if (mark?.kind === 'vm' && (await bootRequested(cfg, jobId))) {
    const failed = await awaitBootForRun(cfg, jobId);
    if (failed) {
      say(failed.say);
      return report(failed.exit);
    }
  }
  const jobEnv = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string' && !RUNNER_ONLY.has(e[0])));
  // a multi-node job: the script runs in the first VM (vm0) and sees the cluster of VMs, not the host nodes
  const vms = multiNodeCount(env);
  const cluster = vms > 1 ? { ...guestClusterEnv(vms), ...(env.SLURM_JOB_NODELIST ? { WNOD_HOST_NODELIST: env.SLURM_JOB_NODELIST } : {}) } : {};
  const code = await runJob(cfg, jobId, {
    guest: {
      script: async () => {
        const text = await readFile(script, 'utf8');
        if (text.length > SCRIPT_MAX) throw new Error(`the job script is larger than ${SCRIPT_MAX} bytes`);
        return text;
      },
      args, env: { ...jobEnv, ...cluster }, cwd: process.cwd(), workdir: process.cwd(),
      ...(vms > 1 ? { peers: Array.from({ length: vms - 1 }, (_, i) => `vm${i + 1}`) } : {}),
    },
    // as slurmstepd would have run it
    bare: { file: script, args, argv0: script },
  }, ctx);
  return report(code);
}
