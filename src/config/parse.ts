// YAML text → validated SiteConfig. The yaml library is heavy to load: only load.ts imports this, on demand.
import { LineCounter, parseDocument } from 'yaml';
import { ConfigReader } from './reader.js';
import { ConfigError } from './errors.js';
import { IMAGE_ID, imageDigest } from './image.js';
import type { Artifact, Bounded, Image, JobNetworkConfig, LrmConfig, Rule, SiteConfig } from './types.js';
import { BATCH_NODE_NAME, checkSite } from '../cluster/jobNetPlan.js';
import { JobNetSpecError } from '../cluster/errors.js';

/** Lease forwards listen on ports below 1024 (Linux's default net.ipv4.ip_unprivileged_port_start). */
export const PRIVILEGED_PORT_MAX = 1023;

/** Image ids are RTE tags: GLUE IA5, safe as file names and shell words. */
const SHA256 = /^[0-9a-f]{64}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ABS_PATH = /^\/[^\0]*$/;
const SOURCE = /^(\/|file:\/\/\/|https?:\/\/)[^\s\0]+$/;
const FQAN_PATTERN = /^\/[A-Za-z0-9._*-]+(\/[A-Za-z0-9._*=-]+)*$/;

/** Validate config text (pure; `file` only names it in messages). */
export function parseConfig(text: string, file: string): SiteConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: true, strict: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => ({
      file, line: e.linePos?.[0]?.line ?? 1, key: '', message: `YAML syntax: ${e.message.split('\n')[0]}`,
    })));
  }
  const r = new ConfigReader(file, doc, lines);
  if (!r.isMapping([])) throw new ConfigError(r.problems);

  const site = { name: r.str(['site', 'name']) ?? '', ceHost: r.str(['site', 'ce_host'], { pattern: /^[A-Za-z0-9.-]+$/, patternText: 'a host name' }) ?? '' };
  const images = readImages(r);
  const policy = readPolicy(r, images);
  const trust = {
    vomsdir: r.str(['trust', 'vomsdir'], { default: '/etc/grid-security/vomsdir', pattern: ABS_PATH, patternText: 'an absolute path' })!,
    certdir: r.str(['trust', 'certdir'], { default: '/etc/grid-security/certificates', pattern: ABS_PATH, patternText: 'an absolute path' })!,
    blahFqansVerified: r.bool(['trust', 'blah_fqans_verified'], false),
    requireVerifiedProxy: r.bool(['trust', 'require_verified_proxy'], false),
  };
  const ticket = {
    keyFile: r.str(['ticket', 'key_file'], { default: '/etc/wnod/ticket.key', pattern: ABS_PATH, patternText: 'an absolute path' })!,
    keyGroup: r.str(['ticket', 'key_group'], { optional: true, pattern: NAME, patternText: 'a unix group name' }),
    lifetimeS: r.int(['ticket', 'lifetime_s'], { default: 7 * 86400, min: 60, max: 90 * 86400 })!,
  };
  const lrm = readLrm(r);
  const cache = {
    dir: r.str(['cache', 'dir'], { default: '/var/cache/wnod', pattern: ABS_PATH, patternText: 'an absolute path' })!,
    highWatermarkGB: r.int(['cache', 'high_watermark_gb'], { default: 200, min: 1 })!,
    lowWatermarkGB: r.int(['cache', 'low_watermark_gb'], { default: 150, min: 0 })!,
  };
  if (cache.lowWatermarkGB >= cache.highWatermarkGB) r.problem(['cache', 'low_watermark_gb'], `must be below high_watermark_gb (${cache.highWatermarkGB})`);
  const vm = {
    driver: r.oneOf(['vm', 'driver'], ['qemu', 'libvirt'] as const, 'qemu')!,
    accel: r.oneOf(['vm', 'accel'], ['auto', 'kvm', 'tcg'] as const, 'auto')!,
    stateDir: r.str(['vm', 'state_dir'], { default: '/var/lib/wnod', pattern: ABS_PATH, patternText: 'an absolute path' })!,
    network: r.oneOf(['vm', 'network'], ['none', 'user', 'bridge'] as const, 'none')!,
    bridge: r.str(['vm', 'bridge'], { optional: true, pattern: /^[A-Za-z0-9_.-]{1,15}$/, patternText: 'an interface name' }),
    readyTimeoutS: r.int(['vm', 'ready_timeout_s'], { default: 120, min: 1, max: 3600 })!,
    stopGraceS: r.int(['vm', 'stop_grace_s'], { default: 10, min: 0, max: 600 })!,
    maxBooting: r.int(['vm', 'max_booting'], { default: 0, min: 0, max: 1024 })!,
    snapshots: r.bool(['vm', 'snapshots'], false),
  };
  if (vm.network === 'bridge' && !vm.bridge) r.problem(['vm', 'network'], 'network: bridge needs vm.bridge');
  const lease = {
    // privileged ports only: QEMU binds them as root before it drops to the job user (-runas), and no ordinary
    // user of the node can take them first to deny every lease
    portMin: r.int(['lease', 'port_min'], { default: 800, min: 1, max: PRIVILEGED_PORT_MAX })!,
    portMax: r.int(['lease', 'port_max'], { default: 899, min: 1, max: PRIVILEGED_PORT_MAX })!,
    hostAddress: r.str(['lease', 'host_address'], { default: '127.0.0.1', pattern: /^(\d{1,3}\.){3}\d{1,3}$/, patternText: 'an IPv4 address' })!,
    guestPort: r.int(['lease', 'guest_port'], { default: 2222, min: 1025, max: 65535 })!,
    defaultHours: r.int(['lease', 'default_hours'], { default: 8, min: 1, max: 8760 })!,
    maxHours: r.int(['lease', 'max_hours'], { default: 72, min: 1, max: 8760 })!,
    queue: r.str(['lease', 'queue'], { optional: true, pattern: NAME, patternText: 'a queue name' }),
    dir: r.str(['lease', 'dir'], { default: '.wnod/leases', pattern: /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, patternText: 'a relative path inside the home directory' })!,
  };
  if (lease.portMin > lease.portMax) r.problem(['lease', 'port_min'], `must not be above port_max (${lease.portMax})`);
  if (lease.defaultHours > lease.maxHours) r.problem(['lease', 'default_hours'], `must not be above max_hours (${lease.maxHours})`);
  if (lrm.type === 'slurm') {
    // on Slurm the wnod partition alone says which jobs are wnod's: a per-image or per-lease queue would send jobs
    // where no wnod hook admits them
    images.forEach((img, i) => { if (img.queue !== undefined) r.problem(['images', i, 'queue'], 'is for lrm.type: torque; under lrm.type: slurm every wnod job runs in lrm.partition'); });
    if (lease.queue !== undefined) r.problem(['lease', 'queue'], 'is for lrm.type: torque; under lrm.type: slurm lease pilots run in lrm.partition');
  }
  if (lease.dir.split('/').includes('..')) r.problem(['lease', 'dir'], 'must stay inside the home directory (no ..)');
  const jobNetwork = readJobNetwork(r);
  const ce = site.ceHost || 'localhost';
  const glue = {
    subClusterDn: r.str(['glue', 'subcluster_dn'], { default: `GlueSubClusterUniqueID=${ce},GlueClusterUniqueID=${ce},mds-vo-name=resource,o=grid` })!,
    computingServiceId: r.str(['glue', 'computing_service_id'], { default: `${ce}_ComputingElement` })!,
    computingManagerId: r.str(['glue', 'computing_manager_id'], { default: `${ce}_ComputingElement_Manager` })!,
    glue2Suffix: r.str(['glue', 'glue2_suffix'], { default: 'GLUE2GroupID=resource,o=glue' })!,
    perVoTags: r.bool(['glue', 'per_vo_tags'], false),
    validityS: r.int(['glue', 'validity_s'], { default: 3600, min: 60 })!,
    cpuTimeScalingFactor: r.real(['glue', 'cpu_time_scaling_factor'], { default: 1, minExclusive: 0, max: 1000 }),
    wallTimeScalingFactor: r.real(['glue', 'wall_time_scaling_factor'], { default: 1, minExclusive: 0, max: 1000 }),
    lastGoodFile: r.str(['glue', 'last_good_file'], { default: '/var/cache/wnod/glue-last-good.ldif', pattern: ABS_PATH, patternText: 'an absolute path' })!,
  };
  if (!/,o=grid$/i.test(glue.subClusterDn)) r.problem(['glue', 'subcluster_dn'], 'must be a DN under o=grid');
  if (!/(^|,)o=glue$/i.test(glue.glue2Suffix)) r.problem(['glue', 'glue2_suffix'], 'must be a DN under o=glue');
  const logFile = r.str(['log_file'], { default: '/var/log/wnod/wnod.log', pattern: ABS_PATH, patternText: 'an absolute path' })!;
  const log = {
    maxBytes: r.int(['log_max_mb'], { default: 64, min: 1, max: 65536 })! * 1024 * 1024,
    keep: r.int(['log_keep'], { default: 5, min: 0, max: 100 })!,
  };
  const accountingFile = r.str(['accounting_file'], { default: '/var/log/wnod/accounting.jsonl', pattern: ABS_PATH, patternText: 'an absolute path' })!;

  r.reportUnknownKeys();
  if (r.problems.length > 0) throw new ConfigError(r.problems.sort((a, b) => a.line - b.line));
  const cfg: SiteConfig = { site, images, policy, trust, ticket, lrm, cache, vm, lease, ...(jobNetwork ? { jobNetwork } : {}), glue, logFile, log, accountingFile, path: file };
  // Plain JSON data (no undefined members): what the compiled-config cache stores is exactly what we return.
  return JSON.parse(JSON.stringify(cfg)) as SiteConfig;
}

