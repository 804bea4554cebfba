// X.509 certificates read with our strict DER reader: the fields node:crypto's X509Certificate does not give us
// exactly (raw names for canonical comparison, every extension with its criticality, the TBS bytes), and
// signature checks with node:crypto over the ORIGINAL bytes.
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import {
  type DerNode, Cls, Tag, encoded, expect, isContext, malformed, parseDer, parseInner, readBits, readBitStringBytes,
  readBoolean, readIntegerBytes, readOctets, readOid, readSmallInt, readTime, seq,
} from './der.js';
import { type Name, parseName, nameToString } from './name.js';
import { VomsError } from './errors.js';

export const OID = {
  basicConstraints: '2.5.29.19', keyUsage: '2.5.29.15', extKeyUsage: '2.5.29.37', subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35', certificatePolicies: '2.5.29.32', subjectAltName: '2.5.29.17', issuerAltName: '2.5.29.18',
  nameConstraints: '2.5.29.30', policyConstraints: '2.5.29.36', inhibitAnyPolicy: '2.5.29.54', crlDistribution: '2.5.29.31',
  noRevAvail: '2.5.29.56', targetInformation: '2.5.29.55',
  proxyCertInfoRfc: '1.3.6.1.5.5.7.1.14', proxyCertInfoGt3: '1.3.6.1.4.1.3536.1.222',
  vomsAcSeq: '1.3.6.1.4.1.8005.100.100.5', vomsFqans: '1.3.6.1.4.1.8005.100.100.4',
  vomsAaCerts: '1.3.6.1.4.1.8005.100.100.10', vomsTags: '1.3.6.1.4.1.8005.100.100.11',
} as const;

export interface Extension {
  oid: string;
  critical: boolean;
  value: DerNode; // the OCTET STRING node
}

export interface Certificate {
  label: string;
  der: Buffer;
  tbs: Buffer;            // original TBSCertificate bytes (what the signature covers)
  version: number;        // 1, 2 or 3
  serial: Buffer;         // INTEGER content bytes
  sigAlg: string;         // OID
  signature: Buffer;
  issuer: Name;
  subject: Name;
  notBefore: Date;
  notAfter: Date;
  spki: Buffer;           // SubjectPublicKeyInfo DER
  extensions: Extension[];
}

/** Parse one DER certificate; `label` names it in error messages (e.g. "certificate 2 of /tmp/x509up"). */
export function parseCertificate(der: Buffer, label: string): Certificate {
  const root = parseDer(der, { label });
  const [tbsNode, algNode, sigNode, ...rest] = seq(root, 'Certificate');
  if (rest.length) throw malformed(label, rest[0]!.offset, 'extra fields after the signature');
  const f = seq(tbsNode, 'TBSCertificate', root);
  let i = 0;
  let version = 1;
  if (f[0] && isContext(f[0], 0)) {
    const [v] = f[0].children;
    version = readSmallInt(v, 'version', f[0]) + 1;
    if (version < 2 || version > 3 || f[0].children.length !== 1) throw malformed(label, f[0].offset, `unsupported version ${version}`);
    i++;
  }
  const serial = readIntegerBytes(f[i++], 'serialNumber', tbsNode);
  const innerAlg = readAlgorithm(f[i++], 'signature algorithm', tbsNode!);
  const issuer = parseName(f[i++], 'issuer', tbsNode);
  const validity = seq(f[i++], 'validity', tbsNode);
  if (validity.length !== 2) throw malformed(label, tbsNode!.offset, 'validity needs notBefore and notAfter');
  const notBefore = readTime(validity[0], 'notBefore');
  const notAfter = readTime(validity[1], 'notAfter');
  const subject = parseName(f[i++], 'subject', tbsNode);
  const spkiNode = expect(f[i++], Cls.Universal, Tag.Sequence, 'subjectPublicKeyInfo', tbsNode);
  const extensions: Extension[] = [];
  for (; i < f.length; i++) {
    const n = f[i]!;
    if (isContext(n, 1) || isContext(n, 2)) continue; // issuer/subject unique IDs
    if (isContext(n, 3) && n.constructed) {
      if (version !== 3) throw malformed(label, n.offset, 'extensions in a version 1/2 certificate');
      extensions.push(...parseExtensions(n.children[0], 'certificate extensions', n));
      continue;
    }
    throw malformed(label, n.offset, 'unexpected field in TBSCertificate');
  }
  const outerAlg = readAlgorithm(algNode, 'signatureAlgorithm', root);
  if (outerAlg !== innerAlg) throw malformed(label, algNode!.offset, 'signatureAlgorithm differs from the TBS signature field');
  return {
    label, der, tbs: encoded(tbsNode!), version, serial, sigAlg: outerAlg,
    signature: readBitStringBytes(sigNode, 'signatureValue', root),
    issuer, subject, notBefore, notAfter, spki: encoded(spkiNode), extensions,
  };
}

