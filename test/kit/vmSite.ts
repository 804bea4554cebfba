/** A throwaway site whose catalog images are the test image's real files (kind: kernel), for the demo, the Torque
 * VM tests and the hook benchmark: a config, a 0600 ticket key and every state path inside one directory. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTestSite, type TestImageSpec, type TestSite } from './site.js';
import type { TestImage } from '../../src/guest/testImage.js';

/** sha256 of a file, hex. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export interface VmSiteOptions {
  /** extra catalog images built from the same files (id, optional root disk, extra kernel command line) */
  more?: Array<{ id: string; disk?: boolean; cmdline?: string }>;
  rules?: Record<string, unknown>[];
  vomsdir?: string;
  certdir?: string;
  /** merged into the `lrm` and `vm` sections */
  lrm?: Record<string, unknown>;
  /** replaces the whole `lrm` section (Slurm: the Torque keys are refused under type: slurm) */
  lrmSection?: Record<string, unknown>;
  vm?: Record<string, unknown>;
  policy?: Record<string, unknown>;
  /** further top-level sections (e.g. job_network) */
  sections?: Record<string, unknown>;
}

export interface VmSite extends TestSite {
  momPriv: string;
  stateDir: string;
  /** the catalog id of the main image (initramfs only, the workdir shared over virtiofs) */
  imageId: string;
}

/** Write the site under `dir` (made 0755: the job user's starter traverses the state dir inside it). */
export async function makeVmSite(dir: string, img: TestImage, opts: VmSiteOptions = {}): Promise<VmSite> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  const [kernel, initrd, disk] = await Promise.all([sha256File(img.kernel), sha256File(img.initrd), sha256File(img.rootDisk)]);
  const base = (id: string, withDisk: boolean, cmdline?: string): TestImageSpec => ({
    id, title: `wnod test image (${id})`, kind: 'kernel', os: { name: 'Debian', version: '12' },
    kernel: { source: img.kernel, sha256: kernel }, initrd: { source: img.initrd, sha256: initrd },
    ...(withDisk ? { disk: { source: img.rootDisk, sha256: disk, format: 'raw' as const } } : {}),
    ...(cmdline || withDisk ? { cmdline: [withDisk ? 'wnod.root=/dev/vda' : '', cmdline ?? ''].join(' ').trim() } : {}),
    cpus: { default: 1, max: 2 }, memoryMB: { default: 256, max: 1024 },
    ...(img.kernelFlavor === 'mini' ? { acpi: false } : {}), // the mini kernel has no ACPI
  });
  const imageId = 'vm_test';
  const momPriv = join(dir, 'pbs', 'mom_priv');
  const stateDir = join(dir, 'state');
  const site = await makeTestSite(dir, {
    images: [base(imageId, false), ...(opts.more ?? []).map((m) => base(m.id, m.disk === true, m.cmdline))],
    rules: opts.rules ?? [{ name: 'testvo', vo: 'testvo', images: ['*'], default: imageId }],
    ...(opts.vomsdir ? { vomsdir: opts.vomsdir } : {}), ...(opts.certdir ? { certdir: opts.certdir } : {}),
    extra: {
      lrm: opts.lrmSection ?? { queue: 'wnod', job_class: 'wnod', mom_priv: momPriv, max_requeues: 1, ...opts.lrm },
      // TCG unless told otherwise: a KVM probe costs up to 30 s per fresh state dir, and KVM is PVM here (A5)
      vm: { state_dir: stateDir, accel: 'tcg', ready_timeout_s: 120, stop_grace_s: 5, ...opts.vm },
      ...opts.sections,
      ...(opts.policy ? { policy: { rules: opts.rules ?? [{ name: 'testvo', vo: 'testvo', images: ['*'], default: imageId }], ...opts.policy } } : {}),
    },
  });
  return { ...site, momPriv, stateDir, imageId };
}
