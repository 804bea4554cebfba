// VMs on a job's private network across netns nodes (test/kit/siteNodes.ts), driven straight through the QEMU
// driver: the jobnet VM tests' common parts (what they need to run, their teardown, a shell in a guest).
import { execa } from 'execa';
import type { Test } from 'tap';
import { rmSync } from 'node:fs';
import type { QemuDriver } from '../../src/vm/qemu.js';
import type { VmState } from '../../src/vm/driver.js';
import type { JobNetPlan } from '../../src/cluster/jobNetPlan.js';
import { removeJobNet } from '../../src/cluster/jobNetHost.js';
import type { SiteNodes } from './siteNodes.js';
import { collect } from './collect.js';

export interface JobNetVm { driver: QemuDriver; state: VmState; plan: JobNetPlan; node: string; claimDir: string }

export const ROOT_IN_GUEST = { name: 'root', uid: 0, gid: 0 };

/** Root and nft: what a job network on this host needs. */
export const jobNetUsable = async (): Promise<boolean> =>
  process.getuid?.() === 0 && (await execa('/usr/sbin/nft', ['--version'], { reject: false })).exitCode === 0;

/** The test's VMs (push them as they are prepared): destroyed, their job network removed, the nodes and `root`
 * gone when the test ends, whatever happened. */
export function jobNetVms(t: Test, sn: SiteNodes, root: string): JobNetVm[] {
  const vms: JobNetVm[] = [];
  t.teardown(async () => {
    for (const v of vms) await v.driver.destroy(v.state).catch(() => {});
    for (const v of vms) await removeJobNet(v.plan, { netns: v.node, claimDir: v.claimDir }).catch(() => {});
    await sn.teardown();
    rmSync(root, { recursive: true, force: true });
  });
  return vms;
}

/** `sh -c SCRIPT` in the guest as `user` (root by default): exit code, stdout, stderr. */
export async function guestSh(v: JobNetVm, script: string, user: { name: string; uid: number; gid: number } = ROOT_IN_GUEST): Promise<{ code: number; out: string; err: string }> {
  const out = collect(); const err = collect();
  const code = await v.driver.exec(v.state, { argv: ['/bin/sh', '-c', script], cwd: '/', env: {}, user, stdout: out, stderr: err, timeoutMs: 120_000 });
  return { code, out: out.text(), err: err.text() };
}
