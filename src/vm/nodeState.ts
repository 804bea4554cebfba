/** Where this node's VM state lives and which driver owns a record — shared by `wnod vms`, `kill-all` and `gc`. */
import type { VmDriver, VmState } from './driver.js';
import { QemuDriver } from './qemu.js';
import { LibvirtDriver } from './libvirtDriver.js';
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

/** The driver that made a record (records say which). */
export function driverFor(stateDir: string): (s: VmState) => VmDriver {
  const qemu = new QemuDriver({ stateDir, accel: 'tcg' });
  let libvirt: LibvirtDriver | undefined;
  return (s: VmState) => {
    if (s.driver === 'qemu') return qemu;
    if (s.driver === 'libvirt') return (libvirt ??= new LibvirtDriver({ stateDir }));
    throw new Error(`VM ${s.id} was made by driver '${s.driver}', which this command does not know`);
  };
}
