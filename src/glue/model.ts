// The GLUE information model of a wnod CE, built once from the site config; printers turn it into LDIF.
import type { Image, Rule, SiteConfig } from '../config/types.js';
import { checkConfiguredDn, GlueError, rdn } from './dn.js';

/** GLUE 1.3: the values of GlueHostApplicationSoftwareRunTimeEnvironment for the one SubCluster. */
export interface Glue1Model {
  subClusterDn: string;
  tags: string[];
}

/** GLUE 2.0 ExecutionEnvironment: the VM an image boots into. */
export interface Glue2ExecutionEnvironment {
  dn: string;
  id: string;
  name: string;
  platform: string;
  mainMemoryMB: number;
  virtualMemoryMB: number;
  cpuTimeScalingFactor: number;
  wallTimeScalingFactor: number;
  osFamily: string;
  osName: string;
  osVersion: string;
  logicalCpus: number;
  connectivityIn: boolean;
  connectivityOut: boolean;
}

/** GLUE 2.0 ApplicationEnvironment: the image as a selectable software environment. */
export interface Glue2ApplicationEnvironment {
  dn: string;
  id: string;
  imageId: string;
  appName: string;
  appVersion?: string;
  description: string;
  executionEnvironmentId: string;
}

export interface Glue2Model {
  serviceId: string;
  managerId: string;
  executionEnvironments: Glue2ExecutionEnvironment[];
  applicationEnvironments: Glue2ApplicationEnvironment[];
}

export interface GlueModel {
  /** GLUE2EntityCreationTime, `%Y-%m-%dT%H:%M:%SZ`. */
  creationTime: string;
  validityS: number;
  glue1: Glue1Model;
  glue2: Glue2Model;
  /** Things left out, for the BDII log (stderr). */
  warnings: string[];
}

// IA5String, and no spaces: a tag is one token in Member("tag", ...) and in BLAH's unwound assignments.
const TAG = /^[\x21-\x7E]+$/;
const VO_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
// An id like `cvmfs_app-1.2` or `vm_el-9.4` carries a version after its last `-` or `_`.
const VERSIONED_ID = /^(.+?)[-_](\d+(?:\.\d+)*)$/;

/** GLUE2 Platform for our arch names (GFD.147 enumeration; it is open and has no 64-bit ARM value). */
const PLATFORM: Record<Image['arch'], string> = { x86_64: 'amd64', i686: 'i386', aarch64: 'aarch64' };

/** The GLUE2ExecutionEnvironmentPlatform of an image's arch. */
export function eePlatform(arch: Image['arch']): string {
  return PLATFORM[arch];
}

/** `%Y-%m-%dT%H:%M:%SZ` in UTC, as GLUE2EntityCreationTime wants it. */
export function glueTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The VO a rule grants: its `vo`, or the first group of its `fqan` pattern. */
export function ruleVo(rule: Rule): string | undefined {
  if (rule.vo) return rule.vo;
  const m = rule.fqan ? /^\/([^/]+)/.exec(rule.fqan) : null;
  return m ? m[1] : undefined;
}

/** Split an image id into AppName and AppVersion when it ends in `-<n.n…>` or `_<n.n…>`. */
export function splitAppVersion(id: string): { appName: string; appVersion?: string } {
  const m = VERSIONED_ID.exec(id);
  return m ? { appName: m[1]!, appVersion: m[2]! } : { appName: id };
}

/** Free text for BDII: no control characters, and never the text `dn:` — bdii-update finds records by searching
 * for it anywhere, so a value containing it would split an entry. */
export function bdiiText(s: string): string {
  return s.replace(/[\x00-\x1F\x7F]+/g, ' ').replace(/dn:/g, 'dn :').trim();
}

/** Published images in catalog order, ASCII tags only, de-duplicated case-insensitively (slapd compares RTE
 * values with caseIgnoreIA5Match and rejects a whole modify that holds two spellings of one tag). */
export function publishedImages(images: readonly Image[], warnings: string[]): Image[] {
  const seen = new Map<string, string>();
  const out: Image[] = [];
  for (const img of images) {
    if (!img.published) continue;
    if (!TAG.test(img.id)) {
      warnings.push(`image ${JSON.stringify(img.id)} not published: its id is not printable ASCII without spaces`);
      continue;
    }
    const key = img.id.toLowerCase();
    const first = seen.get(key);
    if (first !== undefined) {
      warnings.push(`image ${JSON.stringify(img.id)} not published: it differs from ${JSON.stringify(first)} only in case`);
      continue;
    }
    seen.set(key, img.id);
    out.push(img);
  }
  return out;
}