/** Keys of `lrm:` that mean something to one batch system only: the other one refuses them. */
const LRM_ONLY: Record<LrmConfig['type'], readonly string[]> = {
  torque: ['queue', 'job_class', 'mom_priv', 'max_requeues'],
  slurm: ['partition', 'hook_dir'],
};

function readLrm(r: ConfigReader): LrmConfig {
  const type = r.oneOf(['lrm', 'type'], ['torque', 'slurm'] as const, 'torque') ?? 'torque';
  const other = type === 'torque' ? 'slurm' : 'torque';
  for (const key of LRM_ONLY[other]) {
    if (r.has(['lrm', key])) r.problem(['lrm', key], `is for lrm.type: ${other}, not for lrm.type: ${type}${type === 'slurm' && key === 'queue' ? ' (use lrm.partition)' : ''}`);
  }
  const torque = type === 'torque';
  return {
    type,
    queue: torque ? r.str(['lrm', 'queue'], { optional: true, pattern: NAME, patternText: 'a queue name' }) : undefined,
    jobClass: torque ? r.str(['lrm', 'job_class'], { optional: true, pattern: /^[A-Za-z0-9_-]{1,32}$/, patternText: 'a job class name' }) : undefined,
    momPriv: torque ? r.str(['lrm', 'mom_priv'], { default: '/var/spool/torque/mom_priv', pattern: ABS_PATH, patternText: 'an absolute path' })! : '/var/spool/torque/mom_priv',
    prologueBudgetS: r.int(['lrm', 'prologue_budget_s'], { default: 280, min: 10, max: 3600 })!,
    maxRequeues: torque ? r.int(['lrm', 'max_requeues'], { default: 3, min: 0, max: 100 })! : 0,
    binDir: r.str(['lrm', 'bin_dir'], { optional: true, pattern: ABS_PATH, patternText: 'an absolute path' }),
    // Slurm partition names: letters, digits, _ . - (no commas: a job may name several partitions)
    partition: torque ? undefined : r.str(['lrm', 'partition'], { pattern: /^[A-Za-z0-9_.-]{1,64}$/, patternText: 'a partition name' }),
    hookDir: torque ? undefined
      : r.str(['lrm', 'hook_dir'], { default: '/usr/local/lib/wnod/slurm', pattern: /^\/[A-Za-z0-9._\/-]*$/, patternText: 'an absolute path of [A-Za-z0-9._/-]' })!,
  };
}

