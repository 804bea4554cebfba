// Fixtures for the GLUE tests and bench: site configs as objects (for the pure model) and as YAML files (for the
// provider processes).
import type { Image, Rule, SiteConfig } from '../src/config/types.js';

/** A published image with plausible defaults. */
export function image(id: string, over: Partial<Image> = {}): Image {
  return {
    id, title: `Image ${id}`, os: { family: 'linux', name: 'AlmaLinux', version: '9.4' }, arch: 'x86_64', kind: 'disk',
    disk: { source: `/shared/${id}.qcow2`, sha256: '0'.repeat(64), format: 'qcow2' },
    cpus: { default: 1, max: 4 }, memoryMB: { default: 2048, max: 8192 }, diskGB: { default: 10, max: 40 },
    published: true, digest: '0'.repeat(64), ...over,
  };
}

/** A SiteConfig for ce.test.org with the given images and rules. */
export function siteConfig(images: Image[], rules: Rule[] = [], glue: Partial<SiteConfig['glue']> = {}): SiteConfig {
  const ce = 'ce.test.org';
  return {
    site: { name: 'TEST-SITE', ceHost: ce },
    images,
    policy: { rules, noRequest: 'default', noTicket: 'refuse', imageTagPrefix: 'vm_' },
    trust: { vomsdir: '/etc/grid-security/vomsdir', certdir: '/etc/grid-security/certificates', blahFqansVerified: false, requireVerifiedProxy: false },
    ticket: { keyFile: '/etc/wnod/ticket.key', lifetimeS: 604800 },
    lrm: { type: 'torque', momPriv: '/var/spool/torque/mom_priv', prologueBudgetS: 280, maxRequeues: 3 },
    cache: { dir: '/var/cache/wnod', highWatermarkGB: 200, lowWatermarkGB: 150 },
    vm: { driver: 'qemu', accel: 'auto', stateDir: '/var/lib/wnod', network: 'none', readyTimeoutS: 120, stopGraceS: 10, maxBooting: 0 },
    lease: { portMin: 42000, portMax: 42999, hostAddress: '127.0.0.1', guestPort: 2222, defaultHours: 8, maxHours: 72, dir: '.wnod/leases' },
    glue: {
      subClusterDn: `GlueSubClusterUniqueID=${ce},GlueClusterUniqueID=${ce},mds-vo-name=resource,o=grid`,
      computingServiceId: `${ce}_ComputingElement`, computingManagerId: `${ce}_ComputingElement_Manager`,
      glue2Suffix: 'GLUE2GroupID=resource,o=glue', perVoTags: false, validityS: 3600, cpuTimeScalingFactor: 1, wallTimeScalingFactor: 1,
      lastGoodFile: '/var/cache/wnod/glue-last-good.ldif', ...glue,
    },
    logFile: '/var/log/wnod/wnod.log', log: { maxBytes: 64 * 1024 * 1024, keep: 5 }, accountingFile: '/var/log/wnod/accounting.jsonl', path: 'test.yaml',
  };
}

/** A site YAML with `n` generated images (vm_img0 …), or the given ids, for ce `host`. */
export function siteYaml(o: { host: string; ids?: string[]; n?: number; lastGood: string; perVoTags?: boolean; vos?: string[] }): string {
  const ids = o.ids ?? Array.from({ length: o.n ?? 1 }, (_, i) => `vm_img${i}`);
  const images = ids.map((id, i) => `  - id: ${id}
    title: "Image ${id}"
    os: { family: linux, name: AlmaLinux, version: "9.${i % 10}" }
    arch: x86_64
    kind: disk
    disk: { source: /shared/wnod/${id}.qcow2, sha256: "${i.toString(16).padStart(64, '0')}", format: qcow2 }
    cpus: { default: 1, max: 4 }
    memory_mb: { default: 2048, max: 8192 }
    disk_gb: { default: 10, max: 40 }
`).join('');
  const rules = (o.vos ?? ['dteam']).map((vo) => `    - name: ${vo}
      vo: ${vo}
      images: ["*"]
      default: ${ids[0]}
`).join('');
  return `site:
  name: TEST-SITE
  ce_host: ${o.host}
images:
${images}policy:
  rules:
${rules}lrm:
  type: torque
glue:
  subcluster_dn: GlueSubClusterUniqueID=${o.host},GlueClusterUniqueID=${o.host},mds-vo-name=resource,o=grid
  computing_service_id: ${o.host}_ComputingElement
  computing_manager_id: ${o.host}_ComputingElement_Manager
  per_vo_tags: ${o.perVoTags ? 'true' : 'false'}
  last_good_file: ${o.lastGood}
`;
}
