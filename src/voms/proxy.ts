// A proxy file: its PEM blocks, the proxy certificates (leaf first), the user's end-entity certificate (EEC), and
// the verification of that chain: RFC 3820 proxies, legacy Globus `CN=proxy`/`CN=limited proxy`, and GT3 draft
// proxies (OID 1.3.6.1.4.1.3536.1.222). Each proxy is signed by the certificate after it, its subject is its
// issuer plus one CN, and the EEC chains to the CA dir.
import {
  type Certificate, OID, basicConstraints, findExtension, keyUsage, parseCertificate, signatureValid, withinDates,
} from './cert.js';
import { Cls, Tag, isContext, malformed, parseInner, readOid, readSmallInt, seq } from './der.js';
import { VomsError } from './errors.js';
import { extraCn, nameEquals, nameToString } from './name.js';
import { parsePem } from './pem.js';
import { type CaStore, verifyToCa } from './trust.js';

export type ProxyKind = 'rfc' | 'gt3' | 'legacy' | 'legacy-limited';

export interface ProxyChain {
  source: string;
  proxies: Certificate[];   // leaf first
  kinds: ProxyKind[];       // kinds[i] of proxies[i]
  eec: Certificate;
  extra: Certificate[];     // certificates after the EEC (intermediate CAs a user may ship)
  hasKey: boolean;
}

const MAX_PROXY_DEPTH = 16;
const LIMITED_POLICY = '1.3.6.1.4.1.3536.1.1.1.9';

/** Extensions a certificate in a proxy chain may mark critical. */
const KNOWN_CRITICAL = new Set<string>([OID.basicConstraints, OID.keyUsage, OID.extKeyUsage, OID.proxyCertInfoRfc,
  OID.proxyCertInfoGt3, OID.certificatePolicies, OID.subjectAltName, OID.nameConstraints, OID.policyConstraints,
  OID.inhibitAnyPolicy, OID.authorityKeyId, OID.subjectKeyId, OID.issuerAltName]);

/** Parse a proxy file's PEM text and work out which certificate is what. Structure only: no signatures. */
export function readProxyPem(pem: string | Buffer, source: string): ProxyChain {
  const text = typeof pem === 'string' ? pem : pem.toString('latin1');
  const blocks = parsePem(text, source);
  const certs = blocks.filter((b) => b.type === 'CERTIFICATE')
    .map((b, i) => parseCertificate(b.der, `certificate ${i + 1} of ${source} (line ${b.line})`));
  const hasKey = blocks.some((b) => b.type.endsWith('PRIVATE KEY'));
  const other = blocks.find((b) => b.type !== 'CERTIFICATE' && !b.type.endsWith('PRIVATE KEY'));
  if (other) throw new VomsError('malformed', `${source} line ${other.line}: unexpected '${other.type}' block in a proxy file`);
  if (certs.length === 0) throw new VomsError('malformed', `${source}: no certificate in the file`);
  const proxies: Certificate[] = [];
  const kinds: ProxyKind[] = [];
  let i = 0;
  for (; i < certs.length; i++) {
    const kind = proxyKind(certs[i]!);
    if (!kind) break;
    if (proxies.length >= MAX_PROXY_DEPTH) throw new VomsError('broken-proxy-chain', `${source}: more than ${MAX_PROXY_DEPTH} proxy levels`);
    proxies.push(certs[i]!);
    kinds.push(kind);
    const next = certs[i + 1];
    if (!next) throw new VomsError('broken-proxy-chain', `${certs[i]!.label}: its issuer ${nameToString(certs[i]!.issuer)} is not in the file`);
    if (!nameEquals(next.subject, certs[i]!.issuer)) {
      throw new VomsError('broken-proxy-chain', `${certs[i]!.label}: issued by ${nameToString(certs[i]!.issuer)} but the next certificate is ${nameToString(next.subject)}`);
    }
  }
  const eec = certs[i]!;
  return { source, proxies, kinds, eec, extra: certs.slice(i + 1), hasKey };
}

/** What kind of proxy `c` is, or null for an ordinary (end-entity or CA) certificate. */
export function proxyKind(c: Certificate): ProxyKind | null {
  const rfc = findExtension(c, OID.proxyCertInfoRfc);
  const gt3 = findExtension(c, OID.proxyCertInfoGt3);
  const cn = extraCn(c.subject, c.issuer);
  if (rfc || gt3) {
    if (rfc && gt3) throw new VomsError('broken-proxy-chain', `${c.label}: carries both RFC 3820 and GT3 proxy extensions`);
    if (cn === null) throw new VomsError('broken-proxy-chain', `${c.label}: proxy subject ${nameToString(c.subject)} is not its issuer ${nameToString(c.issuer)} plus one CN`);
    return rfc ? 'rfc' : 'gt3';
  }
  if (cn === 'proxy') return 'legacy';
  if (cn === 'limited proxy') return 'legacy-limited';
  return null;
}

