// A small strict DER reader. Bounded in depth and node count, it never trusts a length beyond the bytes it
// holds, and every error names the byte offset (relative to the outermost buffer the caller started from).
// Own code rather than node-forge's asn1: node-forge accepts BER (indefinite lengths, non-minimal forms) and
// costs ~15 ms of startup per job; this costs nothing measurable.
import { VomsError } from './errors.js';

/** ASN.1 tag classes. */
export const Cls = { Universal: 0, Application: 1, Context: 2, Private: 3 } as const;
export type Cls = (typeof Cls)[keyof typeof Cls];

/** Universal tag numbers we read. */
export const Tag = {
  Boolean: 1, Integer: 2, BitString: 3, OctetString: 4, Null: 5, Oid: 6, Utf8String: 12, Sequence: 16, Set: 17,
  PrintableString: 19, T61String: 20, Ia5String: 22, UtcTime: 23, GeneralizedTime: 24, VisibleString: 26,
  UniversalString: 28, BmpString: 30,
} as const;

/** One TLV. `offset` is absolute (header start); `buf` is the outermost buffer. */
export interface DerNode {
  cls: Cls;
  constructed: boolean;
  tag: number;
  offset: number;
  headerLength: number;
  length: number;
  buf: Buffer;
  children: DerNode[]; // empty for primitives
  label: string;       // what the caller was reading, for error messages
}

export interface ParseOptions {
  label?: string;    // e.g. "certificate 1 of /tmp/x509up_u0"
  maxDepth?: number;
  maxNodes?: number;
}

// Universal types that DER requires primitive (strings and scalars) or constructed (SEQUENCE, SET).
const PRIMITIVE_ONLY = new Set<number>([1, 2, 3, 4, 5, 6, 10, 12, 18, 19, 20, 22, 23, 24, 26, 28, 30]);
const CONSTRUCTED_ONLY = new Set<number>([16, 17]);

/** A malformed-input error that names the label and byte offset. */
export function malformed(label: string, offset: number, what: string): VomsError {
  return new VomsError('malformed', `malformed DER in ${label} at byte offset ${offset}: ${what}`);
}

/** Parse exactly one DER element spanning all of `buf` (trailing bytes are an error). */
export function parseDer(buf: Buffer, opts: ParseOptions = {}): DerNode {
  const label = opts.label ?? 'input';
  const state = { nodes: 0, maxNodes: opts.maxNodes ?? 50_000, maxDepth: opts.maxDepth ?? 32, label };
  if (buf.length === 0) throw malformed(label, 0, 'empty input');
  const node = readNode(buf, 0, buf.length, 0, state);
  const end = node.offset + node.headerLength + node.length;
  if (end !== buf.length) throw malformed(label, end, `${buf.length - end} trailing byte(s) after the element`);
  return node;
}

/** Parse the contents of a primitive node (an OCTET STRING or BIT STRING wrapper) as one DER element. */
export function parseInner(node: DerNode, label = node.label, skip = 0): DerNode {
  const start = node.offset + node.headerLength + skip;
  const end = node.offset + node.headerLength + node.length;
  const state = { nodes: 0, maxNodes: 50_000, maxDepth: 32, label };
  if (end <= start) throw malformed(label, start, 'empty wrapped element');
  const inner = readNode(node.buf, start, end, 0, state);
  const innerEnd = inner.offset + inner.headerLength + inner.length;
  if (innerEnd !== end) throw malformed(label, innerEnd, `${end - innerEnd} trailing byte(s) inside the wrapper`);
  return inner;
}

