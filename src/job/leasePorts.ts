/** Host ports for lease VMs' ssh forwards on a node: one lock file per port (held from the choice until QEMU has
 * bound the port), and a bind test, so two prologues never pick the same port and a port something else
 * holds is skipped. Once QEMU listens, the bound socket itself keeps others off. */
import { createServer } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { acquireLock, LockTimeoutError, type Lock } from '../util/lock.js';
import { WnodError } from '../util/errors.js';

export class NoFreePort extends WnodError {
  constructor(min: number, max: number) {
    super('no-free-port', `no free lease port in ${min}-${max} on this node`);
  }
}

/** True when `host:port` can be bound now. */
export function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** Take a free port of [min, max] (random start: concurrent prologues spread out). Release the lock once the
 * hypervisor listens on it. */
export async function allocatePort(stateDir: string, host: string, min: number, max: number): Promise<{ port: number; lock: Lock }> {
  const dir = join(stateDir, 'lease-ports');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const n = max - min + 1;
  const first = Math.floor(Math.random() * n);
  for (let i = 0; i < n; i++) {
    const port = min + ((first + i) % n);
    let lock: Lock;
    try {
      lock = await acquireLock(join(dir, `${port}.lock`), 'exclusive', { wait: false });
    } catch (err) {
      if (err instanceof LockTimeoutError) continue;
      throw err;
    }
    if (await canBind(host, port)) return { port, lock };
    await lock.release();
  }
  throw new NoFreePort(min, max);
}
