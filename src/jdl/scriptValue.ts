// What the text between the single quotes of a BLAH temp-script line means. BLAH writes two kinds of value:
// CeRequirements leaves as unparsed ClassAd literals (`"vm_sl6"` with its double quotes, `1000`, `true`), and
// pass-through attributes as the raw string (`dteam`, `/tmp/x509up_u501`). The FQAN list is a run of ClassAd
// strings separated by spaces.

/** A decoded temp-script value. `bare` is a raw pass-through string (no ClassAd quoting). */
export type ScriptValue =
  | { kind: 'string'; value: string }
  | { kind: 'integer'; value: number }
  | { kind: 'real'; text: string }
  | { kind: 'boolean'; value: boolean }
  | { kind: 'undefined' }
  | { kind: 'bare'; value: string }
  | { kind: 'invalid'; reason: string };

const INTEGER = /^-?(?:0|[1-9][0-9]*)$/;
const REAL = /^-?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

/** Classify one raw value as BLAH wrote it. Pure; never throws. */
export function parseScriptValue(raw: string): ScriptValue {
  if (raw.startsWith('"')) {
    const r = readClassAdString(raw, 0);
    if ('error' in r) return { kind: 'invalid', reason: r.error };
    if (r.end !== raw.length) return { kind: 'invalid', reason: `text after the closing quote at offset ${r.end}` };
    return { kind: 'string', value: r.value };
  }
  if (INTEGER.test(raw)) {
    const n = Number(raw);
    if (!Number.isSafeInteger(n)) return { kind: 'invalid', reason: `integer ${raw} is out of range` };
    return { kind: 'integer', value: n };
  }
  if (REAL.test(raw)) return { kind: 'real', text: raw };
  const lower = raw.toLowerCase();
  if (lower === 'true' || lower === 'false') return { kind: 'boolean', value: lower === 'true' };
  if (lower === 'undefined') return { kind: 'undefined' };
  return { kind: 'bare', value: raw };
}

/** Split a run of ClassAd strings (`"a" "b"`, also comma-separated) into their decoded values. */
export function parseQuotedStrings(raw: string): { values: string[] } | { error: string } {
  const values: string[] = [];
  let i = 0;
  const skipSeparators = () => {
    while (i < raw.length && (raw[i] === ' ' || raw[i] === ',')) i++;
  };
  skipSeparators();
  while (i < raw.length) {
    if (raw[i] !== '"') return { error: `expected '"' at offset ${i}` };
    const r = readClassAdString(raw, i);
    if ('error' in r) return r;
    values.push(r.value);
    i = r.end;
    if (i < raw.length && raw[i] !== ' ' && raw[i] !== ',') return { error: `expected a separator at offset ${i}` };
    skipSeparators();
  }
  return { values };
}

const SIMPLE_ESCAPES: Record<string, string> = {
  n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', a: '\x07', v: '\v', '\\': '\\', '"': '"', "'": "'",
};

/**
 * Read a ClassAd string literal starting at `start` (a double quote) as the ClassAd unparser writes it:
 * `\"`, `\\`, the C escapes and `\ooo` octal bytes (non-ASCII arrives as UTF-8 bytes in octal). BLAH deletes
 * single quotes after unparsing, so `\'` arrives as a lone backslash before the next character: read as that
 * character. Bytes are decoded as UTF-8; invalid UTF-8 is an error.
 */
export function readClassAdString(s: string, start: number): { value: string; end: number } | { error: string } {
  const bytes: number[] = [];
  let i = start + 1;
  while (i < s.length) {
    const c = s[i]!;
    if (c === '"') {
      const decoded = decodeUtf8(bytes);
      if (decoded === undefined) return { error: `string at offset ${start} is not valid UTF-8` };
      return { value: decoded, end: i + 1 };
    }
    if (c === '\\') {
      const n = s[i + 1];
      if (n === undefined) break;
      const oct = /^[0-7]{1,3}/.exec(s.slice(i + 1, i + 4));
      if (oct) {
        const v = parseInt(oct[0], 8);
        if (v > 255) return { error: `octal escape \\${oct[0]} at offset ${i} is over 255` };
        bytes.push(v);
        i += 1 + oct[0].length;
        continue;
      }
      const simple = SIMPLE_ESCAPES[n];
      pushUtf8(bytes, simple ?? n);
      i += 2;
      continue;
    }
    const cp = s.codePointAt(i)!;
    pushUtf8(bytes, String.fromCodePoint(cp));
    i += cp > 0xffff ? 2 : 1;
  }
  return { error: `string starting at offset ${start} has no closing quote` };
}

function pushUtf8(bytes: number[], s: string): void {
  for (const b of Buffer.from(s, 'utf8')) bytes.push(b);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(bytes: number[]): string | undefined {
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}
