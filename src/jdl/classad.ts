// Parser for the ClassAd subset used in a JDL CeRequirements expression (for `wnod explain --cereq`).
// Strict on purpose: anything outside the subset is an error with its position, never a silent guess.
import { WnodError } from '../util/errors.js';

export type CompareOp = '==' | '!=' | '=?=' | '=!=' | '<' | '<=' | '>' | '>=';
export type LogicalOp = '&&' | '||';

/** AST of the subset. `pos` is the 0-based character offset where the node starts in the source. */
export type Expr =
  | { kind: 'string'; value: string; pos: number }
  | { kind: 'integer'; value: number; pos: number }
  | { kind: 'real'; value: number; text: string; pos: number }
  | { kind: 'boolean'; value: boolean; pos: number }
  | { kind: 'undefined'; pos: number }
  /** `other.X`, `self.X` (also MY./TARGET.), or a bare `X`; `scope` keeps the user's spelling. */
  | { kind: 'attr'; scope?: string; name: string; pos: number }
  | { kind: 'list'; items: Expr[]; pos: number }
  /** A function call; only Member(x, y) is in the subset. `name` keeps the user's spelling. */
  | { kind: 'call'; name: string; args: Expr[]; pos: number }
  | { kind: 'unary'; op: '!' | '-' | '+'; operand: Expr; pos: number }
  /** Kept as a node because the ClassAd library keeps it, and blahpd skips a `(literal)` operand. */
  | { kind: 'paren'; inner: Expr; pos: number }
  | { kind: 'logical'; op: LogicalOp; left: Expr; right: Expr; pos: number }
  | { kind: 'compare'; op: CompareOp; left: Expr; right: Expr; pos: number };

/** A syntax error in a ClassAd expression; `position` is the 0-based character offset of the fault. */
export class ClassAdSyntaxError extends WnodError {
  constructor(readonly position: number, message: string) {
    super('classad-syntax', message);
  }
}

export const MAX_CLASSAD_LENGTH = 16_384;
/** Depth of the AST (every operator level counts), so that no later recursive walk can exhaust the stack. */
export const MAX_CLASSAD_DEPTH = 200;
const MAX_IDENTIFIER = 256;
const SCOPES = new Set(['other', 'self', 'my', 'target']);

type Token =
  | { t: 'str'; value: string; pos: number; end: number }
  | { t: 'int'; value: number; pos: number; end: number }
  | { t: 'real'; value: number; text: string; pos: number; end: number }
  | { t: 'id'; value: string; pos: number; end: number }
  | { t: 'op'; value: string; pos: number; end: number }
  | { t: 'eof'; pos: number; end: number };

/** Parse a CeRequirements-style expression into an AST; throws ClassAdSyntaxError with the position. */
export function parseClassAd(src: string): Expr {
  if (src.length > MAX_CLASSAD_LENGTH) {
    throw new ClassAdSyntaxError(MAX_CLASSAD_LENGTH,
      `expression is ${src.length} characters long, over the limit of ${MAX_CLASSAD_LENGTH}`);
  }
  return new Parser(src).parseAll();
}

/** "column 23" for one-line input, "line 2, column 5" otherwise (both 1-based). */
export function describePosition(src: string, position: number): string {
  const before = src.slice(0, position);
  const line = before.split('\n').length;
  const column = position - (before.lastIndexOf('\n') + 1) + 1;
  return src.includes('\n') ? `line ${line}, column ${column}` : `column ${column}`;
}

const TWO_CHAR_OPS = ['||', '&&', '==', '!=', '<=', '>=', '<<', '>>'];
const ONE_CHAR_OPS = '!<>(){},.-+';
const UNSUPPORTED = '*/%?:|&^~[];=@#$`';

class Lexer {
  private i = 0;
  constructor(private readonly src: string, private readonly fail: (pos: number, msg: string) => never) {}

