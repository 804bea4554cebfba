// `wnod kernel build`: build (or find in the cache) the minimal guest kernel and print where it is.
import { parseCommandLine, runSubcommand } from './args.js';
import { buildMiniKernel, DEFAULT_KERNEL_CACHE } from '../kernel/miniKernel.js';

export const summary = 'build the minimal guest kernel from linux-source-6.1 (cached) and print where it is';

const HELP = `usage:
  wnod kernel build [--cache-dir DIR] [--json]

Builds vmlinux from Debian's linux-source-6.1 with guest/kernel/wnod-mini.config over tinyconfig, once per
fragment, source version and compiler (cache: ${DEFAULT_KERNEL_CACHE}/<key>/). Prints the vmlinux path, or with
--json {key, vmlinux, sourceVersion, config, built}.`;

const handlers = { build };
export const subcommands = Object.keys(handlers);

export async function run(argv: string[]): Promise<number> {
  return runSubcommand('kernel', argv, handlers, HELP);
}

async function build(rest: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: rest, strict: true, options: {
    'cache-dir': { type: 'string' }, json: { type: 'boolean' } } }, HELP);
  const k = await buildMiniKernel({ cacheDir: values['cache-dir'], log: (s) => process.stderr.write(`wnod kernel: ${s}\n`) });
  process.stdout.write(values.json
    ? JSON.stringify({ key: k.key, vmlinux: k.vmlinux, sourceVersion: k.sourceVersion, config: k.config, built: k.built }, null, 2) + '\n'
    : `${k.vmlinux}\n`);
  return 0;
}