/** The RTE tags: one per published image, then `VO-<vo>-<image>` for each VO whose rules allow it
 * (when the site asked for per-VO tags), de-duplicated case-insensitively. */
export function rteTags(images: readonly Image[], rules: readonly Rule[], perVoTags: boolean, warnings: string[]): string[] {
  const tags = images.map((i) => i.id);
  if (perVoTags) {
    const seen = new Set(tags.map((t) => t.toLowerCase()));
    for (const img of images) {
      for (const rule of rules) {
        if (!rule.images.includes('*') && !rule.images.includes(img.id)) continue;
        const vo = ruleVo(rule);
        if (vo === undefined) continue;
        if (!VO_NAME.test(vo)) {
          warnings.push(`rule ${JSON.stringify(rule.name)}: VO ${JSON.stringify(vo)} is not a plain name; no per-VO tag`);
          continue;
        }
        const tag = `VO-${vo}-${img.id}`;
        if (seen.has(tag.toLowerCase())) continue;
        seen.add(tag.toLowerCase());
        tags.push(tag);
      }
    }
  }
  return tags;
}

/** Build the GLUE model of this CE from the site config. Throws GlueError when the configured identity
 * (DNs, IDs) cannot be published at all. */
export function buildGlueModel(cfg: SiteConfig, now: Date): GlueModel {
  const g = cfg.glue;
  const warnings: string[] = [];
  const subClusterDn = checkConfiguredDn(g.subClusterDn, 'o=grid', 'glue.subcluster_dn');
  if (!/^GlueSubClusterUniqueID=/i.test(subClusterDn)) {
    throw new GlueError(`glue.subcluster_dn: ${JSON.stringify(subClusterDn)} must start with GlueSubClusterUniqueID=`);
  }
  for (const [key, id] of [['glue.computing_service_id', g.computingServiceId], ['glue.computing_manager_id', g.computingManagerId]] as const) {
    if (!TAG.test(id) || id !== bdiiText(id)) throw new GlueError(`${key}: ${JSON.stringify(id)} must be printable ASCII without spaces or "dn:"`);
  }
  const serviceDn = `${rdn('GLUE2ServiceID', g.computingServiceId)},${checkConfiguredDn(g.glue2Suffix, 'o=glue', 'glue.glue2_suffix', true)}`;
  const managerDn = `${rdn('GLUE2ManagerID', g.computingManagerId)},${serviceDn}`;

  const images = publishedImages(cfg.images, warnings);
  const connectivityOut = cfg.vm.network !== 'none';
  const connectivityIn = cfg.vm.network === 'bridge';
  const executionEnvironments: Glue2ExecutionEnvironment[] = [];
  const applicationEnvironments: Glue2ApplicationEnvironment[] = [];
  for (const img of images) {
    const eeId = `${g.computingServiceId}_image_${img.id}`;
    const aeId = `${g.computingServiceId}_app_${img.id}`;
    executionEnvironments.push({
      dn: `${rdn('GLUE2ResourceID', eeId)},${serviceDn}`,
      id: eeId,
      name: img.id,
      platform: eePlatform(img.arch),
      // What a job of this image can get at most: the VM is sized per job up to these limits.
      mainMemoryMB: img.memoryMB.max,
      virtualMemoryMB: img.virtualMemoryMB ?? img.memoryMB.max,
      cpuTimeScalingFactor: g.cpuTimeScalingFactor,
      wallTimeScalingFactor: g.wallTimeScalingFactor,
      osFamily: bdiiText(img.os.family.toLowerCase()),
      osName: bdiiText(img.os.name),
      osVersion: bdiiText(img.os.version),
      logicalCpus: img.cpus.max,
      connectivityIn,
      connectivityOut,
    });
    const ae: Glue2ApplicationEnvironment = {
      dn: `${rdn('GLUE2ApplicationEnvironmentID', aeId)},${managerDn}`,
      id: aeId,
      imageId: img.id,
      ...splitAppVersion(img.id),
      description: bdiiText(img.title) || img.id,
      executionEnvironmentId: eeId,
    };
    applicationEnvironments.push(ae);
  }
  return {
    creationTime: glueTime(now),
    validityS: g.validityS,
    glue1: { subClusterDn, tags: rteTags(images, cfg.policy.rules, g.perVoTags, warnings) },
    glue2: { serviceId: g.computingServiceId, managerId: g.computingManagerId, executionEnvironments, applicationEnvironments },
    warnings,
  };
}
