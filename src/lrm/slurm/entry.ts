/** The one process entry of the Slurm hooks: `node slurm-hook.cjs --config /ABS/FILE <prolog|epilog|runner|boot> [args…]`.
 * The shims bake the config path in (lrm-hooks/slurm/), so nothing the job controls can point a hook elsewhere. */
import { describe } from '../../util/errors.js';
import type { JobVmEngine } from '../../job/contract.js';
import { parseSlurmEntryArgv } from './entry-argv.js';

/** The Prolog's engine: a one-node job's VM boots detached (slurmd starts the batch step only once the Prolog exited:
 * the boot overlaps the Prolog's exit, slurmstepd and the runner's start; the runner waits for it). A job on several
 * nodes boots in the Prolog: the runner on the first node cannot see another node's boot outcome, and a peer's VM
 * not up once every Prolog has finished is one that failed (vmEngine.ts missingPeers), said at once. */
async function prologEngine(real: JobVmEngine, configPath: string): Promise<JobVmEngine> {
  const detached = (await import('../../job/detachedBoot.js')).detachedBoot(real, configPath, 'slurm');
  return { ...detached, start: (job) => (job.cluster ? real.start(job) : detached.start(job)) };
}

async function start(): Promise<number> {
  const { configPath, hook, rest } = parseSlurmEntryArgv(process.argv.slice(2));
  const ctx = { configPath, vm: (await import('../../job/vmEngine.js')).jobVmEngine() };
  switch (hook) {
    case 'prolog': return (await import('./prolog.js')).main(process.env, { ...ctx, vm: await prologEngine(ctx.vm, configPath) });
    case 'boot': return (await import('../../job/detachedBoot.js')).bootMain(rest, ctx, (await import('./jobId.js')).parseSlurmJobId);
    case 'epilog': return (await import('./epilog.js')).main(process.env, ctx);
    case 'runner': return (await import('./runner.js')).main(rest, process.env, ctx);
  }
}

start().then((code) => {
  process.exitCode = code;
}, (err: unknown) => {
  // the Prolog and Epilog fail only on a node fault: an unforeseen error is one (drain, the admin looks)
  process.stderr.write(`wnod slurm hook: ${describe(err)}\n`);
  process.exitCode = 1;
});
