/** `vm.max_booting`: at most N VMs boot at once on a node (booting is CPU-bound; 16 TCG boots at once take as long
 * as 16 in a row, but each of them then misses its readiness bound). One lock file per slot; a prologue holds one
 * slot from QEMU's start until its guest answers, and waits for a free one within its budget. */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { acquireLock, LockTimeoutError, type Lock } from '../util/lock.js';
import { WnodError } from '../util/errors.js';
import { jobStateDir, ensureJobStateDir } from './jobstate.js';

/** No boot slot came free before the prologue's budget ran out. */
export class BootSlotTimeout extends WnodError {
  constructor(message: string) {
    super('node-busy', message);
  }
}

/** How many VMs may boot at once: the configured number, 0 = the node's core count. */
export function bootSlotCount(maxBooting: number, cores = availableParallelism()): number {
  return maxBooting > 0 ? maxBooting : Math.max(1, cores);
}

/** Take a free boot slot, waiting until `deadline` (epoch ms); throws BootSlotTimeout when none came free. */
export async function takeBootSlot(stateDir: string, maxBooting: number, deadline: number): Promise<Lock> {
  const dir = await ensureJobStateDir(stateDir);
  const n = bootSlotCount(maxBooting);
  // start at a random slot so that waiting prologues do not all poll slot 0 first
  const first = Math.floor(Math.random() * n);
  for (let round = 0; ; round++) {
    for (let i = 0; i < n; i++) {
      const path = join(jobStateDir(stateDir), `boot-slot-${(first + i) % n}.lock`);
      try {
        return await acquireLock(path, 'exclusive', { wait: false });
      } catch (err) {
        if (!(err instanceof LockTimeoutError)) throw err;
      }
    }
    if (Date.now() >= deadline) throw new BootSlotTimeout(`all ${n} boot slots of this node (${join(dir, 'boot-slot-*.lock')}) stayed busy`);
    await new Promise((r) => setTimeout(r, Math.min(50 + 10 * round, 250)));
  }
}