  next(): Token {
    const s = this.src;
    while (this.i < s.length && /[ \t\r\n]/.test(s[this.i]!)) this.i++;
    const pos = this.i;
    if (pos >= s.length) return { t: 'eof', pos, end: pos };
    const c = s[pos]!;
    if (c === '"') return this.string(pos);
    if (c >= '0' && c <= '9') return this.number(pos);
    if (/[A-Za-z_]/.test(c)) {
      let j = pos + 1;
      while (j < s.length && /[A-Za-z0-9_]/.test(s[j]!)) j++;
      if (j - pos > MAX_IDENTIFIER) this.fail(pos, `name is ${j - pos} characters long, over ${MAX_IDENTIFIER}`);
      this.i = j;
      return { t: 'id', value: s.slice(pos, j), pos, end: j };
    }
    for (const op of ['=?=', '=!=']) {
      if (s.startsWith(op, pos)) {
        this.i = pos + 3;
        return { t: 'op', value: op, pos, end: this.i };
      }
    }
    const two = s.slice(pos, pos + 2);
    if (TWO_CHAR_OPS.includes(two)) {
      if (two === '<<' || two === '>>') this.fail(pos, `operator '${two}' is not supported in CeRequirements`);
      this.i = pos + 2;
      return { t: 'op', value: two, pos, end: this.i };
    }
    if (ONE_CHAR_OPS.includes(c)) {
      this.i = pos + 1;
      return { t: 'op', value: c, pos, end: this.i };
    }
    if (c === "'") {
      this.fail(pos, 'quoted attribute names are not supported (blahpd would copy them raw into a shell script)');
    }
    if (c === '=') this.fail(pos, "'=' is not a comparison: use '==' or '=?='");
    if (UNSUPPORTED.includes(c)) this.fail(pos, `operator '${c}' is not supported in CeRequirements`);
    const cp = s.codePointAt(pos)!;
    this.fail(pos, `unexpected character U+${cp.toString(16).padStart(4, '0')}`);
  }

  private string(pos: number): Token {
    const s = this.src;
    let out = '';
    let j = pos + 1;
    while (j < s.length) {
      const c = s[j]!;
      if (c === '"') {
        this.i = j + 1;
        return { t: 'str', value: out, pos, end: this.i };
      }
      if (c === '\\') {
        const n = s[j + 1];
        if (n === '"' || n === '\\') {
          out += n;
          j += 2;
          continue;
        }
        if (n === undefined) break;
        this.fail(j, `unsupported escape '\\${n}' in string (only \\" and \\\\ are)`);
      }
      const cp = c.codePointAt(0)!;
      if (cp < 0x20 || cp === 0x7f) {
        this.fail(j, `control character U+${cp.toString(16).padStart(4, '0')} in string`);
      }
      out += c;
      j++;
    }
    this.fail(pos, 'string has no closing \'"\'');
  }

  private number(pos: number): Token {
    const s = this.src;
    const m = /^[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?/.exec(s.slice(pos, pos + 400))!;
    const text = m[0];
    const end = pos + text.length;
    if (end < s.length && /[A-Za-z0-9_.]/.test(s[end]!)) this.fail(end, `bad number '${s.slice(pos, end + 1)}'`);
    this.i = end;
    if (m[1] === undefined && m[2] === undefined) {
      const value = Number(text);
      if (!Number.isSafeInteger(value)) this.fail(pos, `integer ${text} is too large`);
      return { t: 'int', value, pos, end };
    }
    const value = Number(text);
    if (!Number.isFinite(value)) this.fail(pos, `real ${text} is out of range`);
    return { t: 'real', value, text, pos, end };
  }
}

const COMPARE_OPS: ReadonlySet<string> = new Set(['==', '!=', '=?=', '=!=', '<', '<=', '>', '>=']);

class Parser {
  private readonly lexer: Lexer;
  private tok: Token;
  private depth = 0;

  constructor(private readonly src: string) {
    this.lexer = new Lexer(src, (pos, msg) => this.fail(pos, msg));
    this.tok = this.lexer.next();
  }

  parseAll(): Expr {
    if (this.tok.t === 'eof') this.fail(this.tok.pos, 'empty expression');
    const e = this.or();
    const rest = this.tok as Token;
    if (rest.t !== 'eof') this.fail(rest.pos, `expected an operator or the end, found ${this.show(rest)}`);
    return e;
  }

  private fail(pos: number, msg: string): never {
    throw new ClassAdSyntaxError(pos, `${describePosition(this.src, pos)}: ${msg}`);
  }

  private show(t: Token): string {
    if (t.t === 'eof') return 'the end of the expression';
    const text = this.src.slice(t.pos, t.end);
    return `'${text.length > 30 ? text.slice(0, 30) + '…' : text}'`;
  }

  private advance(): Token {
    const t = this.tok;
    this.tok = this.lexer.next();
    return t;
  }

  private isOp(v: string): boolean {
    return this.tok.t === 'op' && this.tok.value === v;
  }

  private expect(v: string, after: string): void {
    if (!this.isOp(v)) this.fail(this.tok.pos,
      `expected '${v}' after ${after}, found ${this.show(this.tok)}`);
    this.advance();
  }

  /** Every node built counts one level; a chain `a && b && c` deepens the tree as much as nesting does. */
  private enter(pos: number): void {
    if (++this.depth > MAX_CLASSAD_DEPTH) this.fail(pos, `expression nested deeper than ${MAX_CLASSAD_DEPTH} levels`);
  }

  private or(): Expr {
    return this.chain(() => this.and(), (v) => v === '||');
  }

  private and(): Expr {
    return this.chain(() => this.comparison(), (v) => v === '&&');
  }

