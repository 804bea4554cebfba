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
