// Parser of BLAH's temporary submit-attributes script (the `$0` of the sourced <lrms>_local_submit_attributes.sh).
// The file is read as data with bash's meaning for the few line shapes BLAH writes; nothing in it is ever eval'd.
import { WnodError } from '../util/errors.js';

/** One accepted `NAME='value'` / `NAME[N]='value'` line. `raw` is the text between the single quotes. */
export interface Assignment { name: string; index?: number; raw: string; line: number }

/** Variables by lower-case ClassAd name (`values`: array elements in index order, or [scalar]). */
export interface ParsedScript {
  vars: Map<string /* lower-case name */, {
    name: string;
    values: string[];
    /** Every accepted line that assigned this attribute (any spelling), in file order — lets a caller see
     *  that a CeRequirements line overrode a pass-through attribute. Absent on hand-built scripts. */
    assignments?: Assignment[];
  }>;
  warnings: string[];
  /** Lines that assign a variable but were rejected (bad value): the name, lower-cased, when it could be read.
   *  A caller must not take a rejected request line for an absent one (a bad image tag is not "no image"). */
  rejected?: { name: string; line: number }[];
}

/** The temp script as a whole is unusable (too large): the caller should refuse the job, not guess. */
export class BlahScriptError extends WnodError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** Bounds: BLAH writes a few dozen short lines; anything near these limits is an attack or a bug. */
export const MAX_SCRIPT_CHARS = 1024 * 1024;
export const MAX_SCRIPT_LINES = 20_000;
export const MAX_NAME_LENGTH = 256;
export const MAX_VALUE_LENGTH = 16_384;
export const MAX_INDEX = 1023;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const INDEX = /^(?:0|[1-9][0-9]{0,3})$/;
// Unquoted values: only BLAH's own `blah_opt_mpinodes=N` is written this way; allow nothing bash would expand.
const BARE_VALUE = /^[A-Za-z0-9._+:@/-]+$/;
// C0 controls, DEL, C1 controls and U+FFFD (what invalid UTF-8 becomes when the file is decoded).
const FORBIDDEN_CHAR = /[\u0000-\u001f\u007f-\u009f\ufffd]/;

type LineResult =
  | { kind: 'skip' }
  | { kind: 'ignored'; why: string }
  | { kind: 'assignment'; assignment: Assignment }
  | { kind: 'malformed'; why: string; opensQuote: boolean; name?: string };

/** Parse the temp script text into variables with bash semantics; malformed lines become warnings. */
export function parseBlahScript(text: string): ParsedScript {
  if (text.length > MAX_SCRIPT_CHARS) {
    throw new BlahScriptError('blah-script-too-large',
      `BLAH temp script is ${text.length} characters, over the limit of ${MAX_SCRIPT_CHARS}`);
  }
  const lines = text.split('\n');
  if (lines.length > MAX_SCRIPT_LINES) {
    throw new BlahScriptError('blah-script-too-many-lines',
      `BLAH temp script has ${lines.length} lines, over the limit of ${MAX_SCRIPT_LINES}`);
  }
  const warnings: string[] = [];
  const accepted: Assignment[] = [];
  const rejected: { name: string; line: number }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const result = classifyLine(lines[i]!, lineNo);
    switch (result.kind) {
      case 'skip':
        break;
      case 'ignored':
        warnings.push(`line ${lineNo}: ${result.why}; ignored`);
        break;
      case 'assignment':
        accepted.push(result.assignment);
        break;
      case 'malformed': {
        if (result.name !== undefined) rejected.push({ name: result.name.toLowerCase(), line: lineNo });
        if (result.opensQuote) {
          // bash would read on until the quote closes: skip those lines too, so that no text inside a
          // multi-line value is ever read as an assignment of its own.
          let end = i + 1;
          while (end < lines.length && countQuotes(lines[end]!) % 2 === 0) end++;
          const last = Math.min(end, lines.length - 1);
          warnings.push(`line ${lineNo}: ${result.why} (the quoted value runs on to line ${last + 1}); rejected`);
          i = last;
        } else {
          warnings.push(`line ${lineNo}: ${result.why}; rejected`);
        }
        break;
      }
    }
  }
  return { vars: buildVariables(accepted, warnings), warnings, rejected };
}

function countQuotes(s: string): number {
  let n = 0;
  for (const c of s) if (c === "'") n++;
  return n;
}

