// The verification of a proxy's VOMS identity, as DESIGN A4 lays it out (libvomsapi's checks, then stricter):
// AA via .lsc + embedded chain to the CA dir (or legacy .pem), the signature over the original acinfo bytes,
// holder, dates ±5 min, required and critical extensions, targets, FQANs inside the VO, then the proxy chain.
import { type Certificate, OID, signatureValid, withinDates } from './cert.js';
import { type AttributeCertificate, decodeAcExtension, findAcExtension, sameSerial } from './ac.js';
import { VomsError } from './errors.js';
import { canonicalFqan, fqanInVo } from './fqan.js';
import { readBounded } from './files.js';
import { nameEquals, nameToString, normaliseDnString } from './name.js';
import { type ProxyChain, readProxyPem, verifyProxyChain } from './proxy.js';
import { CaStore, verifyToCa } from './trust.js';
import { legacyAaCerts, readLsc } from './vomsdir.js';
import { printable } from './der.js';

export interface VomsIdentity {
  vo: string;
  fqans: string[];        // canonical long form, in AC order
  primary: string;
  issuer: string;         // AA subject, OpenSSL /C=../CN=.. form
  notBefore: Date;
  notAfter: Date;
  holderSubject: string;  // EEC subject
  holderIssuer: string;
}

export interface VerifyOptions {
  vomsdir: string;
  certdir: string;
  now?: Date;
  host?: string;          // this host, for ACs with targets
}

export const MAX_PROXY_FILE = 1024 * 1024;
const SKEW_MS = 5 * 60 * 1000;
const KNOWN_AC_EXTENSIONS = new Set<string>([OID.vomsAaCerts, OID.noRevAvail, OID.authorityKeyId, OID.targetInformation,
  OID.vomsTags]);

/** Read a proxy file (at most 1 MiB) and verify its VOMS identity; throws VomsError with the reason. */
export async function verifyProxyFile(path: string, opts: VerifyOptions): Promise<VomsIdentity> {
  const buf = await readBounded(path, MAX_PROXY_FILE);
  if (!buf) throw new VomsError('unreadable', `proxy file ${path} does not exist`);
  return verifyProxyPem(buf, opts, path);
}

/** Verify the VOMS identity of a proxy given as PEM text; `source` names it in messages. */
export async function verifyProxyPem(pem: string | Buffer, opts: VerifyOptions, source = 'proxy'): Promise<VomsIdentity> {
  if (pem.length > MAX_PROXY_FILE) throw new VomsError('malformed', `${source}: more than ${MAX_PROXY_FILE} bytes`);
  const now = opts.now ?? new Date();
  const chain = readProxyPem(pem, source);
  const found = findAcExtension(chain.proxies);
  if (!found) throw new VomsError('no-ac', `${source}: no VOMS attribute certificate in the proxy (a plain grid proxy?)`);
  // The first AC carries the VO and the primary FQAN; further ACs (other VOs) are not used, so not trusted either.
  const ac = decodeAcExtension(found.ext, found.cert.label)[0]!;
  const store = new CaStore(opts.certdir);
  const aa = await trustedAa(ac, opts, store, now);
  checkHolder(ac, chain);
  checkAcBody(ac, now, opts.host);
  const fqans = ac.fqans.map((f) => {
    let c: string;
    try {
      c = canonicalFqan(f);
    } catch (err) {
      throw new VomsError('malformed', `${ac.label}: ${(err as Error).message}`);
    }
    if (!fqanInVo(c, ac.vo)) throw new VomsError('fqan-outside-vo', `${ac.label}: FQAN ${printable(f)} is outside the AC's VO '${ac.vo}'`);
    return c;
  });
  await verifyProxyChain(chain, store, now);
  return {
    vo: ac.vo, fqans, primary: fqans[0]!, issuer: nameToString(aa.subject), notBefore: ac.notBefore, notAfter: ac.notAfter,
    holderSubject: nameToString(chain.eec.subject), holderIssuer: nameToString(chain.eec.issuer),
  };
}

