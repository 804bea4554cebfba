// Input generators and property checks shared by the CI fuzz test (test/jdl-fuzz.test.ts) and the long run
// (bench/fuzz-jdl.ts). Deterministic: a seed gives the same inputs, so a failure can be replayed.
import { BlahScriptError, parseBlahScript } from '../src/jdl/blahScript.js';
import { ClassAdSyntaxError, parseClassAd } from '../src/jdl/classad.js';
import { requestFromScript, TAG_PATTERN } from '../src/jdl/request.js';
import { renderBlahScript, unwindCeRequirements } from '../src/jdl/unwind.js';
import { prng } from './kit/prng.js';
export { prng };

/** Inputs are bounded so that every single parse is short: a hang would show as a stuck run, not a slow one. */
export const MAX_FUZZ_CLASSAD = 4096;
export const MAX_FUZZ_SCRIPT = 32_768;


type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rand, n: number) => Math.floor(r() * n);

const ATTRS = ['GlueHostApplicationSoftwareRunTimeEnvironment', 'gluehostapplicationsoftwareruntimeenvironment',
  'GlueHostMainMemoryRAMSize', 'GlueCEImplementationName', 'GlueHostArchitectureSMPSize', 'VirtualOrganisation',
  'x509UserProxyFQAN', 'x509userproxy', 'Queue', 'X', '_y9'];
const SCOPES = ['other.', 'self.', 'Other.', 'MY.', 'target.', ''];
const STRINGS = ['vm_sl6', 'VM_SL6', 'CREAM', '', "it's", 'café', 'a\\"b', '\\\\', '$(reboot)', '`id`', 'userFQAN=/dteam/Role=NULL',
  '\u00ff\u{1f600}', 'a b;c|d&e'];

/** A syntactically valid expression of the subset (depth-bounded). */
export function validClassAd(r: Rand, depth = 0): string {
  const leaf = depth > 5 || r() < 0.3;
  if (leaf) {
    switch (int(r, 6)) {
      case 0: return `Member(${literal(r)}, ${attr(r)})`;
      case 1: return `${attr(r)} ${pick(r, ['==', '!=', '=?=', '=!=', '<', '<=', '>', '>=', 'is', 'isnt'])} ${literal(r)}`;
      case 2: return `${literal(r)} ${pick(r, ['<', '<=', '>', '>=', '=='])} ${attr(r)}`;
      case 3: return `Member(${attr(r)}, {${Array.from({ length: int(r, 4) }, () => literal(r)).join(', ')}})`;
      case 4: return attr(r);
      default: return literal(r);
    }
  }
  switch (int(r, 4)) {
    case 0: return `${validClassAd(r, depth + 1)} && ${validClassAd(r, depth + 1)}`;
    case 1: return `${validClassAd(r, depth + 1)} || ${validClassAd(r, depth + 1)}`;
    case 2: return `!${validClassAd(r, depth + 1)}`;
    default: return `(${validClassAd(r, depth + 1)})`;
  }
}

function attr(r: Rand): string {
  return pick(r, SCOPES) + pick(r, ATTRS);
}

function literal(r: Rand): string {
  switch (int(r, 7)) {
    case 0: case 1: return `"${pick(r, STRINGS)}"`;
    case 2: return String(int(r, 100_000));
    case 3: return `${int(r, 100)}.${int(r, 100)}`;
    case 4: return pick(r, ['true', 'false', 'TRUE', 'undefined']);
    case 5: return `-${int(r, 10)}`;
    default: return `(${int(r, 10)})`;
  }
}

const NOISE = ['(', ')', '{', '}', '"', "'", '\\', ',', '.', '=', '!', '<', '>', '&', '|', '?', ':', '*', '-', '+', ' ',
  '\n', '\t', '\u0000', '\u00e9', '\ud800', 'Member', 'other.', 'is', '1e', '9'.repeat(25), '('.repeat(300), '!'.repeat(300)];

/** Mutate a string: insert, delete, replace, duplicate or cut. */
export function mutate(r: Rand, s: string, max: number): string {
  let out = s;
  const n = 1 + int(r, 4);
  for (let k = 0; k < n; k++) {
    const at = int(r, out.length + 1);
    switch (int(r, 5)) {
      case 0: out = out.slice(0, at) + pick(r, NOISE) + out.slice(at); break;
      case 1: out = out.slice(0, at) + out.slice(at + 1 + int(r, 8)); break;
      case 2: out = out.slice(0, at) + String.fromCharCode(int(r, 0x180)) + out.slice(at + 1); break;
      case 3: out = out.slice(0, at) + out.slice(int(r, out.length + 1)) + out.slice(at); break;
      default: out = out.slice(0, at); break;
    }
  }
  return out.slice(0, max);
}

/** Inputs for parseClassAd: a third valid, a third mutated valid, a third random noise. */
export function classAdInput(r: Rand): { src: string; valid: boolean } {
  const kind = int(r, 3);
  if (kind === 0) {
    const src = validClassAd(r);
    return { src: src.slice(0, MAX_FUZZ_CLASSAD), valid: src.length <= MAX_FUZZ_CLASSAD };
  }
  if (kind === 1) return { src: mutate(r, validClassAd(r), MAX_FUZZ_CLASSAD), valid: false };
  return { src: Array.from({ length: int(r, 40) }, () => pick(r, NOISE)).join('').slice(0, MAX_FUZZ_CLASSAD), valid: false };
}

