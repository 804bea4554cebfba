import t from 'tap';
import { ClassAdSyntaxError, MAX_CLASSAD_DEPTH, MAX_CLASSAD_LENGTH, parseClassAd } from '../src/jdl/classad.js';

t.test('the subset parses into the expected tree', async (t) => {
  t.same(parseClassAd('Member("vm_sl6", other.GlueHostApplicationSoftwareRunTimeEnvironment)'), {
    kind: 'call', name: 'Member', pos: 0, args: [
      { kind: 'string', value: 'vm_sl6', pos: 7 },
      { kind: 'attr', scope: 'other', name: 'GlueHostApplicationSoftwareRunTimeEnvironment', pos: 17 },
    ],
  });
  t.same(parseClassAd('other.A >= 1000 && 2800 <= other.B || !(self.C == "x")'), {
    kind: 'logical', op: '||', pos: 0,
    left: {
      kind: 'logical', op: '&&', pos: 0,
      left: { kind: 'compare', op: '>=', pos: 0, left: { kind: 'attr', scope: 'other', name: 'A', pos: 0 },
        right: { kind: 'integer', value: 1000, pos: 11 } },
      right: { kind: 'compare', op: '<=', pos: 19, left: { kind: 'integer', value: 2800, pos: 19 },
        right: { kind: 'attr', scope: 'other', name: 'B', pos: 27 } },
    },
    right: { kind: 'unary', op: '!', pos: 38, operand: { kind: 'paren', pos: 39, inner: {
      kind: 'compare', op: '==', pos: 40, left: { kind: 'attr', scope: 'self', name: 'C', pos: 40 },
      right: { kind: 'string', value: 'x', pos: 50 } } } },
  });
});

t.test('precedence: && binds tighter than ||, comparisons tighter than &&', async (t) => {
  const e = parseClassAd('a == 1 || b == 2 && c == 3');
  t.match(e, { kind: 'logical', op: '||', right: { kind: 'logical', op: '&&' } });
  t.match(parseClassAd('a < 1 == true'), { kind: 'compare', op: '==', left: { kind: 'compare', op: '<' } });
});

t.test('literals and operators', async (t) => {
  t.match(parseClassAd('"a\\"b\\\\c"'), { kind: 'string', value: 'a"b\\c' });
  t.match(parseClassAd('"café"'), { kind: 'string', value: 'café' });
  t.match(parseClassAd('1.5'), { kind: 'real', value: 1.5, text: '1.5' });
  t.match(parseClassAd('2e3'), { kind: 'real', value: 2000 });
  t.match(parseClassAd('TRUE'), { kind: 'boolean', value: true });
  t.match(parseClassAd('false'), { kind: 'boolean', value: false });
  t.match(parseClassAd('Undefined'), { kind: 'undefined' });
  t.match(parseClassAd('-5'), { kind: 'unary', op: '-', operand: { kind: 'integer', value: 5 } });
  t.match(parseClassAd('{1, "a", {}}'), { kind: 'list', items: [{ kind: 'integer' }, { kind: 'string' }, { kind: 'list', items: [] }] });
  for (const op of ['==', '!=', '=?=', '=!=', '<', '<=', '>', '>='] as const) {
    t.match(parseClassAd(`x ${op} 1`), { kind: 'compare', op }, op);
  }
  t.match(parseClassAd('x is undefined'), { kind: 'compare', op: '=?=' });
  t.match(parseClassAd('x isnt undefined'), { kind: 'compare', op: '=!=' });
  t.match(parseClassAd('MY.x == TARGET.y'), { left: { scope: 'MY' }, right: { scope: 'TARGET' } });
  t.match(parseClassAd('member(1, Other.X)'), { kind: 'call', name: 'member' });
  t.match(parseClassAd('\n  other.X\n   >= 1\n'), { kind: 'compare' }, 'newlines are blanks');
});

t.test('errors carry the position and say what was expected', async (t) => {
  const cases: Array<[string, number, RegExp]> = [
    ['Member("a", other.X', 19, /^column 20: expected '\)' after the arguments of Member, found the end of the expression$/],
    ['(other.X == 1', 13, /^column 14: expected '\)' after the parenthesised expression/],
    ['other.X == ', 11, /^column 12: expression ends where an operand was expected$/],
    ['other.X = 1', 8, /^column 9: '=' is not a comparison: use '==' or '=\?='$/],
    ['other.X == "abc', 11, /^column 12: string has no closing '"'$/],
    ['other.X == "a\\nb"', 13, /^column 14: unsupported escape '\\n' in string/],
    ['other.X == "a\tb"', 13, /control character U\+0009 in string/],
    ["'weird name' == 1", 0, /quoted attribute names are not supported/],
    ['other.X + 1', 8, /^column 9: operator '\+'|expected an operator or the end/],
    ['other.X * 2', 8, /operator '\*' is not supported/],
    ['a ? b : c', 2, /operator '\?' is not supported/],
    ['RegExp("a", other.X)', 0, /function 'RegExp' is not supported in CeRequirements/],
    ['Member("a")', 0, /Member takes 2 arguments, found 1/],
    ['Member("a", other.X, 3)', 0, /Member takes 2 arguments, found 3/],
    ['foo.X == 1', 0, /'foo\.' is not a scope/],
    ['other.', 6, /expected an attribute name after 'other\.', found the end/],
    ['other.a.b', 7, /nested attribute references are not supported/],
    ['12abc', 2, /bad number '12a'/],
    ['99999999999999999999', 0, /integer 99999999999999999999 is too large/],
    ['1e999', 0, /real 1e999 is out of range/],
    ['other.X == 1 2', 13, /expected an operator or the end, found '2'/],
    ['', 0, /empty expression/],
    ['   ', 3, /empty expression/],
    ['x == 1 ||', 9, /expression ends where an operand was expected/],
    ['{1, 2', 5, /expected '}' after the list items/],
    ['is 1', 0, /'is' needs an operand/],
    ['x \u00e9', 2, /unexpected character U\+00e9/],
    ['a == 1 &&\n  b ==', 16, /^line 2, column 7: expression ends/],
  ];
  for (const [src, position, re] of cases) {
    try {
      parseClassAd(src);
      t.fail(`no error for ${JSON.stringify(src)}`);
    } catch (err) {
      t.ok(err instanceof ClassAdSyntaxError, `${JSON.stringify(src)} throws ClassAdSyntaxError`);
      t.equal((err as ClassAdSyntaxError).position, position, `${JSON.stringify(src)} position`);
      t.match((err as Error).message, re, JSON.stringify(src));
      t.equal((err as ClassAdSyntaxError).code, 'classad-syntax');
    }
  }
});

t.test('bounds: length and nesting depth', async (t) => {
  t.throws(() => parseClassAd('1'.padEnd(MAX_CLASSAD_LENGTH + 1, ' ')), ClassAdSyntaxError);
  const nested = (n: number) => '('.repeat(n) + '1' + ')'.repeat(n);
  t.doesNotThrow(() => parseClassAd(nested(MAX_CLASSAD_DEPTH - 1)));
  t.throws(() => parseClassAd(nested(MAX_CLASSAD_DEPTH + 1)), /nested deeper than 200 levels/);
  t.throws(() => parseClassAd('!'.repeat(5000) + 'x'), ClassAdSyntaxError);
  t.throws(() => parseClassAd(Array(1000).fill('x == 1').join(' && ')), /nested deeper/);
  t.throws(() => parseClassAd('{'.repeat(3000)), ClassAdSyntaxError);
  t.doesNotThrow(() => parseClassAd(Array(100).fill('Member("t", other.X)').join(' && ')));
});