/** Find the AA certificate that vouches for `ac` and check its signature; returns the signer. */
async function trustedAa(ac: AttributeCertificate, opts: VerifyOptions, store: CaStore, now: Date): Promise<Certificate> {
  const issuerDn = nameToString(ac.issuer);
  const lsc = await readLsc(opts.vomsdir, ac.vo, ac.host);
  if (lsc) {
    const signer = ac.aaCerts[0];
    if (!signer) throw new VomsError('unknown-aa', `${ac.label}: no embedded AA certificate to check against ${lsc.file}`);
    if (!lsc.chains.some((lines) => lscMatches(lines, ac.aaCerts))) {
      throw new VomsError('unknown-aa', `${ac.label}: AA ${nameToString(signer.subject)} (issuer ${nameToString(signer.issuer)}) is not listed in ${lsc.file}`);
    }
    if (!nameEquals(signer.subject, ac.issuer)) {
      throw new VomsError('unknown-aa', `${ac.label}: AC issuer ${issuerDn} is not the embedded AA certificate ${nameToString(signer.subject)}`);
    }
    await checkAaCert(signer, ac.aaCerts.slice(1), store, now);
    if (!signatureValid(ac.sigAlg, ac.acinfo, ac.signature, signer.spki, signer.label)) {
      throw new VomsError('bad-ac-signature', `${ac.label}: signature does not verify with the key of AA ${nameToString(signer.subject)} (algorithm ${ac.sigAlg})`);
    }
    return signer;
  }
  const legacy = (await legacyAaCerts(opts.vomsdir, ac.vo)).filter((c) => nameEquals(c.subject, ac.issuer));
  if (legacy.length === 0) {
    throw new VomsError('unknown-aa', `${ac.label}: AA ${issuerDn} of VO '${ac.vo}' is unknown: no ${ac.vo}/${ac.host}.lsc and no matching ${ac.vo}/*.pem in ${opts.vomsdir}`);
  }
  const signer = legacy.find((c) => signatureValid(ac.sigAlg, ac.acinfo, ac.signature, c.spki, c.label));
  if (!signer) throw new VomsError('bad-ac-signature', `${ac.label}: signature does not verify with the key of ${legacy.map((c) => c.label).join(', ')}`);
  await checkAaCert(signer, [], store, now);
  return signer;
}

async function checkAaCert(aa: Certificate, intermediates: Certificate[], store: CaStore, now: Date): Promise<void> {
  if (!withinDates(aa, now)) {
    throw new VomsError('untrusted-aa-chain', `AA certificate ${nameToString(aa.subject)} is not valid at ${now.toISOString()} (valid ${aa.notBefore.toISOString()} – ${aa.notAfter.toISOString()})`);
  }
  await verifyToCa(aa, intermediates, store, now, 'untrusted-aa-chain');
}

/** .lsc lines are subject(AA), issuer(AA)=subject(next), …: compare each embedded certificate's pair. */
function lscMatches(lines: string[], certs: Certificate[]): boolean {
  const n = Math.min(lines.length - 1, certs.length);
  for (let j = 0; j < n; j++) {
    const c = certs[j]!;
    if (normaliseDnString(nameToString(c.subject)) !== normaliseDnString(lines[j]!)) return false;
    if (normaliseDnString(nameToString(c.issuer)) !== normaliseDnString(lines[j + 1]!)) return false;
  }
  return n > 0;
}

/** The AC must be issued to this proxy's EEC: holder serial == EEC serial, holder name == EEC subject or issuer. */
function checkHolder(ac: AttributeCertificate, chain: ProxyChain): void {
  const eec = chain.eec;
  if (!sameSerial(ac.holderSerial, eec.serial)) {
    throw new VomsError('ac-holder-mismatch', `${ac.label}: issued to certificate serial ${ac.holderSerial.toString('hex')}, the proxy's user certificate has serial ${eec.serial.toString('hex')}`);
  }
  if (!ac.holderNames.some((n) => nameEquals(n, eec.subject) || nameEquals(n, eec.issuer))) {
    const names = ac.holderNames.map(nameToString).join(', ') || '(no directory name)';
    throw new VomsError('ac-holder-mismatch', `${ac.label}: issued to ${names}, not to ${nameToString(eec.subject)}`);
  }
}

/** Dates (±5 min), required and critical extensions, targets. */
export function checkAcBody(ac: AttributeCertificate, now: Date, host?: string): void {
  if (!withinDates(ac, now, SKEW_MS)) {
    const when = now.getTime() < ac.notBefore.getTime() ? 'not yet valid' : 'expired';
    throw new VomsError('expired-ac', `${ac.label}: ${when} at ${now.toISOString()} (valid ${ac.notBefore.toISOString()} – ${ac.notAfter.toISOString()}, ±5 min)`);
  }
  for (const e of ac.extensions) {
    if (e.critical && !KNOWN_AC_EXTENSIONS.has(e.oid)) throw new VomsError('unknown-critical-extension', `${ac.label}: unknown critical AC extension ${e.oid}`);
  }
  if (!ac.extensions.some((e) => e.oid === OID.noRevAvail)) throw new VomsError('malformed', `${ac.label}: required extension noRevAvail (2.5.29.56) is missing`);
  if (!ac.extensions.some((e) => e.oid === OID.authorityKeyId)) throw new VomsError('malformed', `${ac.label}: required extension authorityKeyIdentifier (2.5.29.35) is missing`);
  if (ac.targets !== null) {
    const h = host?.toLowerCase();
    if (!h || !ac.targets.some((t) => t.toLowerCase() === h)) {
      throw new VomsError('ac-target-mismatch', `${ac.label}: the AC is only for ${ac.targets.map(printable).join(', ') || '(no target)'}${h ? `, not ${h}` : '; no host given to check against'}`);
    }
  }
}
