// A small RFC 2849 LDIF writer: the only place that turns attribute values into LDIF text.
import { WnodError } from '../util/errors.js';

/** An LDIF value could not be written safely (the message names the DN and attribute). */
export class LdifError extends WnodError {
  constructor(message: string) {
    super('ldif', message);
  }
}

/** One attribute value; attributes repeat for multi-valued ones and keep their order. */
export type LdifAttr = readonly [name: string, value: string];

/** A complete entry (the form a BDII provider prints). */
export interface LdifEntry {
  dn: string;
  attrs: readonly LdifAttr[];
}

/** One operation of a `changetype: modify` record. */
export interface LdifModOp {
  op: 'add' | 'replace' | 'delete';
  attr: string;
  values: readonly string[];
}

/** RFC 2849 lines are folded at this width (continuation lines start with one space). */
export const FOLD_WIDTH = 76;

const ATTR_NAME = /^[A-Za-z][A-Za-z0-9-]*$/;
// RFC 2849 SAFE-STRING: SAFE-INIT-CHAR then SAFE-CHARs (ASCII without NUL, LF, CR; no leading space, ':' or '<').
const SAFE_STRING = /^(?:[\x01-\x09\x0B\x0C\x0E-\x1F\x21-\x39\x3B\x3D-\x7F][\x01-\x09\x0B\x0C\x0E-\x7F]*)?$/;

/** True when a value must be written base64-encoded (`attr:: …`): not a SAFE-STRING, or a trailing space
 * (which LDIF readers strip). */
export function needsBase64(value: string): boolean {
  return !SAFE_STRING.test(value) || value.endsWith(' ');
}

/** Fold one logical line at FOLD_WIDTH octets (ASCII only here: base64 or SAFE-STRING text). */
export function foldLine(line: string): string {
  if (line.length <= FOLD_WIDTH) return line;
  const parts = [line.slice(0, FOLD_WIDTH)];
  for (let i = FOLD_WIDTH; i < line.length; i += FOLD_WIDTH - 1) parts.push(' ' + line.slice(i, i + FOLD_WIDTH - 1));
  return parts.join('\n');
}

function checkAttrName(name: string, dn: string): void {
  if (!ATTR_NAME.test(name)) throw new LdifError(`entry ${JSON.stringify(dn)}: invalid attribute name ${JSON.stringify(name)}`);
}

/** `attr: value` or `attr:: base64`, folded. */
export function attrLine(name: string, value: string): string {
  if (needsBase64(value)) return foldLine(`${name}:: ${Buffer.from(value, 'utf8').toString('base64')}`);
  return foldLine(`${name}: ${value}`);
}

/** The `dn:` line. A DN that would need base64 is refused: BDII's bdii-update finds entries by the text
 * `dn: ` and would mangle a `dn::` record. */
export function dnLine(dn: string): string {
  if (dn === '' || needsBase64(dn)) {
    throw new LdifError(`DN ${JSON.stringify(dn)} is not plain ASCII LDIF text (it would need "dn::", which BDII cannot read)`);
  }
  return foldLine(`dn: ${dn}`);
}

/** One complete entry as an LDIF record, ending with a blank line. */
export function entryRecord(entry: LdifEntry): string {
  const lines = [dnLine(entry.dn)];
  for (const [name, value] of entry.attrs) {
    checkAttrName(name, entry.dn);
    lines.push(attrLine(name, value));
  }
  return lines.join('\n') + '\n\n';
}

/** One `changetype: modify` record, ending with a blank line. */
export function modifyRecord(dn: string, ops: readonly LdifModOp[]): string {
  const lines = [dnLine(dn), 'changetype: modify'];
  for (const op of ops) {
    checkAttrName(op.attr, dn);
    lines.push(`${op.op}: ${op.attr}`);
    for (const v of op.values) lines.push(attrLine(op.attr, v));
    lines.push('-');
  }
  return lines.join('\n') + '\n\n';
}
