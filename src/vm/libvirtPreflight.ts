/** Checks a site runs before choosing `vm.driver: libvirt`: the things that make libvirt fail or crawl on a node,
 * each with the fix. DESIGN A5: with a root-only /dev/kvm and QEMU running as Debian's default user (libvirt-qemu),
 * libvirtd re-probes QEMU's capabilities on every call (80 s per domain create): its /dev/kvm access check as that
 * user never matches its cache. (The private test daemon runs QEMU as root and is not affected.) */
import { readFile, stat } from 'node:fs/promises';
import { run } from '../util/run.js';

/** What is wrong with /dev/kvm for libvirt, or undefined. Pure: mode/gid from stat, kvmGid from /etc/group. */
export function kvmDeviceProblem(dev: { mode: number; gid: number } | undefined, kvmGid: number | undefined): string | undefined {
  if (!dev) return undefined; // no KVM at all: libvirt uses TCG (domain type qemu) without probing it again
  const perm = dev.mode & 0o777;
  if ((perm & 0o006) === 0o006) return undefined; // every user, libvirt-qemu too, can open it
  if (kvmGid === undefined) {
    return '/dev/kvm exists but there is no "kvm" group: a libvirtd running QEMU as libvirt-qemu re-probes QEMU on every call (80 s per create). ' +
      'Create the group (groupadd -r kvm) and make /dev/kvm root:kvm 0660 (udev rule or tmpfiles)';
  }
  if (dev.gid !== kvmGid || (perm & 0o060) !== 0o060) {
    return `/dev/kvm is mode ${perm.toString(8).padStart(4, '0')} group ${dev.gid}, want root:kvm 0660 (kvm = gid ${kvmGid}): ` +
      'otherwise a libvirtd running QEMU as libvirt-qemu re-probes QEMU on every call (80 s per create)';
  }
  return undefined;
}

/** The gid of a group in /etc/group text, or undefined. Pure. */
export function groupGid(etcGroup: string, name: string): number | undefined {
  for (const line of etcGroup.split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

/** Every problem found on this node for the libvirt driver at `uri` (empty = fine). */
export async function libvirtPreflight(uri: string, timeoutMs = 30_000): Promise<string[]> {
  const problems: string[] = [];
  try {
    await run('virsh', ['-c', uri, 'version'], { timeoutMs, env: { LC_ALL: 'C' } });
  } catch (err) {
    problems.push(`libvirt at ${uri} does not answer: ${(err as Error).message} ` +
      '(install libvirt-daemon-system or start libvirtd; the driver needs root access to its socket)');
  }
  const dev = await stat('/dev/kvm').catch(() => undefined);
  const kvm = kvmDeviceProblem(dev, groupGid(await readFile('/etc/group', 'utf8').catch(() => ''), 'kvm'));
  if (kvm) problems.push(kvm);
  return problems;
}
