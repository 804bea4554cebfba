import t from 'tap';
import { attrLine, dnLine, entryRecord, foldLine, FOLD_WIDTH, LdifError, modifyRecord, needsBase64 } from '../src/glue/ldif.js';

/** RFC 2849 unfolding: a line starting with one space continues the previous one. */
const unfold = (s: string) => s.replace(/\n /g, '');

t.test('values that are not SAFE-STRINGs are base64-encoded, others written plain', async (t) => {
  for (const v of [' lead', ':colon', '<less', 'trail ', 'line\nbreak', 'cr\r', 'nul\0', 'Zürich', '日本']) {
    t.ok(needsBase64(v), JSON.stringify(v));
    const line = unfold(attrLine('a', v));
    t.match(line, /^a:: /);
    t.equal(Buffer.from(line.slice(4), 'base64').toString('utf8'), v, `round trip ${JSON.stringify(v)}`);
  }
  for (const v of ['', 'vm_sl6', 'a: b', 'x<y', 'tab\tinside', '#hash']) {
    t.notOk(needsBase64(v), JSON.stringify(v));
    t.equal(attrLine('a', v), `a: ${v}`);
  }
});

t.test('long lines fold at 76 octets and unfold to the original', async (t) => {
  const v = 'x'.repeat(500);
  const folded = attrLine('GLUE2ApplicationEnvironmentDescription', v);
  for (const l of folded.split('\n')) t.ok(l.length <= FOLD_WIDTH, `line of ${l.length}`);
  t.ok(folded.split('\n').slice(1).every((l) => l.startsWith(' ')), 'continuations start with one space');
  t.equal(unfold(folded), `GLUE2ApplicationEnvironmentDescription: ${v}`);
  t.equal(foldLine('short'), 'short');
  t.equal(foldLine('y'.repeat(FOLD_WIDTH)), 'y'.repeat(FOLD_WIDTH), 'exactly 76 stays on one line');
  t.equal(foldLine('y'.repeat(FOLD_WIDTH + 1)).split('\n').length, 2);
});

t.test('a DN that would need dn:: is refused, never written', async (t) => {
  t.throws(() => dnLine('GlueSubClusterUniqueID=zürich,o=grid'), LdifError);
  t.throws(() => dnLine(' o=grid'), LdifError);
  t.throws(() => dnLine(''), LdifError);
  t.throws(() => entryRecord({ dn: 'cn=a\nb,o=grid', attrs: [] }), /dn::/);
  t.equal(dnLine('o=grid'), 'dn: o=grid');
});

t.test('records: entry and modify forms, bad attribute names refused', async (t) => {
  t.equal(entryRecord({ dn: 'cn=x,o=glue', attrs: [['objectClass', 'top'], ['cn', 'x']] }), 'dn: cn=x,o=glue\nobjectClass: top\ncn: x\n\n');
  t.equal(modifyRecord('cn=x,o=grid', [{ op: 'add', attr: 'A', values: ['1', '2'] }]),
    'dn: cn=x,o=grid\nchangetype: modify\nadd: A\nA: 1\nA: 2\n-\n\n');
  t.throws(() => entryRecord({ dn: 'cn=x,o=glue', attrs: [['bad name', 'v']] }), /invalid attribute name/);
  t.throws(() => entryRecord({ dn: 'cn=x,o=glue', attrs: [['a:b', 'v']] }), LdifError);
});
