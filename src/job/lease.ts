/** The worker-node side of a lease pilot: the prologue forwards a loopback port to the VM's ssh port and leaves
 * the address in the VM's runtime dir (root-owned, readable by the job's group), where the job starter — running as
 * the user — picks it up and hands it to the pilot in its environment. */
import { chown, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SiteConfig } from '../config/types.js';
import type { PortForward } from '../vm/driver.js';
import { runDirOf } from '../vm/state.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { Lock } from '../util/lock.js';
import { allocatePort } from './leasePorts.js';
import { LEASE_ID } from '../header/scriptHeader.js';

const INFO = 'lease.json';

/** Choose the host port of a lease VM's ssh forward (on `lease.host_address`, or a lease group member's node underlay
 * address); release the lock once QEMU listens on it. */
export async function leaseForward(cfg: SiteConfig, hostAddress = cfg.lease.hostAddress): Promise<{ forward: PortForward; lock: Lock }> {
  const { port, lock } = await allocatePort(cfg.vm.stateDir, hostAddress, cfg.lease.portMin, cfg.lease.portMax);
  return { forward: { hostAddr: hostAddress, hostPort: port, guestPort: cfg.lease.guestPort }, lock };
}

/** Record (root, in the VM's runtime dir) where the lease's ssh answers: 0640 root:<job gid>, so that the job's
 * starter (the user, in that group) reads it and other users of the node do not. */
export async function writeLeaseInfo(stateDir: string, vmId: string, leaseId: string, f: PortForward, gid: number): Promise<void> {
  const path = join(runDirOf(stateDir, vmId), INFO);
  await writeFileAtomic(path, JSON.stringify({ id: leaseId, address: `${f.hostAddr}:${f.hostPort}`, guestPort: f.guestPort }) + '\n', 0o640);
  // after the rename: until then the file is root-only (the starter runs only after the prologue returned)
  await chown(path, 0, gid);
}

/** The pilot's extra environment (starter): empty for a VM that is not a lease's. */
export async function leaseGuestEnv(stateDir: string, vmId: string): Promise<Record<string, string>> {
  const text = await readFile(join(runDirOf(stateDir, vmId), INFO), 'utf8').catch(() => undefined);
  if (text === undefined) return {};
  const o = JSON.parse(text) as { id?: unknown; address?: unknown; guestPort?: unknown };
  if (typeof o.id !== 'string' || !LEASE_ID.test(o.id) || typeof o.address !== 'string' || !/^[0-9.]+:\d{1,5}$/.test(o.address) || !Number.isInteger(o.guestPort)) return {};
  return { WNOD_LEASE_ID: o.id, WNOD_LEASE_ADDRESS: o.address, WNOD_LEASE_GUEST_PORT: String(o.guestPort) };
}
