// VOMS attribute certificates (RFC 5755 + the VOMS profile): found in the extension 1.3.6.1.4.1.8005.100.100.5 of
// the leaf proxy or, for delegated proxies, a parent; decoded strictly, keeping the ORIGINAL acinfo bytes for the
// signature check (a re-encoding could hide a tampered byte or break a valid signature).
import {
  type Certificate, type Extension, OID, findExtension, parseCertificateList, parseExtensions, readAlgorithm,
} from './cert.js';
import {
  type DerNode, Cls, Tag, contents, encoded, expect, isContext, malformed, parseInner, readBitStringBytes,
  readIntegerBytes, readOctets, readOid, readSmallInt, readString, readTime, seq, printable, integerContents,
} from './der.js';
import { type Name, parseName } from './name.js';

const MAX_ACS = 16;
const MAX_FQANS = 256;

export interface AttributeCertificate {
  label: string;
  acinfo: Buffer;            // original AttributeCertificateInfo DER: what the AA signed
  sigAlg: string;
  signature: Buffer;
  holderSerial: Buffer;      // INTEGER content bytes of the holder certificate's serial
  holderNames: Name[];       // directoryName entries of the holder's baseCertificateID issuer
  issuer: Name;              // the AA
  serial: Buffer;
  notBefore: Date;
  notAfter: Date;
  policyAuthority: string;   // "<vo>://<host>:<port>"
  vo: string;
  host: string;
  port: number;
  fqans: string[];           // as written in the AC (not yet canonical)
  extensions: Extension[];
  aaCerts: Certificate[];    // embedded AA chain (element 0 = signer); empty if the extension is absent
  targets: string[] | null;  // target names, null when the extension is absent
}

/** The first certificate, leaf upwards, that carries VOMS ACs; undefined when none does. */
export function findAcExtension(proxiesLeafFirst: Certificate[]): { cert: Certificate; ext: Extension } | undefined {
  for (const cert of proxiesLeafFirst) {
    const ext = findExtension(cert, OID.vomsAcSeq);
    if (ext) return { cert, ext };
  }
  return undefined;
}

/** Decode the AC sequence extension: `SEQUENCE { SEQUENCE OF AttributeCertificate }`. */
export function decodeAcExtension(ext: Extension, label: string): AttributeCertificate[] {
  const outer = parseInner(ext.value, `VOMS extension of ${label}`);
  const [list, ...rest] = seq(outer, 'VOMS AC sequence');
  if (rest.length) throw malformed(outer.label, rest[0]!.offset, 'extra fields in the VOMS AC sequence');
  const acs = seq(list, 'SEQUENCE OF AttributeCertificate', outer);
  if (acs.length === 0) throw malformed(outer.label, outer.offset, 'empty VOMS AC sequence');
  if (acs.length > MAX_ACS) throw malformed(outer.label, outer.offset, `more than ${MAX_ACS} ACs`);
  return acs.map((n, i) => decodeAc(n, `AC ${i + 1} in ${label}`));
}

/** Decode one AttributeCertificate node. */
export function decodeAc(n: DerNode, label: string): AttributeCertificate {
  const [info, alg, sig, ...extra] = seq(n, 'AttributeCertificate');
  if (extra.length) throw malformed(n.label, extra[0]!.offset, `${label}: extra fields after the signature`);
  const sigAlg = readAlgorithm(alg, 'AC signatureAlgorithm', n);
  const signature = readBitStringBytes(sig, 'AC signatureValue', n);
  const f = seq(info, 'AttributeCertificateInfo', n);
  let i = 0;
  const version = readSmallInt(f[i++], 'AC version', info);
  if (version !== 1) throw malformed(info!.label, info!.offset, `${label}: AC version ${version + 1}, expected v2`);

  // holder: SEQUENCE { baseCertificateID [0] IssuerSerial, … }
  const holder = seq(f[i++], 'AC holder', info);
  const base = holder.find((h) => isContext(h, 0) && h.constructed);
  if (!base) throw malformed(info!.label, info!.offset, `${label}: holder has no baseCertificateID`);
  const [hIssuer, hSerial] = base.children;
  const holderNames = directoryNames(expect(hIssuer, Cls.Universal, Tag.Sequence, 'holder issuer GeneralNames', base).children);
  const holderSerial = readIntegerBytes(hSerial, 'holder serial', base);

  // issuer: v2Form [0] { issuerName GeneralNames, … } (or the obsolete v1Form GeneralNames)
  const iss = f[i++];
  let issuerNames: Name[];
  if (iss && isContext(iss, 0) && iss.constructed) {
    issuerNames = directoryNames(expect(iss.children[0], Cls.Universal, Tag.Sequence, 'AC issuerName', iss).children);
  } else issuerNames = directoryNames(seq(iss, 'AC issuer', info));
  if (issuerNames.length !== 1) throw malformed(info!.label, iss!.offset, `${label}: the AC issuer must be exactly one directory name`);

  const innerAlg = readAlgorithm(f[i++], 'AC signature', info!);
  if (innerAlg !== sigAlg) throw malformed(info!.label, info!.offset, `${label}: signature algorithm differs between acinfo and AC`);
  const serialNode = f[i++];
  const serial = readIntegerBytes(serialNode, 'AC serialNumber', info);
  const validity = seq(f[i++], 'AC validity', info);
  if (validity.length !== 2 || validity.some((v) => v.tag !== Tag.GeneralizedTime || v.cls !== Cls.Universal)) {
    throw malformed(info!.label, info!.offset, `${label}: AC validity must be two GeneralizedTimes`);
  }
  const notBefore = readTime(validity[0], 'AC notBefore');
  const notAfter = readTime(validity[1], 'AC notAfter');
  const attrs = seq(f[i++], 'AC attributes', info);
  if (f[i] && f[i]!.cls === Cls.Universal && f[i]!.tag === Tag.BitString) i++; // issuerUniqueID
  const extensions = f[i] ? parseExtensions(f[i++], 'AC extensions', info) : [];
  if (i !== f.length) throw malformed(info!.label, f[i]!.offset, `${label}: unexpected field in acinfo`);

  const fq = fqanAttribute(attrs, info!, label);
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]{0,99}):\/\/([A-Za-z0-9][A-Za-z0-9.-]{0,252}):([0-9]{1,5})$/.exec(fq.policyAuthority);
  if (!m) throw malformed(info!.label, info!.offset, `${label}: policy authority '${printable(fq.policyAuthority)}' is not <vo>://<host>:<port>`);

  const aaExt = extensions.find((e) => e.oid === OID.vomsAaCerts);
  let aaCerts: Certificate[] = [];
  if (aaExt) {
    const wrapper = seq(parseInner(aaExt.value, `AA certificates in ${label}`), 'AA certificate chain');
    aaCerts = parseCertificateList(wrapper[0], `${label} embedded AA`);
  }
  const tExt = extensions.find((e) => e.oid === OID.targetInformation);
  return {
    label, acinfo: encoded(info!), sigAlg, signature, holderSerial, holderNames, issuer: issuerNames[0]!, serial,
    notBefore, notAfter, policyAuthority: fq.policyAuthority, vo: m[1]!, host: m[2]!, port: Number(m[3]),
    fqans: fq.values, extensions, aaCerts, targets: tExt ? targetNames(tExt, label) : null,
  };
}

