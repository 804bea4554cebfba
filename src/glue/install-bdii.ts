// Put the GLUE plugin and provider shims into BDII's gip directories. bdii-update runs EVERY file in plugin/ and
// provider/ (dotfiles too, only `~` files are skipped), so no temp file may ever appear there: the shim is written
// in the gip dir itself (same filesystem) and renamed into place.
import { chmod, chown, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { WnodError } from '../util/errors.js';
import { lookupUser } from '../util/unixUsers.js';
import type { InfoProviderKind } from './info-provider.js';

export class InstallError extends WnodError {
  constructor(message: string) {
    super('install', message);
  }
}

export interface ShimParams {
  node: string;       // absolute path of the node binary (BDII's PATH may not have it)
  prefix: string;     // wnod install dir, holding dist/
  config: string;     // site config file
  lastGood: string;   // last-good base path (also where the model cache lives)
}

export const DEFAULT_SHIM_PARAMS: ShimParams = {
  node: '/usr/bin/node',
  prefix: '/opt/wnod',
  config: '/etc/wnod/wnod.yaml',
  lastGood: '/var/cache/wnod/glue-last-good.ldif',
};

/** File names in the gip dirs; no dot, no `~`, no `#`. */
export const SHIM_NAMES: Record<InfoProviderKind, string> = { plugin: 'wnod-glue-plugin', provider: 'wnod-glue-provider' };
const SUBDIR: Record<InfoProviderKind, string> = { plugin: 'plugin', provider: 'provider' };
const WHAT: Record<InfoProviderKind, string> = {
  plugin: 'GLUE 1.3 plugin: adds the image tags to the SubCluster',
  provider: 'GLUE 2.0 provider: Execution- and ApplicationEnvironments of the images',
};

// Paths go into a single-quoted sh word: refuse what could leave it or confuse a reader of the script.
const SAFE_PATH = /^\/[A-Za-z0-9._+@%=:,/-]*$/;

/** Check that a path is absolute and plain enough to sit in the shim. `what` names the option for the message. */
export function checkShimPath(path: string, what: string): string {
  if (!SAFE_PATH.test(path) || path.split('/').includes('..')) {
    throw new InstallError(`${what}: ${JSON.stringify(path)} must be an absolute path of letters, digits and ._+@%=:,/- (no "..")`);
  }
  return path;
}

/** The text of one shim (pure). */
export function renderShim(kind: InfoProviderKind, p: ShimParams): string {
  const q = (s: string) => `'${s}'`;
  const script = `${p.prefix.replace(/\/+$/, '')}/dist/glue/${kind}.js`;
  return [
    '#!/bin/sh',
    `# wnod ${WHAT[kind]}. Written by \`wnod install bdii\`; run it again after moving wnod or its config.`,
    `exec ${q(p.node)} ${q(script)} --config ${q(p.config)} --last-good ${q(p.lastGood)}`,
    '',
  ].join('\n');
}

async function writeShim(gipDir: string, kind: InfoProviderKind, text: string): Promise<string> {
  const dir = join(gipDir, SUBDIR[kind]);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const final = join(dir, SHIM_NAMES[kind]);
  // Temp file in the gip dir, never in plugin/ or provider/ where bdii-update would run it.
  const tmp = join(gipDir, `.wnod-install.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o700);
  try {
    await fh.writeFile(text);
    await fh.sync();
    await fh.close();
    await chmod(tmp, 0o755);
    await rename(tmp, final);
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  return final;
}

/** Install both shims below `gipDir` (plugin/ and provider/); returns the files written. */
export async function installBdii(gipDir: string, p: ShimParams): Promise<string[]> {
  checkShimPath(gipDir, '--gip-dir');
  checkShimPath(p.node, '--node');
  checkShimPath(p.prefix, '--prefix');
  checkShimPath(p.config, '--config');
  checkShimPath(p.lastGood, '--last-good');
  const st = await stat(gipDir).catch(() => undefined);
  if (!st?.isDirectory()) throw new InstallError(`--gip-dir: ${gipDir} is not a directory`);
  const out: string[] = [];
  for (const kind of ['plugin', 'provider'] as const) out.push(await writeShim(gipDir, kind, renderShim(kind, p)));
  return out;
}

/** BDII runs the shims as its own user (BDII_USER, `openldap` on Debian), which must be able to replace the
 * last-good file. Create its directory owned by `user` when it does not exist; report (never chown) an existing
 * one the user cannot write. Returns a note for the admin, or undefined. */
export async function prepareLastGoodDir(lastGood: string, user: string): Promise<string | undefined> {
  if (!/^[a-z_][a-z0-9_-]*\$?$/.test(user)) throw new InstallError(`--bdii-user: ${JSON.stringify(user)} is not a user name`);
  const found = await lookupUser(user);
  if (!found) throw new InstallError(`--bdii-user: there is no user ${user} in /etc/passwd`);
  const { uid, gid } = found;
  const dir = dirname(lastGood);
  const st = await stat(dir).catch(() => undefined);
  if (!st) {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await chown(dir, uid, gid);
    return `created ${dir} owned by ${user}`;
  }
  const writable = (st.uid === uid && (st.mode & 0o200) !== 0) || (st.gid === gid && (st.mode & 0o020) !== 0) || (st.mode & 0o002) !== 0;
  return writable ? undefined : `${dir} is not writable by ${user}: the last good output cannot be kept (set glue.last_good_file to a path in a directory ${user} owns, e.g. /var/lib/bdii/wnod/)`;
}
