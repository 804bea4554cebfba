// The CA directory (/etc/grid-security/certificates style) and path building from a certificate to a trusted
// CA in it. Issuers are looked up by OpenSSL subject hash (`<hash>.0`, `.1`, …) as OpenSSL does; when a directory
// has no hashed file for a name we fall back to its `*.pem` files.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Certificate, basicConstraints, keyUsage, parseCertificate, signatureValid, withinDates } from './cert.js';
import { type Name, nameEquals, nameHash, nameToString } from './name.js';
import { parsePem } from './pem.js';
import { readBounded } from './files.js';
import { VomsError } from './errors.js';

const MAX_PEM_FILES = 2000;
const MAX_DEPTH = 8;

/** Trusted CA certificates of one directory, loaded lazily per issuer name. */
export class CaStore {
  private byHash = new Map<string, Certificate[]>();
  private pemFiles: Certificate[] | null = null;

  constructor(readonly certdir: string) {}

  /** Trusted certificates whose subject is `name`. */
  async withSubject(name: Name): Promise<Certificate[]> {
    const hash = nameHash(name);
    let certs = this.byHash.get(hash);
    if (!certs) {
      certs = [];
      for (let i = 0; i < 10; i++) {
        const file = join(this.certdir, `${hash}.${i}`); // hash is our own hex digest, never user text
        const buf = await readBounded(file);
        if (!buf) break;
        certs.push(...certsOf(buf, file));
      }
      this.byHash.set(hash, certs);
    }
    const hit = certs.filter((c) => nameEquals(c.subject, name));
    if (hit.length) return hit;
    return (await this.loadPemFiles()).filter((c) => nameEquals(c.subject, name));
  }

  private async loadPemFiles(): Promise<Certificate[]> {
    if (this.pemFiles) return this.pemFiles;
    this.pemFiles = [];
    let names: string[];
    try {
      names = (await readdir(this.certdir)).filter((n) => n.endsWith('.pem')).sort().slice(0, MAX_PEM_FILES);
    } catch {
      return this.pemFiles;
    }
    for (const n of names) {
      const file = join(this.certdir, n);
      try {
        const buf = await readBounded(file);
        if (buf) this.pemFiles.push(...certsOf(buf, file));
      } catch {
        // one broken file in a CA dir must not hide the others (OpenSSL skips them too)
      }
    }
    return this.pemFiles;
  }
}

function certsOf(buf: Buffer, file: string): Certificate[] {
  return parsePem(buf.toString('latin1'), file)
    .filter((b) => b.type === 'CERTIFICATE' || b.type === 'TRUSTED CERTIFICATE')
    .map((b, i) => parseCertificate(b.der, `${file} certificate ${i + 1}`));
}

/** May `ca` sign certificates? (cA=true, or a v1 self-signed root; keyCertSign if keyUsage is present) */
export function canSignCerts(ca: Certificate): boolean {
  const bc = basicConstraints(ca);
  if (bc ? !bc.ca : !(ca.version === 1 && nameEquals(ca.subject, ca.issuer))) return false;
  const ku = keyUsage(ca);
  return !ku || ku(5);
}

/** Verify that `cert` chains to a CA in `store` (through `intermediates` if needed) at `now`.
 * Throws VomsError(code) naming the link that failed. The caller checks `cert`'s own dates. */
export async function verifyToCa(cert: Certificate, intermediates: Certificate[], store: CaStore, now: Date,
  code: 'broken-proxy-chain' | 'untrusted-aa-chain'): Promise<Certificate[]> {
  const reasons: string[] = [];
  const path = await build(cert, intermediates, store, now, 0, new Set([cert]), reasons);
  if (path) return [cert, ...path];
  throw new VomsError(code, `${nameToString(cert.subject)} does not chain to a CA in ${store.certdir}: ${reasons[0] ?? 'no issuer found'}`);
}

async function build(cert: Certificate, intermediates: Certificate[], store: CaStore, now: Date, depth: number,
  used: Set<Certificate>, reasons: string[]): Promise<Certificate[] | null> {
  if (depth >= MAX_DEPTH) { reasons.push(`chain longer than ${MAX_DEPTH}`); return null; }
  const issuerName = nameToString(cert.issuer);
  const trusted = await store.withSubject(cert.issuer);
  for (const ca of trusted) {
    const why = linkProblem(cert, ca, now);
    if (!why) return [ca];
    reasons.push(why);
  }
  for (const mid of intermediates) {
    if (used.has(mid) || !nameEquals(mid.subject, cert.issuer)) continue;
    const why = linkProblem(cert, mid, now);
    if (why) { reasons.push(why); continue; }
    used.add(mid);
    const rest = await build(mid, intermediates, store, now, depth + 1, used, reasons);
    used.delete(mid);
    if (rest) return [mid, ...rest];
  }
  if (trusted.length === 0) reasons.push(`no CA certificate for issuer ${issuerName} in ${store.certdir}`);
  return null;
}

function linkProblem(cert: Certificate, issuer: Certificate, now: Date): string | null {
  if (!signatureValid(cert.sigAlg, cert.tbs, cert.signature, issuer.spki, cert.label)) {
    return `the signature on ${nameToString(cert.subject)} does not verify with the key of ${issuer.label}`;
  }
  if (!canSignCerts(issuer)) return `${issuer.label} (${nameToString(issuer.subject)}) is not a CA certificate`;
  if (!withinDates(issuer, now)) return `${issuer.label} (${nameToString(issuer.subject)}) is not valid now (${issuer.notBefore.toISOString()} – ${issuer.notAfter.toISOString()})`;
  return null;
}