function directoryNames(generalNames: DerNode[]): Name[] {
  // GeneralName directoryName is [4] EXPLICIT Name; other forms (URIs, e-mail) are not names of certificates
  return generalNames.filter((g) => isContext(g, 4) && g.constructed).map((g) => parseName(g.children[0], 'directoryName', g));
}

/** The one VOMS FQAN attribute: IetfAttrSyntax { policyAuthority [0] GeneralNames, values SEQUENCE OF OCTET STRING }. */
function fqanAttribute(attrs: DerNode[], info: DerNode, label: string): { policyAuthority: string; values: string[] } {
  const found = attrs.filter((a) => readOid(seq(a, 'AC attribute')[0], 'attribute type', a) === OID.vomsFqans);
  if (found.length !== 1) throw malformed(info.label, info.offset, `${label}: expected one VOMS FQAN attribute, found ${found.length}`);
  const attr = found[0]!;
  const set = expect(attr.children[1], Cls.Universal, Tag.Set, 'FQAN attribute values', attr);
  if (set.children.length !== 1 || attr.children.length !== 2) throw malformed(attr.label, attr.offset, `${label}: the FQAN attribute must hold one IetfAttrSyntax`);
  const syntax = seq(set.children[0], 'IetfAttrSyntax', set);
  let k = 0;
  let policyAuthority: string | undefined;
  if (syntax[k] && isContext(syntax[k], 0) && syntax[k]!.constructed) {
    const uris = syntax[k++]!.children.filter((g) => isContext(g, 6) && !g.constructed);
    if (uris.length !== 1) throw malformed(attr.label, attr.offset, `${label}: policyAuthority must be one URI`);
    policyAuthority = ia5(uris[0]!);
  }
  if (!policyAuthority) throw malformed(attr.label, attr.offset, `${label}: the FQAN attribute has no policyAuthority`);
  const valuesNode = syntax[k++];
  const values = seq(valuesNode, 'IetfAttrSyntax values', set).map((v) => {
    if (v.cls === Cls.Universal && v.tag === Tag.OctetString) return ia5Bytes(readOctets(v), v);
    if (v.cls === Cls.Universal && v.tag === Tag.Utf8String) return readString(v, 'FQAN');
    throw malformed(v.label, v.offset, `${label}: FQAN value must be an OCTET STRING`);
  });
  if (k !== syntax.length) throw malformed(attr.label, attr.offset, `${label}: extra fields in IetfAttrSyntax`);
  if (values.length === 0) throw malformed(attr.label, attr.offset, `${label}: the AC carries no FQAN`);
  if (values.length > MAX_FQANS) throw malformed(attr.label, attr.offset, `${label}: more than ${MAX_FQANS} FQANs`);
  return { policyAuthority, values };
}

function ia5(n: DerNode): string {
  return ia5Bytes(contents(n), n);
}

function ia5Bytes(b: Buffer, n: DerNode): string {
  for (let i = 0; i < b.length; i++) {
    if (b[i]! < 0x20 || b[i]! > 0x7e) throw malformed(n.label, n.offset + n.headerLength + i, 'non-printable character in a VOMS string');
  }
  return b.toString('latin1');
}

/** Target names of the AC targetInformation extension (SEQUENCE OF Targets; Target ::= [0] GeneralName | …). */
function targetNames(ext: Extension, label: string): string[] {
  const names: string[] = [];
  const walk = (n: DerNode, depth: number) => {
    if (depth > 6) throw malformed(n.label, n.offset, `${label}: targetInformation nested too deep`);
    if (!n.constructed) {
      // uniformResourceIdentifier [6] or dNSName [2] inside a targetName
      if (n.cls === Cls.Context && (n.tag === 6 || n.tag === 2)) names.push(ia5(n));
      return;
    }
    for (const c of n.children) walk(c, depth + 1);
  };
  walk(parseInner(ext.value, `targetInformation of ${label}`), 0);
  return names;
}

/** Holder serial equality on INTEGER content bytes (both minimal, so bytes compare exactly). */
export function sameSerial(a: Buffer, b: Buffer): boolean {
  return a.equals(b);
}

export { integerContents };
