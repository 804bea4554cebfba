// Distinguished names for the entries we publish: RDN escaping (RFC 4514) and checks of the configured DNs.
import { WnodError } from '../util/errors.js';

/** A configured GLUE identity (DN, suffix, ID) cannot be published (the message names the config key). */
export class GlueError extends WnodError {
  constructor(message: string) {
    super('glue', message);
  }
}

/** Escape an attribute value for use in an RDN (RFC 4514 section 2.4). */
export function escapeRdnValue(value: string): string {
  if (value === '') throw new GlueError('an RDN value cannot be empty');
  let out = value.replace(/[\\,+"<>;=]/g, (c) => '\\' + c);
  if (out.startsWith(' ') || out.startsWith('#')) out = '\\' + out;
  if (out.endsWith(' ')) out = out.slice(0, -1) + '\\ ';
  return out;
}

/** `attr=escaped-value`. */
export function rdn(attr: string, value: string): string {
  return `${attr}=${escapeRdnValue(value)}`;
}

// One RDN: attr=value where the value is plain or backslash-escaped characters (no multi-valued RDNs).
const RDN = /^[A-Za-z][A-Za-z0-9-]*=(?:[^\\,+"<>;=]|\\[\\,+"<>;= #]|\\[0-9A-Fa-f]{2})+$/;

/** Split a DN at unescaped commas. */
export function splitDn(dn: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < dn.length; i++) {
    const c = dn[i]!;
    if (c === '\\' && i + 1 < dn.length) {
      cur += c + dn[i + 1]!;
      i++;
    } else if (c === ',') {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts;
}

/** Check a DN from the config: printable ASCII, well-formed RDNs (no spaces around separators), under `suffix`.
 * `key` names the config key for the message. */
export function checkConfiguredDn(dn: string, suffix: string, key: string, allowSuffixItself = false): string {
  if (!/^[\x21-\x7E](?:[\x20-\x7E]*[\x21-\x7E])?$/.test(dn)) {
    throw new GlueError(`${key}: ${JSON.stringify(dn)} must be printable ASCII without leading or trailing spaces`);
  }
  const rdns = splitDn(dn);
  for (const r of rdns) {
    if (!RDN.test(r)) throw new GlueError(`${key}: ${JSON.stringify(dn)}: malformed RDN ${JSON.stringify(r)}`);
  }
  const want = splitDn(suffix).map((r) => r.toLowerCase());
  const tail = rdns.slice(-want.length).map((r) => r.toLowerCase());
  if (rdns.length < want.length + (allowSuffixItself ? 0 : 1) || tail.join(',') !== want.join(',')) {
    throw new GlueError(`${key}: ${JSON.stringify(dn)} must lie below ${suffix}`);
  }
  return dn;
}
