import type { Identity } from '../policy/decide.js';
import type { JobRequest } from '../jdl/request.js';
import type { Trust } from '../config/types.js';
import { canonicalFqan } from '../voms/fqan.js';

/** Establish who (`host`: this CE, which an AC with targets must name) submitted the job: verified FQANs from the proxy when BLAH passed its path; else BLAH's FQAN
 * list, but only when the site says its CE verified it; else the VO alone. A proxy that fails verification is
 * an error (the caller denies): falling back to weaker evidence would let a bad proxy through. */
export async function resolveIdentity(req: JobRequest, trust: Trust, host: string, now: Date = new Date()): Promise<Identity> {
  if (req.proxyPath) {
    // Loaded on demand: DER and chain code is only needed on this branch.
    const { verifyProxyFile } = await import('../voms/index.js');
    const v = await verifyProxyFile(req.proxyPath, { vomsdir: trust.vomsdir, certdir: trust.certdir, now, host });
    return { vo: v.vo, fqans: v.fqans, dn: v.holderSubject, source: 'proxy' };
  }
  if (trust.blahFqansVerified && req.blahFqans.length > 0) {
    const fqans = req.blahFqans.map((f) => canonicalFqan(f));
    return { vo: fqans[0]!.split('/')[1], fqans, dn: req.subject, source: 'blah' };
  }
  return { vo: req.vo, fqans: [], dn: req.subject, source: 'vo' };
}

/** Why this identity may not have a ticket under the site's trust settings (undefined = it may): with
 * `trust.require_verified_proxy` only FQANs the filter verified from the proxy itself count. */
export function unverifiedRefusal(identity: Identity, trust: Pick<Trust, 'requireVerifiedProxy'>): string | undefined {
  if (!trust.requireVerifiedProxy || identity.source === 'proxy') return undefined;
  const had = identity.source === 'blah' ? 'BLAH\'s FQAN list' : identity.source === 'vo' ? 'the VO name alone' : 'local groups';
  return `this CE requires a verified VOMS proxy and none reached the filter (only ${had}): ` +
    'the CE must pass the job\'s proxy to the filter (blah_pass_submit_attributes: x509userproxy)';
}
