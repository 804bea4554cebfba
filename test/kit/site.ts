// A throwaway site for tests and the demo: a config file and a ticket key in a directory of the caller's.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../../src/util/atomic.js';

export interface TestImageSpec {
  id: string;
  title?: string;
  kind?: 'disk' | 'kernel';
  disk?: { source: string; sha256: string; format: 'raw' | 'qcow2' };
  kernel?: { source: string; sha256: string };
  initrd?: { source: string; sha256: string };
  cmdline?: string;
  acpi?: boolean;
  cpus?: { default: number; max: number };
  memoryMB?: { default: number; max: number };
  queue?: string;
  published?: boolean;
  os?: { family?: string; name: string; version: string };
}

export interface TestSiteOptions {
  images?: TestImageSpec[];
  rules?: Record<string, unknown>[];
  vomsdir?: string;
  certdir?: string;
  extra?: Record<string, unknown>;  // merged into the top level (e.g. { lrm: {...} })
}

export interface TestSite { dir: string; configPath: string; keyPath: string; key: Buffer }

const fakeDigest = (s: string): string => Buffer.from(s.padEnd(32, '.').slice(0, 32)).toString('hex');

/** Write a complete site config (and a fresh 0600 ticket key) under `dir`; every state path points into it. */
export async function makeTestSite(dir: string, opts: TestSiteOptions = {}): Promise<TestSite> {
  await mkdir(dir, { recursive: true });
  const key = Buffer.from(randomBytes(32).toString('hex') + '\n');
  const keyPath = join(dir, 'ticket.key');
  await writeFileAtomic(keyPath, key, 0o600);
  const images = (opts.images ?? [
    { id: 'vm_sl6', title: 'Scientific Linux 6', os: { name: 'ScientificSL', version: '6.10' } },
    { id: 'vm_el9', title: 'AlmaLinux 9', os: { name: 'AlmaLinux', version: '9.4' }, queue: 'wnod_el9' },
  ]).map((i) => ({
    id: i.id, title: i.title ?? i.id, os: { family: 'linux', ...(i.os ?? { name: 'Linux', version: '1' }) }, arch: 'x86_64',
    kind: i.kind ?? 'disk',
    ...(i.kind === 'kernel' ? {} : { disk: i.disk ?? { source: `/shared/images/${i.id}.qcow2`, sha256: fakeDigest(i.id), format: 'qcow2' } }),
    ...(i.kind === 'kernel' && i.disk ? { disk: i.disk } : {}),
    ...(i.kernel ? { kernel: i.kernel } : {}), ...(i.initrd ? { initrd: i.initrd } : {}), ...(i.cmdline ? { cmdline: i.cmdline } : {}), ...(i.acpi === false ? { acpi: false } : {}),
    cpus: i.cpus ?? { default: 1, max: 4 }, memory_mb: i.memoryMB ? { default: i.memoryMB.default, max: i.memoryMB.max } : { default: 2048, max: 8192 },
    disk_gb: { default: 2, max: 10 }, ...(i.queue ? { queue: i.queue } : {}), ...(i.published === false ? { published: false } : {}),
  }));
  const doc = {
    site: { name: 'WNOD-TEST', ce_host: 'ce.wnod.test' },
    images,
    policy: {
      rules: opts.rules ?? [
        { name: 'atlas-production', fqan: '/atlas/Role=production', images: ['vm_sl6'], default: 'vm_sl6' },
        { name: 'dteam', vo: 'dteam', images: ['*'], default: 'vm_el9' },
      ],
    },
    trust: { vomsdir: opts.vomsdir ?? join(dir, 'vomsdir'), certdir: opts.certdir ?? join(dir, 'certificates') },
    ticket: { key_file: keyPath },
    lrm: { queue: 'wnod', job_class: 'wnod', mom_priv: join(dir, 'mom_priv') },
    cache: { dir: join(dir, 'cache'), high_watermark_gb: 20, low_watermark_gb: 10 },
    vm: { state_dir: join(dir, 'state') },
    glue: { last_good_file: join(dir, 'glue-last-good.ldif') },
    log_file: join(dir, 'wnod.log'),
    accounting_file: join(dir, 'accounting.jsonl'),
    ...(opts.extra ?? {}),
  };
  const configPath = join(dir, 'wnod.yaml');
  await writeFileAtomic(configPath, stringify(doc), 0o644);
  return { dir, configPath, keyPath, key };
}
