/** The one process entry of the Slurm hooks: `node slurm-hook.cjs --config /ABS/FILE <prolog|epilog|runner> [args…]`.
 * The shims bake the config path in (lrm-hooks/slurm/), so nothing the job controls can point a hook elsewhere. */
import { describe } from '../../util/errors.js';
import { parseSlurmEntryArgv } from './entry-argv.js';

async function start(): Promise<number> {
  const { configPath, hook, rest } = parseSlurmEntryArgv(process.argv.slice(2));
  const ctx = { configPath, vm: (await import('../../job/vmEngine.js')).jobVmEngine() };
  switch (hook) {
    case 'prolog': return (await import('./prolog.js')).main(process.env, ctx);
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