const IPV4_STRICT = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** `job_network:` (optional): the site's ranges (checked as src/cluster/jobNetPlan.ts checkSite does) and the map
 * from node names to underlay addresses. */
function readJobNetwork(r: ConfigReader): JobNetworkConfig | undefined {
  if (!r.isMapping(['job_network'], true)) return undefined;
  const j = ['job_network'];
  const before = r.problems.length;
  if (r.has([...j, 'vni'])) r.isMapping([...j, 'vni']);
  const site = {
    vni: { first: r.int([...j, 'vni', 'first'], { default: 0x100000, min: 1, max: 0xffffff })!, count: r.int([...j, 'vni', 'count'], { default: 0x100000, min: 1, max: 0xffffff })! },
    port: r.int([...j, 'port'], { default: 4789, min: 1, max: 65535 })!,
    underlayMtu: r.int([...j, 'underlay_mtu'], { default: 1500, min: 626, max: 65535 })!,
    privateRange: r.str([...j, 'private_range'], { default: '10.128.0.0/9', pattern: /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, patternText: 'an IPv4 range a.b.c.d/n' })!,
    subnetPrefix: r.int([...j, 'subnet_prefix'], { default: 24, min: 8, max: 30 })!,
  };
  // the ranges together (host bits, a subnet within the range): only once each key is fine on its own
  if (r.problems.length === before) {
    try {
      checkSite(site);
    } catch (err) {
      if (!(err instanceof JobNetSpecError)) throw err;
      r.problem(j, err.message);
    }
  }
  const nodes: Record<string, string> = {};
  const byAddress = new Map<string, string>();
  for (const name of r.keys([...j, 'nodes']) ?? []) {
    if (!BATCH_NODE_NAME.test(name)) { r.problem([...j, 'nodes', name], `${JSON.stringify(name)} is not a node name`); continue; }
    const addr = r.str([...j, 'nodes', name], { pattern: IPV4_STRICT, patternText: 'an IPv4 address' });
    if (addr === undefined) continue;
    const twin = byAddress.get(addr);
    if (twin !== undefined) r.problem([...j, 'nodes', name], `${addr} is also node ${twin}'s address (one underlay address per node)`);
    byAddress.set(addr, name);
    nodes[name] = addr;
  }
  return {
    ...site, nodes,
    secretFile: r.str([...j, 'secret_file'], { default: '/etc/wnod/jobnet.secret', pattern: ABS_PATH, patternText: 'an absolute path' })!,
    claimDir: r.str([...j, 'claim_dir'], { default: '/run/wnod/jobnet', pattern: ABS_PATH, patternText: 'an absolute path' })!,
  };
}