interface ProxyInfo { pathLen?: number; limited: boolean }

/** Decode the RFC 3820 or GT3 ProxyCertInfo (path length, policy language). */
export function proxyInfo(c: Certificate, kind: ProxyKind): ProxyInfo {
  if (kind === 'legacy') return { limited: false };
  if (kind === 'legacy-limited') return { limited: true };
  const ext = findExtension(c, kind === 'rfc' ? OID.proxyCertInfoRfc : OID.proxyCertInfoGt3)!;
  const parts = seq(parseInner(ext.value, `ProxyCertInfo of ${c.label}`), 'ProxyCertInfo');
  let pathLen: number | undefined;
  let policy: string | undefined;
  for (const p of parts) {
    if (p.cls === Cls.Universal && p.tag === Tag.Integer && pathLen === undefined && policy === undefined) {
      pathLen = readSmallInt(p, 'pCPathLenConstraint');
    } else if (p.cls === Cls.Universal && p.tag === Tag.Sequence && policy === undefined) {
      policy = readOid(p.children[0], 'policyLanguage', p);
    } else if (isContext(p, 1) && p.constructed && pathLen === undefined && kind === 'gt3') {
      pathLen = readSmallInt(p.children[0], 'pCPathLenConstraint', p); // GT3: [1] EXPLICIT INTEGER after the policy
    } else throw malformed(p.label, p.offset, 'unexpected field in ProxyCertInfo');
  }
  if (!policy) throw malformed(ext.value.label, ext.value.offset, 'ProxyCertInfo without a proxy policy');
  return pathLen === undefined ? { limited: policy === LIMITED_POLICY } : { pathLen, limited: policy === LIMITED_POLICY };
}

/** Throw VomsError('unknown-critical-extension') if `c` has a critical extension we do not understand. */
export function checkCriticalExtensions(c: Certificate): void {
  for (const e of c.extensions) {
    if (e.critical && !KNOWN_CRITICAL.has(e.oid)) {
      throw new VomsError('unknown-critical-extension', `${c.label}: unknown critical extension ${e.oid}`);
    }
  }
}

/** Verify the whole chain at `now`: signatures, names, dates, proxy rules, and the EEC up to a CA in `store`. */
export async function verifyProxyChain(chain: ProxyChain, store: CaStore, now: Date): Promise<void> {
  const broken = (msg: string) => new VomsError('broken-proxy-chain', msg);
  const family = (k: ProxyKind) => (k === 'legacy-limited' ? 'legacy' : k);
  const all = [...chain.proxies, chain.eec];
  for (const c of all) checkCriticalExtensions(c);
  for (let i = chain.proxies.length - 1; i >= 0; i--) {
    const p = chain.proxies[i]!;
    const kind = chain.kinds[i]!;
    const issuer = all[i + 1]!;
    if (!signatureValid(p.sigAlg, p.tbs, p.signature, issuer.spki, p.label)) {
      throw broken(`${p.label}: signature does not verify with the key of ${issuer.label} (${nameToString(issuer.subject)})`);
    }
    if (!withinDates(p, now)) {
      throw broken(`${p.label}: not valid at ${now.toISOString()} (valid ${p.notBefore.toISOString()} – ${p.notAfter.toISOString()})`);
    }
    if (basicConstraints(p)?.ca) throw broken(`${p.label}: a proxy must not be a CA certificate`);
    const ku = keyUsage(issuer);
    if (ku && !ku(0)) throw broken(`${issuer.label}: keyUsage lacks digitalSignature, it cannot sign a proxy`);
    if (i + 1 < chain.proxies.length) {
      const parentKind = chain.kinds[i + 1]!;
      if (family(parentKind) !== family(kind)) throw broken(`${p.label}: a ${kind} proxy under a ${parentKind} proxy`);
      if (parentKind === 'legacy-limited' && kind !== 'legacy-limited') throw broken(`${p.label}: a full proxy under a limited proxy`);
    }
    const info = proxyInfo(p, kind);
    if (info.pathLen !== undefined && i > info.pathLen) {
      throw broken(`${p.label}: ${i} proxies below it, its path length constraint allows ${info.pathLen}`);
    }
  }
  const eec = chain.eec;
  if (!withinDates(eec, now)) {
    throw broken(`${eec.label}: the user certificate is not valid at ${now.toISOString()} (valid ${eec.notBefore.toISOString()} – ${eec.notAfter.toISOString()})`);
  }
  if (chain.proxies.length > 0 && basicConstraints(eec)?.ca) throw broken(`${eec.label}: the user certificate is a CA certificate`);
  await verifyToCa(eec, chain.extra, store, now, 'broken-proxy-chain');
}