const SCRIPT_LINES = [
  '#!/bin/bash', '#!/bin/sh', '', '# comment', 'source /usr/libexec/blahp/pbs_local_submit_attributes.sh',
  "VirtualOrganisation='dteam'",
  `x509UserProxyFQAN='"userFQAN=/dteam/Role=production/Capability=NULL" "userFQAN=/dteam/Role=NULL/Capability=NULL"'`,
  "x509userproxy='/var/cream_sandbox/dteam/proxy/abc.lmt'", "x509UserProxySubject='/C=IT/CN=Jane'",
  `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'`, `gluehostapplicationsoftwareruntimeenvironment[1]='"x"'`,
  "GlueHostMainMemoryRAMSize_Min='1000'", "GlueHostMainMemoryRAMSize_Max='4096'", 'blah_opt_mpinodes=4',
  "X[7]='$(rm -rf /)'", "Y='`id`'", "Queue='long'", "X='a", "b'", "Z='\"caf\\303\\251\"'",
];

/** Inputs for parseBlahScript: shuffled real lines, mutated, plus rendered unwindings of generated expressions. */
export function scriptInput(r: Rand): string {
  const kind = int(r, 3);
  const lines = Array.from({ length: int(r, 30) }, () => pick(r, SCRIPT_LINES));
  if (kind === 0) return lines.join('\n').slice(0, MAX_FUZZ_SCRIPT);
  if (kind === 1) return mutate(r, lines.join('\n'), MAX_FUZZ_SCRIPT);
  try {
    return renderBlahScript(unwindCeRequirements(parseClassAd(validClassAd(r)))).slice(0, MAX_FUZZ_SCRIPT);
  } catch {
    return lines.join('\n');
  }
}

export interface FuzzCounts { inputs: number; accepted: number; documentedErrors: number }

/**
 * Check one parseClassAd input. Throws (an Error naming the input) on any property violation: an error type
 * other than ClassAdSyntaxError, a position outside the input, a valid input refused, or an unwinding that does
 * not survive render → parseBlahScript unchanged.
 */
export function checkClassAd(src: string, valid: boolean, counts: FuzzCounts): void {
  counts.inputs++;
  let expr;
  try {
    expr = parseClassAd(src);
  } catch (err) {
    if (!(err instanceof ClassAdSyntaxError)) throw new Error(`parseClassAd(${JSON.stringify(src)}) threw ${String(err)}`);
    if (!Number.isInteger(err.position) || err.position < 0 || err.position > src.length ||
        !/^(line \d+, )?column \d+: /.test(err.message)) {
      throw new Error(`bad error for ${JSON.stringify(src)}: ${err.position} ${err.message}`);
    }
    if (valid) throw new Error(`valid input refused: ${JSON.stringify(src)}: ${err.message}`);
    counts.documentedErrors++;
    return;
  }
  counts.accepted++;
  const assignments = unwindCeRequirements(expr);
  const parsed = parseBlahScript(renderBlahScript(assignments));
  // Two spellings of one name are legitimate and reported; anything else would be a rejected line.
  if (parsed.warnings.some((w) => !/ is another spelling of /.test(w))) {
    throw new Error(`unwinding of ${JSON.stringify(src)} reads back with warnings: ${parsed.warnings.join('; ')}`);
  }
  const back = [...parsed.vars.values()].flatMap((v) => v.assignments ?? []).sort((a, b) => a.line - b.line);
  if (JSON.stringify(back) !== JSON.stringify(assignments)) {
    throw new Error(`unwinding of ${JSON.stringify(src)} does not read back: ${JSON.stringify(assignments)}`);
  }
}

/** Check one parseBlahScript input: only BlahScriptError, sane output, and requestFromScript never throws. */
export function checkScript(text: string, counts: FuzzCounts): void {
  counts.inputs++;
  let parsed;
  try {
    parsed = parseBlahScript(text);
  } catch (err) {
    if (!(err instanceof BlahScriptError)) throw new Error(`parseBlahScript(${JSON.stringify(text.slice(0, 200))}) threw ${String(err)}`);
    counts.documentedErrors++;
    return;
  }
  counts.accepted++;
  for (const w of parsed.warnings) {
    if (!/^line \d+: /.test(w) || /[\u0000-\u001f]/.test(w)) throw new Error(`bad warning ${JSON.stringify(w)}`);
  }
  for (const [key, v] of parsed.vars) {
    if (key !== v.name.toLowerCase() || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(v.name)) throw new Error(`bad name ${v.name}`);
    for (const value of v.values) {
      if (/[\u0000-\u001f\u007f'\n]/.test(value)) throw new Error(`bad value ${JSON.stringify(value)} for ${v.name}`);
    }
  }
  let req;
  try {
    req = requestFromScript(parsed);
  } catch (err) {
    throw new Error(`requestFromScript threw ${String(err)} for ${JSON.stringify(text.slice(0, 200))}`);
  }
  for (const tag of req.tags) if (!TAG_PATTERN.test(tag)) throw new Error(`bad tag ${JSON.stringify(tag)}`);
}