function readArtifact(r: ConfigReader, path: (string | number)[], optional: boolean): Artifact | undefined {
  if (!r.isMapping(path, optional)) return undefined;
  const source = r.str([...path, 'source'], { pattern: SOURCE, patternText: 'an absolute path, file:///…, http:// or https:// URL' });
  const sha256 = r.str([...path, 'sha256'], { pattern: SHA256, patternText: 'a sha256 (64 lower-case hex digits)' });
  return source && sha256 ? { source, sha256 } : undefined;
}

function readBounded(r: ConfigReader, path: (string | number)[], min: number, max: number): Bounded {
  if (!r.isMapping(path)) return { default: min, max: min };
  const d = r.int([...path, 'default'], { min, max });
  const m = r.int([...path, 'max'], { min, max });
  if (d !== undefined && m !== undefined && d > m) r.problem([...path, 'default'], `default ${d} is above max ${m}`);
  return { default: d ?? min, max: m ?? min };
}

function readImages(r: ConfigReader): Image[] {
  const n = r.length(['images']) ?? 0;
  const images: Image[] = [];
  const byLower = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const p = ['images', i];
    if (!r.isMapping(p)) continue;
    const id = r.str([...p, 'id'], { pattern: IMAGE_ID, patternText: 'an image tag ([A-Za-z0-9._+-], up to 100 ASCII characters)' });
    if (id) {
      // GLUE 1.3 RTE values are case-insensitive: vm_sl6 and VM_SL6 cannot both be published.
      const prev = byLower.get(id.toLowerCase());
      if (prev !== undefined) r.problem([...p, 'id'], `${JSON.stringify(id)} clashes with images[${prev}] (ids are case-insensitive)`);
      else byLower.set(id.toLowerCase(), i);
    }
    const kind = r.oneOf([...p, 'kind'], ['disk', 'kernel'] as const);
    const osOk = r.isMapping([...p, 'os']);
    const os = {
      family: osOk ? r.str([...p, 'os', 'family'], { default: 'linux' })! : 'linux',
      name: osOk ? r.str([...p, 'os', 'name']) ?? '' : '',
      version: osOk ? r.str([...p, 'os', 'version']) ?? '' : '',
    };
    const diskPath = [...p, 'disk'];
    const disk = readArtifact(r, diskPath, kind !== 'disk');
    const format = r.has(diskPath) ? r.oneOf([...diskPath, 'format'], ['raw', 'qcow2'] as const, 'qcow2') : undefined;
    const kernel = readArtifact(r, [...p, 'kernel'], kind !== 'kernel');
    const initrd = readArtifact(r, [...p, 'initrd'], true);
    if (kind === 'disk' && (r.has([...p, 'kernel']) || r.has([...p, 'initrd']))) r.problem([...p, 'kind'], 'kind: disk takes no kernel or initrd (use kind: kernel)');
    const img: Image = {
      id: id ?? '',
      title: r.str([...p, 'title']) ?? '',
      os,
      arch: r.oneOf([...p, 'arch'], ['x86_64', 'i686', 'aarch64'] as const, 'x86_64')!,
      kind: kind ?? 'disk',
      ...(disk && format ? { disk: { ...disk, format } } : {}),
      ...(kernel ? { kernel } : {}),
      ...(initrd ? { initrd } : {}),
      ...(r.has([...p, 'cmdline']) ? { cmdline: r.str([...p, 'cmdline'], { pattern: /^[\x20-\x7e]{1,1024}$/, patternText: 'printable ASCII' }) } : {}),
      ...(r.has([...p, 'acpi']) ? { acpi: r.bool([...p, 'acpi'], true) } : {}),
      cpus: readBounded(r, [...p, 'cpus'], 1, 1024),
      memoryMB: readBounded(r, [...p, 'memory_mb'], 64, 4 << 20),
      ...(r.has([...p, 'virtual_memory_mb']) ? { virtualMemoryMB: r.int([...p, 'virtual_memory_mb'], { min: 64, max: 64 << 20 }) } : {}),
      diskGB: readBounded(r, [...p, 'disk_gb'], 1, 1 << 20),
      published: r.bool([...p, 'published'], true),
      ...(r.has([...p, 'queue']) ? { queue: r.str([...p, 'queue'], { pattern: NAME, patternText: 'a queue name' }) } : {}),
      digest: '',
    };
    img.digest = imageDigest(img);
    images.push(img);
  }
  return images;
}

