/** Host ports for lease VMs' ssh forwards on a node. They are privileged (below 1024, enforced by the config): QEMU
 * binds its forward as root and only then drops to the job user (-runas), so no ordinary user of the node can take
 * the range first — or in the window between our test and QEMU's bind — to deny every lease. Among root's own
 * prologues, one lock file per port (held from the choice until QEMU has bound the port) and a bind test keep two
 * leases off one port; once QEMU listens, the bound socket itself keeps others off. */
import { createServer } from 'node:net';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { acquireLock, LockTimeoutError, type Lock } from '../util/lock.js';
import { WnodError } from '../util/errors.js';

/** Every port of the range is held by another lease (or another root service). `reason` is for the user. */
export class NoFreePort extends WnodError {
  readonly reason: string;
  constructor(host: string, min: number, max: number) {
    const reason = `this worker node has no free lease port: all ${max - min + 1} of ${host}:${min}-${max} are held by other leases or services`;
    super('no-free-port', reason);
    this.reason = reason;
  }
}

/** The node lets ordinary users bind ports of the lease range (net.ipv4.ip_unprivileged_port_start was lowered):
 * any of them could deny every lease, so leases are refused until an admin fixes it. */
export class LeasePortsUnprotected extends WnodError {
  readonly reason: string;
  constructor(readonly unprivilegedStart: number, min: number, max: number) {
    const reason = `this worker node cannot protect lease ports ${min}-${max}: net.ipv4.ip_unprivileged_port_start is ${unprivilegedStart}, ` +
      `so any local user could bind them; its administrator must raise it above ${max}`;
    super('lease-ports-unprotected', reason);
    this.reason = reason;
  }
}

/** The first port ordinary users may bind (net.ipv4.ip_unprivileged_port_start; 1024 when the file is absent). */
export async function unprivilegedPortStart(path = '/proc/sys/net/ipv4/ip_unprivileged_port_start'): Promise<number> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  const n = Number(text?.trim());
  return text !== undefined && Number.isInteger(n) && n >= 0 ? n : 1024;
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
 * hypervisor listens on it. Throws LeasePortsUnprotected when ordinary users could bind the range, NoFreePort when
 * every port is taken. */
export async function allocatePort(stateDir: string, host: string, min: number, max: number,
  o: { unprivilegedStart?: number } = {}): Promise<{ port: number; lock: Lock }> {
  const start = o.unprivilegedStart ?? await unprivilegedPortStart();
  if (max >= start) throw new LeasePortsUnprotected(start, min, max);
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
  throw new NoFreePort(host, min, max);
}