function readNode(buf: Buffer, pos: number, limit: number, depth: number,
  st: { nodes: number; maxNodes: number; maxDepth: number; label: string }): DerNode {
  if (depth > st.maxDepth) throw malformed(st.label, pos, `nesting deeper than ${st.maxDepth}`);
  if (++st.nodes > st.maxNodes) throw malformed(st.label, pos, `more than ${st.maxNodes} elements`);
  const start = pos;
  if (pos >= limit) throw malformed(st.label, pos, 'truncated: expected a tag');
  const first = buf[pos++]!;
  const cls = (first >> 6) as Cls;
  const constructed = (first & 0x20) !== 0;
  let tag = first & 0x1f;
  if (tag === 0x1f) {
    // high tag number form: base-128, minimal, at most 3 bytes (tags < 2^21)
    tag = 0;
    for (let i = 0; ; i++) {
      if (pos >= limit) throw malformed(st.label, pos, 'truncated tag number');
      const b = buf[pos++]!;
      if (i === 0 && b === 0x80) throw malformed(st.label, pos - 1, 'non-minimal tag number');
      if (i >= 3) throw malformed(st.label, pos - 1, 'tag number too large');
      tag = (tag << 7) | (b & 0x7f);
      if ((b & 0x80) === 0) break;
    }
    if (tag < 0x1f) throw malformed(st.label, start, 'non-minimal tag number');
  }
  if (pos >= limit) throw malformed(st.label, pos, 'truncated: expected a length');
  const lb = buf[pos++]!;
  let length: number;
  if (lb < 0x80) {
    length = lb;
  } else if (lb === 0x80) {
    throw malformed(st.label, pos - 1, 'indefinite length (BER, not DER)');
  } else {
    const n = lb & 0x7f;
    if (n > 4) throw malformed(st.label, pos - 1, `length of ${n} bytes is too large`);
    if (pos + n > limit) throw malformed(st.label, pos, 'truncated length');
    if (buf[pos] === 0) throw malformed(st.label, pos, 'non-minimal length (leading zero)');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[pos++]!;
    if (length < 0x80) throw malformed(st.label, pos - n - 1, 'non-minimal length (long form for < 128)');
  }
  const headerLength = pos - start;
  if (length > limit - pos) {
    throw malformed(st.label, start, `length ${length} exceeds the ${limit - pos} byte(s) left`);
  }
  if (cls === Cls.Universal) {
    if (tag === 0) throw malformed(st.label, start, 'end-of-contents tag (BER, not DER)');
    if (constructed && PRIMITIVE_ONLY.has(tag)) throw malformed(st.label, start, `universal tag ${tag} must be primitive`);
    if (!constructed && CONSTRUCTED_ONLY.has(tag)) throw malformed(st.label, start, `universal tag ${tag} must be constructed`);
  }
  const node: DerNode = { cls, constructed, tag, offset: start, headerLength, length, buf, children: [], label: st.label };
  if (constructed) {
    let p = pos;
    const end = pos + length;
    while (p < end) {
      const child = readNode(buf, p, end, depth + 1, st);
      node.children.push(child);
      p = child.offset + child.headerLength + child.length;
    }
  }
  return node;
}

// ---- accessors: each checks the type and throws malformed with the offset --------------------------------

/** The contents octets (no header), without copying. */
export function contents(n: DerNode): Buffer {
  const s = n.offset + n.headerLength;
  return n.buf.subarray(s, s + n.length);
}

/** The whole TLV bytes (header + contents), without copying: the ORIGINAL encoding. */
export function encoded(n: DerNode): Buffer {
  return n.buf.subarray(n.offset, n.offset + n.headerLength + n.length);
}

/** Throw unless `n` has the given class/tag; `what` names the field for the message. */
export function expect(n: DerNode | undefined, cls: Cls, tag: number, what: string, parent?: DerNode): DerNode {
  if (!n) {
    const at = parent ? parent.offset : 0;
    throw malformed(parent?.label ?? 'input', at, `missing ${what}`);
  }
  if (n.cls !== cls || n.tag !== tag) {
    throw malformed(n.label, n.offset, `expected ${what} (${describeTag(cls, tag)}), found ${describeTag(n.cls, n.tag)}`);
  }
  return n;
}

/** Children of a SEQUENCE, checked. */
export function seq(n: DerNode | undefined, what: string, parent?: DerNode): DerNode[] {
  return expect(n, Cls.Universal, Tag.Sequence, what, parent).children;
}

