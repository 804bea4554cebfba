// X.500 distinguished names: OpenSSL's one-line `/C=../O=../CN=..` rendering (the form .lsc files and grid
// tools use), OpenSSL's canonical form for comparisons (X509_NAME_cmp), and its subject hash (`<hash>.0` files).
import { createHash } from 'node:crypto';
import { type DerNode, Cls, Tag, contents, encoded, expect, malformed, readOid, seq } from './der.js';

/** OpenSSL short names of the attribute types met in grid DNs. */
const SHORT_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST', '2.5.4.10': 'O', '2.5.4.11': 'OU',
  '2.5.4.5': 'serialNumber', '2.5.4.4': 'SN', '2.5.4.42': 'GN', '2.5.4.12': 'title', '2.5.4.9': 'street',
  '2.5.4.17': 'postalCode', '2.5.4.46': 'dnQualifier', '2.5.4.65': 'pseudonym', '2.5.4.43': 'initials',
  '2.5.4.44': 'generationQualifier', '1.2.840.113549.1.9.1': 'emailAddress',
  '0.9.2342.19200300.100.1.25': 'DC', '0.9.2342.19200300.100.1.1': 'UID',
};

export const OID_CN = '2.5.4.3';

/** One attribute of a relative distinguished name. */
export interface Ava { oid: string; value: DerNode }

/** A parsed Name: its RDNs (each a set of AVAs) and the original DER. */
export interface Name {
  rdns: Ava[][];
  der: Buffer;
  canon: Buffer; // OpenSSL canonical encoding: compare these, not the DER
}

/** Parse a Name (SEQUENCE OF SET OF SEQUENCE { type, value }). */
export function parseName(n: DerNode | undefined, what = 'name', parent?: DerNode): Name {
  const rdns: Ava[][] = [];
  for (const set of seq(n, what, parent)) {
    const members = expect(set, Cls.Universal, Tag.Set, `RDN of ${what}`).children;
    if (members.length === 0) throw malformed(set.label, set.offset, `empty RDN in ${what}`);
    rdns.push(members.map((m) => {
      const [t, v, ...rest] = seq(m, `attribute of ${what}`);
      if (!v || rest.length) throw malformed(m.label, m.offset, `attribute of ${what} needs exactly a type and a value`);
      return { oid: readOid(t, `attribute type of ${what}`), value: v };
    }));
  }
  return { rdns, der: encoded(n!), canon: canonical(rdns) };
}

/** Same name by OpenSSL's rules (case- and whitespace-insensitive for string types). */
export function nameEquals(a: Name, b: Name): boolean {
  return a.canon.equals(b.canon);
}

/** OpenSSL's `X509_NAME_hash` (subject hash used for `<hash>.0` file names), as 8 hex digits. */
export function nameHash(n: Name): string {
  const d = createHash('sha1').update(n.canon).digest();
  return d.readUInt32LE(0).toString(16).padStart(8, '0');
}

/** OpenSSL one-line form: `/C=XX/O=Test/CN=Alice`; bytes outside printable ASCII as `\xHH`. */
export function nameToString(n: Name): string {
  let s = '';
  for (const rdn of n.rdns) {
    for (const ava of rdn) {
      s += `/${SHORT_NAMES[ava.oid] ?? ava.oid}=${escapeValue(valueBytes(ava.value))}`;
    }
  }
  return s;
}

/** Does `child` equal `parent` plus exactly one more RDN holding one CN? Returns that CN's value or null. */
export function extraCn(child: Name, parent: Name): string | null {
  if (child.rdns.length !== parent.rdns.length + 1) return null;
  const last = child.rdns[child.rdns.length - 1]!;
  if (last.length !== 1 || last[0]!.oid !== OID_CN) return null;
  const prefix = canonical(child.rdns.slice(0, -1));
  if (!prefix.equals(parent.canon)) return null;
  return valueBytes(last[0]!.value).toString('utf8');
}

// ---- OpenSSL canonical encoding (crypto/x509/x_name.c x509_name_canon / asn1_string_canon) ----------------

const CANON_STRING_TAGS = new Set<number>([Tag.Utf8String, Tag.BmpString, Tag.UniversalString, Tag.PrintableString,
  Tag.T61String, Tag.Ia5String, Tag.VisibleString]);