  private chain(operand: () => Expr, accepts: (op: string) => boolean): Expr {
    const saved = this.depth;
    let left = operand();
    while (this.tok.t === 'op' && accepts(this.tok.value)) {
      const op = this.advance() as { value: LogicalOp; pos: number };
      this.enter(op.pos);
      const right = operand();
      left = { kind: 'logical', op: op.value, left, right, pos: left.pos };
    }
    this.depth = saved;
    return left;
  }

  private comparison(): Expr {
    const saved = this.depth;
    let left = this.unary();
    for (;;) {
      let op: CompareOp | undefined;
      if (this.tok.t === 'op' && COMPARE_OPS.has(this.tok.value)) op = this.tok.value as CompareOp;
      // ClassAd's keyword forms of the meta-comparisons.
      else if (this.tok.t === 'id' && /^is$/i.test(this.tok.value)) op = '=?=';
      else if (this.tok.t === 'id' && /^isnt$/i.test(this.tok.value)) op = '=!=';
      if (!op) break;
      const t = this.advance();
      this.enter(t.pos);
      const right = this.unary();
      left = { kind: 'compare', op, left, right, pos: left.pos };
    }
    this.depth = saved;
    return left;
  }

  private unary(): Expr {
    if (this.tok.t === 'op' && (this.tok.value === '!' || this.tok.value === '-' || this.tok.value === '+')) {
      const t = this.advance() as { value: '!' | '-' | '+'; pos: number };
      this.enter(t.pos);
      const operand = this.unary();
      this.depth--;
      return { kind: 'unary', op: t.value, operand, pos: t.pos };
    }
    return this.primary();
  }

  private primary(): Expr {
    const t = this.tok;
    switch (t.t) {
      case 'str':
        this.advance();
        return { kind: 'string', value: t.value, pos: t.pos };
      case 'int':
        this.advance();
        return { kind: 'integer', value: t.value, pos: t.pos };
      case 'real':
        this.advance();
        return { kind: 'real', value: t.value, text: t.text, pos: t.pos };
      case 'id':
        return this.identifier();
      case 'eof':
        this.fail(t.pos, 'expression ends where an operand was expected');
      // falls through: fail() never returns
      case 'op':
        if (t.value === '(') {
          this.advance();
          this.enter(t.pos);
          const inner = this.or();
          this.expect(')', 'the parenthesised expression');
          this.depth--;
          return { kind: 'paren', inner, pos: t.pos };
        }
        if (t.value === '{') return this.list();
        this.fail(t.pos, `expected an operand, found ${this.show(t)}`);
    }
  }

  private identifier(): Expr {
    const t = this.advance() as { value: string; pos: number };
    const lower = t.value.toLowerCase();
    if (lower === 'true' || lower === 'false') return { kind: 'boolean', value: lower === 'true', pos: t.pos };
    if (lower === 'undefined') return { kind: 'undefined', pos: t.pos };
    if (lower === 'is' || lower === 'isnt') this.fail(t.pos, `'${t.value}' needs an operand on its left`);
    if (this.isOp('(')) return this.call(t.value, t.pos);
    if (this.isOp('.')) {
      if (!SCOPES.has(lower)) {
        this.fail(t.pos, `'${t.value}.' is not a scope: use other., self., my. or target.`);
      }
      this.advance();
      const n = this.tok;
      if (n.t !== 'id') this.fail(n.pos, `expected an attribute name after '${t.value}.', found ${this.show(n)}`);
      this.advance();
      if (this.isOp('.')) this.fail(this.tok.pos, 'nested attribute references are not supported');
      return { kind: 'attr', scope: t.value, name: n.value, pos: t.pos };
    }
    return { kind: 'attr', name: t.value, pos: t.pos };
  }

  private call(name: string, pos: number): Expr {
    if (name.toLowerCase() !== 'member') {
      this.fail(pos, `function '${name}' is not supported in CeRequirements (only Member(value, list) is)`);
    }
    this.advance(); // '('
    this.enter(pos);
    const args: Expr[] = [];
    if (!this.isOp(')')) {
      for (;;) {
        args.push(this.or());
        if (!this.isOp(',')) break;
        this.advance();
      }
    }
    this.expect(')', `the arguments of ${name}`);
    if (args.length !== 2) this.fail(pos, `${name} takes 2 arguments, found ${args.length}`);
    this.depth--;
    return { kind: 'call', name, args, pos };
  }

  private list(): Expr {
    const open = this.advance();
    this.enter(open.pos);
    const items: Expr[] = [];
    if (!this.isOp('}')) {
      for (;;) {
        items.push(this.or());
        if (!this.isOp(',')) break;
        this.advance();
      }
    }
    this.expect('}', 'the list items');
    this.depth--;
    return { kind: 'list', items, pos: open.pos };
  }
}
