import { WnodError } from '../util/errors.js';

/** One problem in a config file, located by file, line and key path. */
export interface ConfigProblem {
  file: string;
  line: number;
  key: string;
  message: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}: ${p.key || '(top level)'}: ${p.message}`;
}

/** Every problem found in a config file; the message lists them all, one per line. */
export class ConfigError extends WnodError {
  constructor(readonly problems: ConfigProblem[]) {
    super('config', problems.map(formatProblem).join('\n'));
  }
}