/** True when `n` is [tag] in context class. */
export function isContext(n: DerNode | undefined, tag: number): boolean {
  return !!n && n.cls === Cls.Context && n.tag === tag;
}

function describeTag(cls: Cls, tag: number): string {
  if (cls === Cls.Universal) {
    const name = Object.entries(Tag).find(([, v]) => v === tag)?.[0];
    return name ?? `universal ${tag}`;
  }
  return `${['universal', 'application', 'context', 'private'][cls]} [${tag}]`;
}

/** An OBJECT IDENTIFIER in dotted form. */
export function readOid(n: DerNode | undefined, what = 'OBJECT IDENTIFIER', parent?: DerNode): string {
  const node = expect(n, Cls.Universal, Tag.Oid, what, parent);
  const c = contents(node);
  if (c.length === 0) throw malformed(node.label, node.offset, 'empty OBJECT IDENTIFIER');
  const arcs: number[] = [];
  let v = 0;
  let fresh = true;
  for (let i = 0; i < c.length; i++) {
    const b = c[i]!;
    if (fresh && b === 0x80) throw malformed(node.label, node.offset + node.headerLength + i, 'non-minimal OID arc');
    fresh = false;
    v = v * 128 + (b & 0x7f);
    if (v > 0xffffffff) throw malformed(node.label, node.offset + node.headerLength + i, 'OID arc too large');
    if ((b & 0x80) === 0) {
      if (arcs.length === 0) {
        const a0 = v < 40 ? 0 : v < 80 ? 1 : 2;
        arcs.push(a0, v - a0 * 40);
      } else arcs.push(v);
      v = 0;
      fresh = true;
    }
  }
  if (!fresh) throw malformed(node.label, node.offset + node.headerLength + c.length - 1, 'truncated OID arc');
  return arcs.join('.');
}

/** An INTEGER's content bytes (two's complement, minimal encoding checked). */
export function readIntegerBytes(n: DerNode | undefined, what = 'INTEGER', parent?: DerNode): Buffer {
  const node = expect(n, Cls.Universal, Tag.Integer, what, parent);
  return integerContents(node);
}

/** Content bytes of an INTEGER-shaped node whatever its tag (implicitly tagged integers). */
export function integerContents(node: DerNode): Buffer {
  const c = contents(node);
  if (c.length === 0) throw malformed(node.label, node.offset, 'empty INTEGER');
  if (c.length > 1 && ((c[0] === 0 && (c[1]! & 0x80) === 0) || (c[0] === 0xff && (c[1]! & 0x80) !== 0))) {
    throw malformed(node.label, node.offset, 'non-minimal INTEGER');
  }
  return c;
}

/** A small non-negative INTEGER as a number. */
export function readSmallInt(n: DerNode | undefined, what = 'INTEGER', parent?: DerNode): number {
  const c = readIntegerBytes(n, what, parent);
  const node = n!;
  if ((c[0]! & 0x80) !== 0 || c.length > 6) throw malformed(node.label, node.offset, `${what} out of range`);
  let v = 0;
  for (const b of c) v = v * 256 + b;
  return v;
}

/** A BOOLEAN (DER: 0x00 or 0xFF only). */
export function readBoolean(n: DerNode | undefined, what = 'BOOLEAN', parent?: DerNode): boolean {
  const node = expect(n, Cls.Universal, Tag.Boolean, what, parent);
  const c = contents(node);
  if (c.length !== 1 || (c[0] !== 0 && c[0] !== 0xff)) throw malformed(node.label, node.offset, `invalid ${what}`);
  return c[0] === 0xff;
}

/** A BIT STRING with no unused bits (signatures, keys), as its bytes. */
export function readBitStringBytes(n: DerNode | undefined, what = 'BIT STRING', parent?: DerNode): Buffer {
  const node = expect(n, Cls.Universal, Tag.BitString, what, parent);
  const c = contents(node);
  if (c.length === 0) throw malformed(node.label, node.offset, `empty ${what}`);
  if (c[0] !== 0) throw malformed(node.label, node.offset, `${what} has ${c[0]} unused bits`);
  return c.subarray(1);
}

