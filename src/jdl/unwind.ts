// Simulation of blahpd's "unwinding" of CERequirements into temp-script assignments (BLAH's
// classad_binary_op_unwind.C): only leaves survive, so `wnod explain --cereq` can feed the very same
// parseBlahScript() that reads a real BLAH temp script.
import type { Expr } from './classad.js';
import type { Assignment } from './blahScript.js';
import { BlahScriptError } from './blahScript.js';

/**
 * The assignments blahpd would write for a CeRequirements expression, in its order (a pre-order walk, left to
 * right). Rules, as in BLAH:
 * - `attr OP literal` or `literal OP attr` with OP in < <= > >= == =?=: an integer literal gives NAME_Min /
 *   NAME_Max (relational) or NAME (equality); a string literal gives NAME='"str"' only for == and =?=;
 *   any other literal (real, boolean, undefined) or operand shape (`-1`, `(5)`, attr OP attr) writes nothing.
 * - `Member(literal, attr)`: NAME[i]='<literal unparsed>' with i counting per spelling of NAME; any literal kind.
 * - everything else (&&, ||, !, !=, =!=, Member(attr, {...}), lists) writes nothing itself but is walked, so
 *   both sides of || are emitted and a negation is lost.
 * Line numbers are those of the rendered script (line 1 is the #! line).
 */
export function unwindCeRequirements(expr: Expr): Assignment[] {
  const out: Assignment[] = [];
  const memberCounters = new Map<string, number>();
  const emit = (name: string, raw: string, index?: number) => {
    const a: Assignment = { name, raw: raw.replaceAll("'", ''), line: out.length + 2 };
    if (index !== undefined) a.index = index;
    out.push(a);
  };
  // Explicit stack: the parser bounds depth, but a walk that cannot overflow costs nothing.
  const stack: Expr[] = [expr];
  while (stack.length > 0) {
    const e = stack.pop()!;
    switch (e.kind) {
      case 'compare': {
        const leaf = compareLeaf(e);
        if (leaf) emit(leaf.name, leaf.raw);
        stack.push(e.right, e.left);
        break;
      }
      case 'call': {
        const [value, attr] = e.args;
        if (e.name.toLowerCase() === 'member' && value && attr && isLiteral(value) && attr.kind === 'attr') {
          const i = memberCounters.get(attr.name) ?? 0;
          memberCounters.set(attr.name, i + 1);
          emit(attr.name, unparseLiteral(value), i);
        }
        for (let i = e.args.length - 1; i >= 0; i--) stack.push(e.args[i]!);
        break;
      }
      case 'logical':
        stack.push(e.right, e.left);
        break;
      case 'unary':
        stack.push(e.operand);
        break;
      case 'paren':
        stack.push(e.inner);
        break;
      case 'list':
        for (let i = e.items.length - 1; i >= 0; i--) stack.push(e.items[i]!);
        break;
      default:
        break;
    }
  }
  return out;
}

type Literal = Extract<Expr, { kind: 'string' | 'integer' | 'real' | 'boolean' | 'undefined' }>;

function isLiteral(e: Expr): e is Literal {
  return e.kind === 'string' || e.kind === 'integer' || e.kind === 'real' || e.kind === 'boolean' ||
    e.kind === 'undefined';
}

function compareLeaf(e: Extract<Expr, { kind: 'compare' }>): { name: string; raw: string } | undefined {
  let attr: Expr, value: Expr, valueAtRight: boolean;
  if (e.left.kind === 'attr' && isLiteral(e.right)) {
    attr = e.left; value = e.right; valueAtRight = true;
  } else if (e.right.kind === 'attr' && isLiteral(e.left)) {
    attr = e.right; value = e.left; valueAtRight = false;
  } else {
    return undefined;
  }
  if (attr.kind !== 'attr' || (value.kind !== 'integer' && value.kind !== 'string')) return undefined;
  const raw = unparseLiteral(value);
  switch (e.op) {
    case '==': case '=?=':
      return { name: attr.name, raw };
    case '<': case '<=':
      if (value.kind !== 'integer') return undefined;
      return { name: attr.name + (valueAtRight ? '_Max' : '_Min'), raw };
    case '>': case '>=':
      if (value.kind !== 'integer') return undefined;
      return { name: attr.name + (valueAtRight ? '_Min' : '_Max'), raw };
    default:
      return undefined;
  }
}

/** A literal as the ClassAd unparser writes it (strings quoted and escaped, non-printables as octal). */
export function unparseLiteral(e: Literal): string {
  switch (e.kind) {
    case 'string': return unparseString(e.value);
    case 'integer': return String(e.value);
    case 'real': return unparseReal(e.value);
    case 'boolean': return e.value ? 'true' : 'false';
    case 'undefined': return 'undefined';
  }
}

const STRING_ESCAPES: Record<string, string> = {
  '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v',
  '\\': '\\\\', "'": "\\'", '"': '\\"',
};

function unparseString(s: string): string {
  let out = '"';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    const esc = STRING_ESCAPES[c];
    if (esc) out += esc;
    else if (byte < 0x20 || byte >= 0x7f) out += '\\' + byte.toString(8).padStart(3, '0');
    else out += c;
  }
  return out + '"';
}

/** The classic ClassAd library prints reals with "%.15E" (and 0 as "0.0"). */
function unparseReal(v: number): string {
  if (v === 0) return '0.0';
  const [mant, exp] = v.toExponential(15).toUpperCase().split('E') as [string, string];
  const sign = exp.startsWith('-') ? '-' : '+';
  const digits = exp.replace(/^[+-]/, '').padStart(2, '0');
  return `${mant}E${sign}${digits}`;
}

const SAFE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SAFE_RAW = /^[^'\u0000-\u001f\u007f]*$/;

/** Render assignments as BLAH's temp script (#!/bin/bash, the lines, optional mpinodes, then `source`). */
export function renderBlahScript(assignments: Assignment[],
  options: { mpinodes?: number; sourcePath?: string } = {}): string {
  const lines = ['#!/bin/bash'];
  for (const a of assignments) {
    // Refuse rather than write a line bash would read differently: this text may be executed by a shell.
    if (!SAFE_NAME.test(a.name)) throw new BlahScriptError('unsafe-assignment', `unsafe variable name ${JSON.stringify(a.name)}`);
    if (!SAFE_RAW.test(a.raw)) {
      throw new BlahScriptError('unsafe-assignment', `value of ${a.name} holds a single quote or control character`);
    }
    if (a.index !== undefined && !(Number.isInteger(a.index) && a.index >= 0)) {
      throw new BlahScriptError('unsafe-assignment', `bad array index ${a.index} for ${a.name}`);
    }
    lines.push(`${a.name}${a.index !== undefined ? `[${a.index}]` : ''}='${a.raw}'`);
  }
  if (options.mpinodes !== undefined) {
    if (!Number.isSafeInteger(options.mpinodes) || options.mpinodes < 0) {
      throw new BlahScriptError('unsafe-assignment', `bad mpinodes ${options.mpinodes}`);
    }
    lines.push(`blah_opt_mpinodes=${options.mpinodes}`);
  }
  if (options.sourcePath !== undefined) {
    if (!/^\/[A-Za-z0-9._\/+-]*$/.test(options.sourcePath)) {
      throw new BlahScriptError('unsafe-assignment', `unsafe source path ${JSON.stringify(options.sourcePath)}`);
    }
    lines.push(`source ${options.sourcePath}`);
  }
  return lines.join('\n') + '\n';
}