/** Decide what one line is. Pure; never looks at other lines. */
function classifyLine(line: string, lineNo: number): LineResult {
  const text = line.replace(/^[ \t]+/, '').replace(/[ \t]+$/, '');
  if (text === '' || text.startsWith('#')) return { kind: 'skip' };
  if (/^(?:source|\.)[ \t]/.test(text)) return { kind: 'skip' };
  const eq = text.indexOf('=');
  const ws = text.search(/[ \t]/);
  if (eq < 0 || (ws >= 0 && ws < eq)) {
    return { kind: 'ignored', why: `not an assignment (${quoteForMessage(text)})` };
  }
  const opensQuote = countQuotes(text.slice(eq + 1)) % 2 === 1;
  const bad = (why: string): LineResult => ({ kind: 'malformed', why, opensQuote });
  const target = text.slice(0, eq);
  const valueText = text.slice(eq + 1);
  const m = /^([^[]*)(?:\[([^\]]*)\])?$/.exec(target);
  if (!m) return bad(`bad assignment target ${quoteForMessage(target)}`);
  const name = m[1]!;
  const indexText = m[2];
  if (name.length > MAX_NAME_LENGTH) return bad(`name is ${name.length} characters long, over ${MAX_NAME_LENGTH}`);
  if (!NAME.test(name)) return bad(`bad variable name ${quoteForMessage(name)}`);
  const badValue = (why: string): LineResult => ({ kind: 'malformed', why, opensQuote, name });
  let index: number | undefined;
  if (indexText !== undefined) {
    if (!INDEX.test(indexText) || Number(indexText) > MAX_INDEX) {
      return badValue(`array index of ${name} must be an integer 0..${MAX_INDEX}, got ${quoteForMessage(indexText)}`);
    }
    index = Number(indexText);
  }
  let raw: string;
  if (valueText.startsWith("'")) {
    if (valueText.length < 2 || !valueText.endsWith("'") || valueText.slice(1, -1).includes("'")) {
      return badValue(`value of ${name} is not one single-quoted string`);
    }
    raw = valueText.slice(1, -1);
  } else if (BARE_VALUE.test(valueText)) {
    raw = valueText;
  } else if (valueText === '') {
    raw = '';
  } else {
    return badValue(`unquoted value of ${name} holds characters the shell would interpret`);
  }
  if (raw.length > MAX_VALUE_LENGTH) {
    return badValue(`value of ${name} is ${raw.length} characters long, over ${MAX_VALUE_LENGTH}`);
  }
  const ctl = FORBIDDEN_CHAR.exec(raw);
  if (ctl) {
    const code = ctl[0].codePointAt(0)!.toString(16).padStart(4, '0');
    return badValue(`value of ${name} holds control or invalid character U+${code} at offset ${ctl.index}`);
  }
  const assignment: Assignment = { name, raw, line: lineNo };
  if (index !== undefined) assignment.index = index;
  return { kind: 'assignment', assignment };
}

/** A short printable excerpt of user text for a message (never the whole line, never raw control bytes). */
function quoteForMessage(s: string): string {
  const cut = s.length > 60 ? s.slice(0, 60) + '…' : s;
  return JSON.stringify(cut);
}

interface Element { value: string; line: number }

/**
 * Apply bash semantics per spelling (a later line wins; `X=v` sets element 0), then merge the spellings of
 * one ClassAd name (case-insensitive) in file order. BLAH counts Member() indexes per spelling, so
 * `GlueX[0]` and `gluex[0]` are two different requests that must both survive.
 */
function buildVariables(accepted: Assignment[], warnings: string[]): ParsedScript['vars'] {
  const bySpelling = new Map<string, Map<number, Element>>();
  for (const a of accepted) {
    let arr = bySpelling.get(a.name);
    if (!arr) bySpelling.set(a.name, (arr = new Map()));
    arr.set(a.index ?? 0, { value: a.raw, line: a.line });
  }
  const groups = new Map<string, { spellings: string[]; assignments: Assignment[] }>();
  for (const a of accepted) {
    const key = a.name.toLowerCase();
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { spellings: [], assignments: [] }));
    if (!g.spellings.includes(a.name)) {
      if (g.spellings.length > 0) {
        warnings.push(`line ${a.line}: ${a.name} is another spelling of ${g.spellings[0]} ` +
          `(ClassAd names are case-insensitive); merged`);
      }
      g.spellings.push(a.name);
    }
    g.assignments.push(a);
  }
  const vars: ParsedScript['vars'] = new Map();
  for (const [key, g] of groups) {
    const lists = g.spellings.map((s) =>
      [...bySpelling.get(s)!.entries()].sort((x, y) => x[0] - y[0]).map(([, e]) => e));
    vars.set(key, { name: g.spellings[0]!, values: mergeByLine(lists).map((e) => e.value),
      assignments: g.assignments });
  }
  return vars;
}

/** Merge sequences (each kept in its own order) by the line number of their heads. */
function mergeByLine(lists: Element[][]): Element[] {
  if (lists.length === 1) return lists[0]!;
  const heads = lists.map(() => 0);
  const out: Element[] = [];
  for (;;) {
    let best = -1;
    for (let i = 0; i < lists.length; i++) {
      const e = lists[i]![heads[i]!];
      if (e && (best < 0 || e.line < lists[best]![heads[best]!]!.line)) best = i;
    }
    if (best < 0) return out;
    out.push(lists[best]![heads[best]!]!);
    heads[best]!++;
  }
}
