#!/usr/bin/env node
// The `wnod` command: a thin dispatcher over the table in commands.ts. Help is answered here for every command:
// a command's parser throws HelpRequested (args.ts) and this prints its usage and exits 0.
import { describe, UsageError } from '../util/errors.js';
import { HelpRequested } from './args.js';
import { commands } from './commands.js';

/** A bad command line, ours or node:util parseArgs' (unknown option, missing value): exit 2, as every command promises. */
function isUsageError(err: unknown): boolean {
  return err instanceof UsageError || (typeof (err as { code?: unknown })?.code === 'string' && (err as { code: string }).code.startsWith('ERR_PARSE_ARGS_'));
}

/** The top-level usage: every command with its one-line summary (loads each module; only for help). */
async function usage(): Promise<string> {
  const names = Object.keys(commands).sort();
  const width = Math.max(...names.map((n) => n.length));
  const lines = await Promise.all(names.map(async (n) => `  ${n.padEnd(width)}  ${(await commands[n]!()).summary}`));
  return ['usage: wnod <command> [options]   (wnod <command> --help for its options)', '', 'commands:', ...lines].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    (name ? process.stdout : process.stderr).write((await usage()) + '\n');
    return name ? 0 : 2;
  }
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!load) {
    process.stderr.write(`wnod: unknown command '${name}'\n${await usage()}\n`);
    return 2;
  }
  try {
    return await (await load()).run(rest);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.usage.endsWith('\n') ? err.usage : `${err.usage}\n`);
      return 0;
    }
    process.stderr.write(`wnod ${name}: ${describe(err)}\n`);
    return isUsageError(err) ? 2 : 1;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
