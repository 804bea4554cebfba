import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError, WnodError } from '../util/errors.js';

/** `--help`/`-h` on a command line: not a failure. The dispatcher (main.ts) prints `usage` on stdout and exits 0,
 * so every command answers help through this one path. */
export class HelpRequested extends WnodError {
  constructor(readonly usage: string) {
    super('help', usage);
  }
}

const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

/** node:util parseArgs with `--help`/`-h` added to every command (HelpRequested with `usage`), and a bad command line
 * turned into a UsageError (exit 2) that ends with the usage text. After `--` and in option values, `-h` is data. */
export function parseCommandLine<T extends ParseArgsConfig>(config: T, usage: string): ReturnType<typeof parseArgs<T>> {
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs({ ...config, options: { ...config.options, ...HELP_OPTION } } as T);
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${usage}`);
  }
  if ((parsed.values as { help?: boolean }).help) throw new HelpRequested(usage);
  return parsed;
}

/** `wnod <command> <sub> …`: run the handler named by the first argument, answer help/-h/--help with the help
 * (HelpRequested), and refuse anything else with the help (exit 2). The handlers' names are the command's
 * `subcommands` (the help test walks them). */
export async function runSubcommand(command: string, argv: string[], handlers: Record<string, (rest: string[]) => Promise<number>>, help: string): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') throw new HelpRequested(help);
  const handler = sub !== undefined && Object.hasOwn(handlers, sub) ? handlers[sub] : undefined;
  if (!handler) throw new UsageError(`${sub === undefined ? `'${command}' needs a subcommand` : `unknown '${command}' subcommand '${sub}'`}\n${help}`);
  return handler(rest);
}
