/** Where a root hook that cannot read its site config finds the job's state: admission writes the config's
 * state dir into `<config>.state-dir` (root-owned, beside the config whose path the hook's shim bakes in), and a
 * teardown that cannot load the config reads it back — else it falls back to the default state dir. Both the
 * pointer and the state dir it names must be root's and writable by nobody else (trustedPath.ts): the state dir
 * names the processes root kills and the files it removes. */
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { assertTrustedPath } from '../util/trustedPath.js';
import { WnodError } from '../util/errors.js';
import { DEFAULT_STATE_DIR } from '../vm/nodeState.js';

export const pointerPath = (configPath: string): string => `${configPath}.state-dir`;

const MAX = 4096;

function checkStateDir(text: string, where: string): string {
  if (text.length > MAX || !isAbsolute(text) || /[\0\n]/.test(text)) throw new WnodError('bad-state-dir-pointer', `${where}: not an absolute path`);
  return text;
}

/** Admission (root): point `configPath`'s pointer at `stateDir` (rewritten only when it changed). */
export async function rememberStateDir(configPath: string, stateDir: string): Promise<void> {
  if (!isAbsolute(configPath)) return;
  const path = pointerPath(configPath);
  const now = await readFile(path, 'utf8').catch(() => undefined);
  if (now === `${stateDir}\n`) return;
  await writeFileAtomic(path, `${checkStateDir(stateDir, 'vm.state_dir')}\n`, 0o644);
}

/** Teardown without a config (root): the state dir the pointer names, else the default one — if root may trust it. */
export async function fallbackStateDir(configPath: string | undefined): Promise<{ stateDir: string; from: 'pointer' | 'default' }> {
  let found: { stateDir: string; from: 'pointer' | 'default' } = { stateDir: DEFAULT_STATE_DIR, from: 'default' };
  if (configPath && isAbsolute(configPath)) {
    const path = pointerPath(configPath);
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      await assertTrustedPath(path, 'the state-dir pointer');
      found = { stateDir: checkStateDir(text.replace(/\n$/, ''), path), from: 'pointer' };
    }
  }
  await assertTrustedPath(found.stateDir, 'the state dir of a teardown without config');
  return found;
}