function readPolicy(r: ConfigReader, images: Image[]): SiteConfig['policy'] {
  const ids = new Set(images.map((i) => i.id));
  const n = r.length(['policy', 'rules']) ?? 0;
  const rules: Rule[] = [];
  const names = new Set<string>();
  for (let i = 0; i < n; i++) {
    const p = ['policy', 'rules', i];
    if (!r.isMapping(p)) continue;
    const name = r.str([...p, 'name'], { pattern: NAME, patternText: 'a rule name ([A-Za-z0-9._-])' }) ?? `rule${i}`;
    if (names.has(name)) r.problem([...p, 'name'], `duplicate rule name ${JSON.stringify(name)}`);
    names.add(name);
    const fqan = r.str([...p, 'fqan'], { optional: true, pattern: FQAN_PATTERN, patternText: 'an FQAN pattern like /vo/group/Role=role or /vo/*' });
    const vo = r.str([...p, 'vo'], { optional: true, pattern: /^[A-Za-z0-9._-]{1,64}$/, patternText: 'a VO name' });
    const group = r.str([...p, 'group'], { optional: true, pattern: NAME, patternText: 'a unix group name' });
    if (!fqan && !vo && !group) r.problem(p, 'a rule needs fqan, vo or group');
    const allowed = r.strList([...p, 'images']) ?? [];
    for (const [j, a] of allowed.entries()) {
      if (a !== '*' && !ids.has(a)) r.problem([...p, 'images', j], `unknown image ${JSON.stringify(a)} (catalog: ${[...ids].join(', ') || 'empty'})`);
    }
    const dflt = r.str([...p, 'default'], { optional: true });
    if (dflt !== undefined && !ids.has(dflt)) r.problem([...p, 'default'], `unknown image ${JSON.stringify(dflt)}`);
    else if (dflt !== undefined && !allowed.includes('*') && !allowed.includes(dflt)) r.problem([...p, 'default'], `${JSON.stringify(dflt)} is not among this rule's images`);
    const maxCpus = r.int([...p, 'max_cpus'], { optional: true, min: 1 });
    const maxMemoryMB = r.int([...p, 'max_memory_mb'], { optional: true, min: 64 });
    rules.push({
      name, images: allowed,
      ...(fqan ? { fqan } : {}), ...(vo ? { vo } : {}), ...(group ? { group } : {}),
      ...(dflt ? { default: dflt } : {}),
      ...(maxCpus ? { maxCpus } : {}), ...(maxMemoryMB ? { maxMemoryMB } : {}),
    });
  }
  return {
    rules,
    noRequest: r.oneOf(['policy', 'no_request'], ['default', 'deny'] as const, 'default')!,
    noTicket: r.oneOf(['policy', 'no_ticket'], ['refuse', 'group-default', 'bare'] as const, 'refuse')!,
    imageTagPrefix: r.has(['policy', 'image_tag_prefix'])
      ? r.str(['policy', 'image_tag_prefix'], { pattern: /^[A-Za-z0-9._-]{0,32}$/, patternText: 'a tag prefix' }) ?? 'vm_'
      : 'vm_',
  };
}
