/** The one process entry of the Torque hooks: `node entry.js --config FILE <prologue|epilogue|starter> <pbs_mom argv…>`.
 * The shims in mom_priv bake the config path in, so nothing the job controls (its environment reaches the starter)
 * can point a hook at another config. */
import { describe } from '../../util/errors.js';
import { parseEntryArgv } from './entry-argv.js';

async function start(): Promise<number> {
  const { configPath, fallbackLog, hook, rest } = parseEntryArgv(process.argv.slice(2));
  // the core's VM engine (src/vm + src/images behind the seam of src/job/contract.ts), loaded only once the argv is ours
  const ctx = { configPath, fallbackLog, vm: (await import('../../job/vmEngine.js')).jobVmEngine() };
  switch (hook) {
    // the prologue admits and hands the boot to a detached process: pbs_server waits for it to return (detachedBoot.ts)
    case 'prologue': return (await import('./prologue.js')).main(rest, process.env, { ...ctx, vm: (await import('../../job/detachedBoot.js')).detachedBoot(ctx.vm, configPath, 'torque') });
    case 'boot': return (await import('../../job/detachedBoot.js')).bootMain(rest, ctx, (await import('./argv.js')).parseJobId);
    case 'sister': return (await import('./sister.js')).main(rest, process.env, ctx);
    case 'sister-boot': return (await import('./sister.js')).sisterBootMain(rest, ctx);
    case 'epilogue': return (await import('./epilogue.js')).main(rest, process.env, ctx);
    case 'sister-epilogue': return (await import('./epilogue.js')).main(rest, process.env, { ...ctx, sister: true });
    case 'starter': return (await import('./starter.js')).main(rest, process.env, ctx);
  }
}

start().then((code) => {
  process.exitCode = code;
}, (err: unknown) => {
  process.stderr.write(`wnod hook: ${describe(err)}\n`);
  // an unknown failure of a prologue must not requeue forever: 1 aborts (pbs_mom's only bounded outcome)
  process.exitCode = 1;
});
