/** The prologue's decision (pure): from the job script's wnod line, the verified ticket claims and the site config
 * to "run in a VM of image X with these limits", "run bare" or a refusal with the reason the user will read. */
import type { SiteConfig, Image } from '../config/types.js';
import type { TicketClaims } from '../ticket/index.js';
import type { JobRecord } from './jobstate.js';
import { Refusal } from './outcome.js';

export type Decision =
  | { mode: 'vm'; image: Image; record: NonNullable<JobRecord['decision']>; claims?: TicketClaims }
  | { mode: 'bare' };

/** Decide for a job whose script carries no ticket, by `policy.no_ticket` and the job's unix group. */
export function decideWithoutTicket(cfg: SiteConfig, group: string): Decision {
  switch (cfg.policy.noTicket) {
    case 'bare':
      return { mode: 'bare' };
    case 'group-default': {
      const rule = cfg.policy.rules.find((r) => r.group === group);
      if (!rule?.default) throw new Refusal('no-ticket', `this job has no wnod ticket and no image is configured for group ${group}`, { group });
      const image = cfg.images.find((i) => i.id === rule.default);
      if (!image) throw new Refusal('no-ticket', `the default image of group ${group} is not in the catalog`, { group, image: rule.default });
      const cpus = Math.min(image.cpus.default, rule.maxCpus ?? Infinity);
      const memoryMB = Math.min(image.memoryMB.default, rule.maxMemoryMB ?? Infinity);
      return { mode: 'vm', image, record: { image: image.id, digest: image.digest, dn: '', fqan: '', vo: '', cpus, memoryMB, rule: rule.name } };
    }
    case 'refuse':
    default:
      throw new Refusal('no-ticket', 'this job has no wnod ticket: submit it through the grid CE (its submit filter adds the ticket)');
  }
}

/** Decide for a job with verified claims: the account must be the job's user and the image must still match. */
export function decideWithTicket(cfg: SiteConfig, claims: TicketClaims, jobUser: string): Decision {
  if (claims.account !== jobUser) {
    throw new Refusal('wrong-account', `the wnod ticket was issued to another account than ${jobUser}`, { ticketAccount: claims.account });
  }
  const image = cfg.images.find((i) => i.id === claims.image);
  if (!image) throw new Refusal('stale-image', `image ${claims.image} is no longer offered by this site`, { image: claims.image });
  if (image.digest !== claims.digest) {
    throw new Refusal('stale-image', `image ${claims.image} changed since the job was submitted; resubmit the job`, { ticketDigest: claims.digest, catalogDigest: image.digest });
  }
  // The ticket's limits were checked by the filter against the policy; the image bounds are the node's own line.
  if (claims.cpus < 1 || claims.cpus > image.cpus.max || claims.memoryMB < 1 || claims.memoryMB > image.memoryMB.max) {
    throw new Refusal('bad-limits', `the ticket asks for ${claims.cpus} cpus / ${claims.memoryMB} MB, above what image ${image.id} allows here`, { cpus: claims.cpus, memoryMB: claims.memoryMB });
  }
  return {
    mode: 'vm', image, claims,
    record: { image: image.id, digest: image.digest, dn: claims.dn, fqan: claims.fqan, vo: claims.vo, cpus: claims.cpus, memoryMB: claims.memoryMB, rule: claims.rule },
  };
}

/** The VM's shape for a job whose LRM enforces what it holds (pure): what the job holds where the LRM says it (a VM
 * bigger than the allocation would overcommit the node; a smaller one would waste it), never above the image's
 * and the rule's maxima, the decision's own value where the LRM says nothing. */
export function fitToHolds(cfg: Pick<SiteConfig, 'images' | 'policy'>, record: NonNullable<JobRecord['decision']>, holds: { cpus?: number | undefined; memoryMB?: number | undefined }): { cpus: number; memoryMB: number } {
  const image = cfg.images.find((i) => i.id === record.image);
  const rule = cfg.policy.rules.find((r) => r.name === record.rule);
  const cpusMax = Math.min(image?.cpus.max ?? record.cpus, rule?.maxCpus ?? Infinity);
  const memMax = Math.min(image?.memoryMB.max ?? record.memoryMB, rule?.maxMemoryMB ?? Infinity);
  const cpus = holds.cpus !== undefined && holds.cpus >= 1 ? holds.cpus : record.cpus;
  const memoryMB = holds.memoryMB !== undefined && holds.memoryMB >= 1 ? holds.memoryMB : record.memoryMB;
  return { cpus: Math.max(1, Math.min(cpus, cpusMax)), memoryMB: Math.max(1, Math.min(memoryMB, memMax)) };
}

/** Why a ticket does not fit the job that carries it (pure), or undefined: the job holds less than the ticket's
 * VM (where the LRM says what it holds). The CE's filter asks the LRM for exactly the ticket's shape, so a
 * mismatch is a ticket copied into another job — which would get a VM bigger than its allocation. */
export function ticketShapeProblem(claims: Pick<TicketClaims, 'cpus' | 'memoryMB'>, holds: { cpus?: number | undefined; memoryMB?: number | undefined }): string | undefined {
  if (holds.cpus !== undefined && holds.cpus < claims.cpus) return `${claims.cpus} cpus and this job holds ${holds.cpus}`;
  if (holds.memoryMB !== undefined && holds.memoryMB < claims.memoryMB) return `${claims.memoryMB} MB of memory and this job holds ${holds.memoryMB} MB`;
  return undefined;
}
