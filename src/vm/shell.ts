/** Shell text for the guest: quoting and the script the agent runs for one exec. Pure. */
import { VmSpecError } from './errors.js';

/** Quote one string for POSIX sh (single quotes; exact for every byte but NUL). */
export function shq(s: string): string {
  if (s.includes('\0')) throw new VmSpecError('a NUL byte cannot travel in a shell word');
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The script the guest agent runs (as the job user) for one command: enter cwd, replace the environment, exec argv.
 * The command name travels as a positional parameter so no word of argv is ever parsed by the shell. */
export function execScript(argv: readonly string[], cwd: string, env: Readonly<Record<string, string>>): string {
  if (argv.length === 0) throw new VmSpecError('exec: empty command');
  if (!cwd.startsWith('/')) throw new VmSpecError(`exec: cwd must be absolute, got '${cwd}'`);
  const assigns = Object.entries(env).map(([k, v]) => {
    if (!ENV_NAME.test(k)) throw new VmSpecError(`exec: invalid environment variable name '${k}'`);
    return shq(`${k}=${v}`);
  });
  return [
    `cd ${shq(cwd)} || exit 126`,
    `exec env -i ${assigns.join(' ')} /bin/sh -c 'exec "$@"' wnod-exec ${argv.map(shq).join(' ')}`,
  ].join('\n') + '\n';
}
