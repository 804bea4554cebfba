// The authorisation decision: pure data in, data out — no files, no processes, no clock.
import { fqanMatches } from '../voms/fqan.js';
import type { Image, Policy, Rule } from '../config/types.js';
import type { JobRequest } from '../jdl/request.js';

/** Who is asking, as far as it could be established. `fqans` are canonical long forms, primary first. */
export interface Identity {
  vo?: string | undefined;
  fqans: string[];
  dn?: string | undefined;
  groups?: string[] | undefined;   // local unix groups (jobs without ticket, leases)
  /** where the FQANs came from: a verified proxy, BLAH's list trusted by config, the VO alone, local groups */
  source: 'proxy' | 'blah' | 'vo' | 'local';
}

/** What the policy needs of a job: the requested tags and resource hints (a subset of JobRequest). */
export type Request = Pick<JobRequest, 'tags' | 'badTags' | 'memoryMinMB' | 'memoryMaxMB' | 'cpus'>;

export type Decision =
  | { allow: true; image: Image; cpus: number; memoryMB: number; queue?: string | undefined; rule: string; requested: boolean }
  | { allow: false; reason: string; rule?: string | undefined };

export interface PolicyInput {
  policy: Policy;
  images: readonly Image[];
  defaultQueue?: string | undefined;
}

function who(id: Identity): string {
  if (id.fqans[0]) return id.fqans[0];
  if (id.vo) return `VO ${id.vo}`;
  if (id.groups?.length) return `group ${id.groups.join(',')}`;
  return 'an unidentified user';
}

function voOf(fqan: string): string {
  return fqan.split('/')[1] ?? '';
}

/** True when the rule applies to this identity. */
export function ruleMatches(rule: Rule, id: Identity): boolean {
  if (rule.fqan !== undefined && id.fqans.some((f) => fqanMatches(rule.fqan!, f))) return true;
  if (rule.vo !== undefined && (id.vo === rule.vo || id.fqans.some((f) => voOf(f) === rule.vo))) return true;
  if (rule.group !== undefined && (id.groups ?? []).includes(rule.group)) return true;
  return false;
}

/** Requested image tags → catalog images. Tags that are neither catalog ids nor look like image tags are other
 * RTE requirements (software tags) and are not ours to judge. */
function requestedImages(tags: readonly string[], input: PolicyInput): { images: Image[]; unknown: string[] } {
  const prefix = input.policy.imageTagPrefix.toLowerCase();
  const images: Image[] = [];
  const unknown: string[] = [];
  for (const tag of tags) {
    const img = input.images.find((i) => i.id.toLowerCase() === tag.toLowerCase());
    if (img) {
      if (!images.includes(img)) images.push(img);
    } else if (prefix && tag.toLowerCase().startsWith(prefix)) {
      unknown.push(tag);
    }
  }
  return { images, unknown };
}

/** Decide which image (and how much of it) this job may have, or why not. Rules are ordered; the first rule
 * matching any of the user's FQANs (or VO, or group) decides. */
export function decide(req: Request, id: Identity, input: PolicyInput): Decision {
  const offered = input.images.map((i) => i.id).join(', ') || 'none';
  // A tag that is not a valid tag cannot be one of ours; dropping it would hand the job the default image.
  if (req.badTags && req.badTags.length > 0) {
    return { allow: false, reason: `image ${req.badTags.join(', ')} is not offered by this CE (an image tag is 1-100 characters of A-Z a-z 0-9 . _ + -; it offers: ${offered})` };
  }
  const { images: wanted, unknown } = requestedImages(req.tags, input);
  if (unknown.length > 0) {
    return { allow: false, reason: `image ${unknown.join(', ')} is not offered by this CE (it offers: ${offered})` };
  }
  if (wanted.length > 1) {
    return { allow: false, reason: `the job requests ${wanted.length} different images (${wanted.map((i) => i.id).join(', ')}); request exactly one` };
  }
  const rule = input.policy.rules.find((r) => ruleMatches(r, id));
  if (!rule) {
    return { allow: false, reason: `no rule of this site authorises ${who(id)}${wanted[0] ? ` for image ${wanted[0].id}` : ''}` };
  }
  let image: Image | undefined = wanted[0];
  const requested = image !== undefined;
  if (image) {
    if (!rule.images.includes('*') && !rule.images.includes(image.id)) {
      return { allow: false, rule: rule.name, reason: `${who(id)} is not authorised for image ${image.id} (rule ${rule.name} allows: ${rule.images.join(', ')})` };
    }
  } else {
    if (input.policy.noRequest === 'deny') {
      return { allow: false, rule: rule.name, reason: `the job requests no image and this site requires one (it offers: ${offered})` };
    }
    image = input.images.find((i) => i.id === rule.default);
    if (!image) {
      return { allow: false, rule: rule.name, reason: `the job requests no image and rule ${rule.name} has no default image (it offers: ${offered})` };
    }
  }
  const maxCpus = Math.min(image.cpus.max, rule.maxCpus ?? Infinity);
  const cpus = req.cpus ?? image.cpus.default;
  if (cpus < 1 || cpus > maxCpus) {
    return { allow: false, rule: rule.name, reason: `the job asks for ${cpus} cpus; image ${image.id} allows 1 to ${maxCpus}` };
  }
  const maxMem = Math.min(image.memoryMB.max, rule.maxMemoryMB ?? Infinity);
  let memoryMB = Math.max(image.memoryMB.default, req.memoryMinMB ?? 0);
  if (req.memoryMaxMB !== undefined) memoryMB = Math.min(memoryMB, req.memoryMaxMB);
  if (req.memoryMinMB !== undefined && req.memoryMaxMB !== undefined && req.memoryMinMB > req.memoryMaxMB) {
    return { allow: false, rule: rule.name, reason: `the job asks for at least ${req.memoryMinMB} MB and at most ${req.memoryMaxMB} MB of memory` };
  }
  if (memoryMB > maxMem) {
    return { allow: false, rule: rule.name, reason: `the job asks for ${memoryMB} MB of memory; image ${image.id} allows at most ${maxMem} MB` };
  }
  if (memoryMB < 64) {
    return { allow: false, rule: rule.name, reason: `the job allows at most ${memoryMB} MB of memory; a VM needs at least 64 MB` };
  }
  return { allow: true, image, cpus, memoryMB, queue: image.queue ?? input.defaultQueue, rule: rule.name, requested };
}