/** A BIT STRING as a bit test function (named bit lists such as keyUsage). */
export function readBits(n: DerNode | undefined, what = 'BIT STRING', parent?: DerNode): (bit: number) => boolean {
  const node = expect(n, Cls.Universal, Tag.BitString, what, parent);
  const c = contents(node);
  if (c.length === 0 || c[0]! > 7 || (c.length === 1 && c[0] !== 0)) throw malformed(node.label, node.offset, `invalid ${what}`);
  const bytes = c.subarray(1);
  return (bit) => {
    const byte = bytes[bit >> 3];
    return byte !== undefined && (byte & (0x80 >> (bit & 7))) !== 0;
  };
}

/** An OCTET STRING's bytes. */
export function readOctets(n: DerNode | undefined, what = 'OCTET STRING', parent?: DerNode): Buffer {
  return contents(expect(n, Cls.Universal, Tag.OctetString, what, parent));
}

const TIME_RE = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** A UTCTime or GeneralizedTime (DER: seconds present, 'Z', no fractions). */
export function readTime(n: DerNode | undefined, what = 'time', parent?: DerNode): Date {
  if (!n) throw malformed(parent?.label ?? 'input', parent?.offset ?? 0, `missing ${what}`);
  if (n.cls !== Cls.Universal || (n.tag !== Tag.UtcTime && n.tag !== Tag.GeneralizedTime)) {
    throw malformed(n.label, n.offset, `expected ${what} (UTCTime or GeneralizedTime)`);
  }
  const s = contents(n).toString('latin1');
  const m = TIME_RE.exec(s);
  const wantLen = n.tag === Tag.UtcTime ? 2 : 4;
  if (!m || m[1]!.length !== wantLen) throw malformed(n.label, n.offset, `invalid ${what} '${printable(s)}'`);
  let year = Number(m[1]);
  if (wantLen === 2) year += year < 50 ? 2000 : 1900; // RFC 5280 4.1.2.5.1
  const [mo, d, h, mi, se] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
  const t = Date.UTC(year, mo - 1, d, h, mi, se);
  const back = new Date(t);
  if (mo < 1 || mo > 12 || back.getUTCDate() !== d || h > 23 || mi > 59 || se > 59) {
    throw malformed(n.label, n.offset, `invalid ${what} '${s}'`);
  }
  return back;
}

/** A character string of any ASN.1 string type, decoded to a JS string. */
export function readString(n: DerNode | undefined, what = 'string', parent?: DerNode): string {
  if (!n) throw malformed(parent?.label ?? 'input', parent?.offset ?? 0, `missing ${what}`);
  const c = contents(n);
  if (n.cls !== Cls.Universal) throw malformed(n.label, n.offset, `expected ${what} (a string type)`);
  switch (n.tag) {
    case Tag.Utf8String: {
      const s = c.toString('utf8');
      if (!Buffer.from(s, 'utf8').equals(c)) throw malformed(n.label, n.offset, `invalid UTF-8 in ${what}`);
      return s;
    }
    case Tag.PrintableString: case Tag.Ia5String: case Tag.VisibleString: case Tag.T61String:
      return c.toString('latin1');
    case Tag.BmpString: {
      if (c.length % 2) throw malformed(n.label, n.offset, `odd length BMPString in ${what}`);
      let s = '';
      for (let i = 0; i < c.length; i += 2) s += String.fromCharCode(c.readUInt16BE(i));
      return s;
    }
    case Tag.UniversalString: {
      if (c.length % 4) throw malformed(n.label, n.offset, `bad UniversalString length in ${what}`);
      let s = '';
      for (let i = 0; i < c.length; i += 4) {
        const cp = c.readUInt32BE(i);
        if (cp > 0x10ffff) throw malformed(n.label, n.offset, `invalid code point in ${what}`);
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    default:
      throw malformed(n.label, n.offset, `expected ${what} (a string type), found universal ${n.tag}`);
  }
}

/** Make a string safe to quote in a one-line message. */
export function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`).slice(0, 200);
}
