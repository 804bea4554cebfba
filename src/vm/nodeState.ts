/** Where this node's VM state lives and its image cache — shared by `wnod vms`, `kill-all` and `gc`. */
import type { HolderReleaser } from './gc.js';

export const DEFAULT_STATE_DIR = '/var/lib/wnod';

/** The state dir from --state-dir, else the site config's vm.stateDir, else the default. */
export async function stateDirFrom(configPath: string | undefined, stateDir: string | undefined): Promise<string> {
  if (stateDir) return stateDir;
  if (!configPath) return DEFAULT_STATE_DIR;
  const { loadConfig } = await import('../config/load.js');
  return (await loadConfig(configPath)).vm.stateDir;
}

/** The image cache of the site config (for releasing references of gone VMs), if a config is given. */
export async function nodeCache(configPath: string | undefined): Promise<HolderReleaser | undefined> {
  if (!configPath) return undefined;
  const { loadConfig } = await import('../config/load.js');
  const { ImageCache } = await import('../images/cache.js');
  return new ImageCache((await loadConfig(configPath)).cache);
}