function valueBytes(v: DerNode): Buffer {
  if (v.cls === Cls.Universal && CANON_STRING_TAGS.has(v.tag)) return toUtf8(v);
  return encoded(v); // OpenSSL prints the DER of non-string values (#hex); bytes escaped below
}

function toUtf8(v: DerNode): Buffer {
  const c = contents(v);
  switch (v.tag) {
    case Tag.BmpString: {
      if (c.length % 2) throw malformed(v.label, v.offset, 'odd length BMPString');
      let s = '';
      for (let i = 0; i < c.length; i += 2) s += String.fromCharCode(c.readUInt16BE(i));
      return Buffer.from(s, 'utf8');
    }
    case Tag.UniversalString: {
      if (c.length % 4) throw malformed(v.label, v.offset, 'bad UniversalString length');
      let s = '';
      for (let i = 0; i < c.length; i += 4) {
        const cp = c.readUInt32BE(i);
        if (cp > 0x10ffff) throw malformed(v.label, v.offset, 'invalid code point');
        s += String.fromCodePoint(cp);
      }
      return Buffer.from(s, 'utf8');
    }
    case Tag.T61String:
      return Buffer.from(c.toString('latin1'), 'utf8'); // OpenSSL reads T61 as one byte per character
    default:
      return c;
  }
}

const isSpace = (b: number) => b === 0x20 || (b >= 0x09 && b <= 0x0d);

/** Canonical value bytes (trim, collapse whitespace, ASCII lower case) or null for non-string types. */
function canonValue(v: DerNode): Buffer | null {
  if (v.cls !== Cls.Universal || !CANON_STRING_TAGS.has(v.tag)) return null;
  const u = toUtf8(v);
  let from = 0;
  let to = u.length;
  while (from < to && isSpace(u[from]!)) from++;
  while (to > from && isSpace(u[to - 1]!)) to--;
  const out: number[] = [];
  for (let i = from; i < to; i++) {
    const b = u[i]!;
    if (isSpace(b)) {
      out.push(0x20);
      while (i + 1 < to && isSpace(u[i + 1]!)) i++;
    } else out.push(b >= 0x41 && b <= 0x5a ? b + 32 : b);
  }
  return Buffer.from(out);
}

function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  let hdr: Buffer;
  if (n < 0x80) hdr = Buffer.from([tag, n]);
  else if (n < 0x100) hdr = Buffer.from([tag, 0x81, n]);
  else if (n < 0x10000) hdr = Buffer.from([tag, 0x82, n >> 8, n & 0xff]);
  else hdr = Buffer.from([tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([hdr, body]);
}

function canonical(rdns: Ava[][]): Buffer {
  const sets = rdns.map((rdn) => {
    const avas = rdn.map((a) => {
      const oidDer = encodeOid(a.oid);
      const cv = canonValue(a.value);
      return tlv(0x30, Buffer.concat([oidDer, cv ? tlv(0x0c, cv) : encoded(a.value)]));
    });
    avas.sort(Buffer.compare); // DER SET OF order
    return tlv(0x31, Buffer.concat(avas));
  });
  return Buffer.concat(sets); // OpenSSL leaves out the outer SEQUENCE header
}

function encodeOid(oid: string): Buffer {
  const arcs = oid.split('.').map(Number);
  const out: number[] = [];
  const push = (v: number) => {
    const tmp = [v & 0x7f];
    while ((v = Math.floor(v / 128)) > 0) tmp.unshift((v & 0x7f) | 0x80);
    out.push(...tmp);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(0x06, Buffer.from(out));
}

function escapeValue(b: Buffer): string {
  let s = '';
  for (const c of b) s += c >= 0x20 && c <= 0x7e ? String.fromCharCode(c) : `\\x${c.toString(16).toUpperCase().padStart(2, '0')}`;
  return s;
}

/** Normalise a one-line DN for comparison with .lsc lines: email/UID spellings vary between tools. */
export function normaliseDnString(dn: string): string {
  return dn.trim()
    .replace(/\/(?:E|Email|emailAddress)=/g, '/emailAddress=')
    .replace(/\/(?:USERID|UID)=/g, '/UID=');
}
