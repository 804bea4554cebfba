import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../util/errors.js';

/** node:util parseArgs, with a bad command line turned into a UsageError (exit 2) that ends with the usage text. */
export function parseCommandLine<T extends ParseArgsConfig>(config: T, usage?: string): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new UsageError(usage ? `${(err as Error).message}\n${usage}` : (err as Error).message);
  }
}

/** `wnod <command> <sub> …`: run the handler named by the first argument, print the help for help/-h/--help, and
 * refuse anything else with the help (exit 2). */
export async function runSubcommand(command: string, argv: string[], handlers: Record<string, (rest: string[]) => Promise<number>>, help: string): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') { process.stdout.write(help + '\n'); return 0; }
  const handler = sub !== undefined && Object.hasOwn(handlers, sub) ? handlers[sub] : undefined;
  if (!handler) throw new UsageError(`unknown '${command}' subcommand '${sub ?? ''}'\n${help}`);
  return handler(rest);
}