/** Parse `Extensions ::= SEQUENCE OF Extension`; duplicates are malformed. */
export function parseExtensions(n: DerNode | undefined, what: string, parent?: DerNode): Extension[] {
  const out: Extension[] = [];
  const seen = new Set<string>();
  for (const e of seq(n, what, parent)) {
    const parts = seq(e, 'extension');
    const oid = readOid(parts[0], 'extension id', e);
    let critical = false;
    let k = 1;
    if (parts[k] && parts[k]!.cls === Cls.Universal && parts[k]!.tag === Tag.Boolean) critical = readBoolean(parts[k++], 'critical');
    const value = expect(parts[k++], Cls.Universal, Tag.OctetString, `value of extension ${oid}`, e);
    if (k !== parts.length) throw malformed(e.label, e.offset, `extension ${oid} has extra fields`);
    if (seen.has(oid)) throw malformed(e.label, e.offset, `extension ${oid} appears twice`);
    seen.add(oid);
    out.push({ oid, critical, value });
  }
  return out;
}

/** An AlgorithmIdentifier's OID (parameters must be absent or NULL for the algorithms we accept). */
export function readAlgorithm(n: DerNode | undefined, what: string, parent: DerNode): string {
  const parts = seq(n, what, parent);
  const oid = readOid(parts[0], `${what} OID`, n);
  if (parts.length > 2) throw malformed(n!.label, n!.offset, `${what} has extra fields`);
  return oid;
}

export function findExtension(c: { extensions: Extension[] }, oid: string): Extension | undefined {
  return c.extensions.find((e) => e.oid === oid);
}

/** basicConstraints: { ca, pathLen } or null when absent. */
export function basicConstraints(c: Certificate): { ca: boolean; pathLen?: number } | null {
  const e = findExtension(c, OID.basicConstraints);
  if (!e) return null;
  const parts = seq(parseInner(e.value), 'basicConstraints');
  let ca = false;
  let k = 0;
  if (parts[k]?.tag === Tag.Boolean && parts[k]!.cls === Cls.Universal) ca = readBoolean(parts[k++], 'cA');
  const pathLen = parts[k] ? readSmallInt(parts[k++], 'pathLenConstraint') : undefined;
  if (k !== parts.length) throw malformed(c.label, e.value.offset, 'basicConstraints has extra fields');
  return pathLen === undefined ? { ca } : { ca, pathLen };
}

/** keyUsage bit test, or null when the extension is absent (bit 0 digitalSignature, 5 keyCertSign). */
export function keyUsage(c: Certificate): ((bit: number) => boolean) | null {
  const e = findExtension(c, OID.keyUsage);
  return e ? readBits(parseInner(e.value), 'keyUsage') : null;
}

// signature algorithm OID → node:crypto digest name (null: the key type implies it, e.g. Ed25519)
const SIG_ALGS: Record<string, string | null> = {
  '1.2.840.113549.1.1.4': 'md5', '1.2.840.113549.1.1.5': 'sha1', '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.113549.1.1.11': 'sha256', '1.2.840.113549.1.1.12': 'sha384', '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.1': 'sha1', '1.2.840.10045.4.3.1': 'sha224', '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384', '1.2.840.10045.4.3.4': 'sha512', '1.3.101.112': null,
};

const keyCache = new WeakMap<Buffer, KeyObject>();

/** The public key of a SubjectPublicKeyInfo, parsed once. */
export function publicKeyOf(spki: Buffer, label: string): KeyObject {
  let k = keyCache.get(spki);
  if (!k) {
    try {
      k = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    } catch (err) {
      throw new VomsError('malformed', `${label}: unusable public key (${(err as Error).message})`);
    }
    keyCache.set(spki, k);
  }
  return k;
}

/** Check a signature over the original `data` bytes with the key in `spki`. False on mismatch or unknown algorithm. */
export function signatureValid(sigAlg: string, data: Buffer, signature: Buffer, spki: Buffer, label: string): boolean {
  if (!(sigAlg in SIG_ALGS)) return false;
  const key = publicKeyOf(spki, label);
  try {
    return cryptoVerify(SIG_ALGS[sigAlg] ?? null, data, key, signature);
  } catch {
    return false; // wrong key type for the algorithm, garbage signature
  }
}

/** Is the certificate valid at `now` (± skewMs)? */
export function withinDates(c: { notBefore: Date; notAfter: Date }, now: Date, skewMs = 0): boolean {
  const t = now.getTime();
  return c.notBefore.getTime() - skewMs <= t && t <= c.notAfter.getTime() + skewMs;
}

/** Short description for messages: subject DN. */
export function describeCert(c: Certificate): string {
  return `${c.label} (${nameToString(c.subject)})`;
}

/** Read a BIT STRING-free SEQUENCE of certificates (VOMS embedded AA chain). */
export function parseCertificateList(n: DerNode | undefined, label: string): Certificate[] {
  return seq(n, 'certificate list').map((c, i) => parseCertificate(Buffer.from(encoded(c)), `${label} certificate ${i + 1}`));
}

export { readOctets };
