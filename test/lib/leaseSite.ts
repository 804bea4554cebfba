// A lease test site: src/testkit/leaseSite.ts (shared with the demo) on the ssh test image, in a fresh temp dir,
// with the repo reached through a path the lease user can traverse. Shared by the lease tests and bench/lease.ts.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSshTestImage } from '../../src/testkit/sshImage.js';
import { makeLeaseSite as makeSite, type LeaseSite as BaseLeaseSite } from '../../src/testkit/leaseSite.js';
import { ensureBuilt } from './cli.js';
import { reachable } from './reachable.js';
import { hypervisorsOf } from './hypervisors.js';

export interface LeaseSite extends BaseLeaseSite {
  /** hypervisor processes of this site's state dir */
  hypervisors(): Promise<number[]>;
}

/** Lease VMs boot wnod's minimal kernel unless `kernel: 'debian'` (leases cannot use warm snapshots: port forwards). */
export async function makeLeaseSite(opts: { kernel?: 'debian' | 'mini'; userName?: string; killDelayMs?: number; rules?: (group: string) => Record<string, unknown>[]; vomsdir?: string; certdir?: string } = {}): Promise<LeaseSite> {
  await ensureBuilt();
  const repo = reachable(join(import.meta.dirname, '..', '..'));
  const img = await buildSshTestImage({ kernel: opts.kernel ?? 'mini' });
  const dir = await mkdtemp(join(tmpdir(), 'wnod-lease-'));
  const { kernel: _kernel, ...rest } = opts;
  const s = await makeSite({ ...rest, dir, repo, img });
  return { ...s, hypervisors: () => hypervisorsOf(s.site.stateDir) };
}
