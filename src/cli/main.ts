#!/usr/bin/env node
// The `wnod` command: a thin dispatcher. Each subcommand lives in its own module, loaded on demand so that
// the hot paths (filter, hooks) never pay for the others.
import { describe, UsageError } from '../util/errors.js';

type Command = { run(argv: string[]): Promise<number>; summary: string };
type Loader = () => Promise<Command>;

/** Subcommand name → module. Two-word commands ("voms inspect") are dispatched by the module itself. */
const commands: Record<string, Loader> = {
  accounting: () => import('./accounting.js'),
  cache: () => import('./cache.js'),
  check: () => import('./check.js'),
  explain: () => import('./explain.js'),
  find: () => import('./find.js'), install: () => import('./install.js'),
  kernel: () => import('./kernel.js'),
  snapshot: () => import('./snapshot.js'),
  status: () => import('./status.js'),
  ticket: () => import('./ticket.js'),
  voms: () => import('./voms.js'),
  lease: () => import('./lease.js'),
  vm: () => import('./vm.js'), vms: () => import('./vms.js'), 'kill-all': () => import('./kill-all.js'), gc: () => import('./gc.js'),
};

/** A bad command line, ours or node:util parseArgs' (unknown option, missing value): exit 2, as every command promises. */
function isUsageError(err: unknown): boolean {
  return err instanceof UsageError || (typeof (err as { code?: unknown })?.code === 'string' && (err as { code: string }).code.startsWith('ERR_PARSE_ARGS_'));
}

function usage(): string {
  return ['usage: wnod <command> [options]   (wnod <command> --help for its options)', '', 'commands:',
    ...Object.keys(commands).sort().map((c) => `  ${c}`)].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 2;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`wnod: unknown command '${name}'\n${usage()}\n`);
    return 2;
  }
  try {
    return await (await load()).run(rest);
  } catch (err) {
    process.stderr.write(`wnod ${name}: ${describe(err)}\n`);
    return isUsageError(err) ? 2 : 1;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
