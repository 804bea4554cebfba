import t from 'tap';
import { canonicalFqan, canonicalFqanPattern, fqanMatches, fqanInVo, VomsError } from '../src/voms/index.js';

t.test('canonical long form', async (t) => {
  const table: [string, string][] = [
    ['/atlas', '/atlas/Role=NULL/Capability=NULL'],
    ['/atlas/Role=NULL', '/atlas/Role=NULL/Capability=NULL'],
    ['/atlas/Role=NULL/Capability=NULL', '/atlas/Role=NULL/Capability=NULL'],
    ['/atlas/Role=production', '/atlas/Role=production/Capability=NULL'],
    ['/atlas/de/Role=lcgadmin', '/atlas/de/Role=lcgadmin/Capability=NULL'],
    ['/atlas/de/sub-1.x_y', '/atlas/de/sub-1.x_y/Role=NULL/Capability=NULL'],
    ['/atlas/Capability=NULL', '/atlas/Role=NULL/Capability=NULL'],
    ['/vo.example.org/Role=pilot/Capability=cap', '/vo.example.org/Role=pilot/Capability=cap'],
  ];
  for (const [input, want] of table) t.equal(canonicalFqan(input), want, input);
});

t.test('garbage is refused with VomsError(malformed)', async (t) => {
  const garbage = ['', 'atlas', '/', '//atlas', '/atlas/', '/atlas//de', '/atlas/Role=', '/atlas/Role=a/Role=b',
    '/atlas/Role=x/de', '/atlas/Capability=x/Role=y', '/atlas/*', '/atlas/Role=*', '/at las', '/atlas/..', '/../etc',
    '/atlas/Role=pro duction', '/atlas;rm', '/atlas/\u00e9', 'userFQAN=/atlas', '/atlas/NULL', '/' + 'a'.repeat(2000)];
  for (const g of garbage) {
    t.throws(() => canonicalFqan(g), { name: 'VomsError', code: 'malformed' }, JSON.stringify(g.slice(0, 40)));
  }
});

t.test('Argus pattern matching', async (t) => {
  // [pattern, fqan, expected]
  const table: [string, string, boolean][] = [
    ['/atlas', '/atlas', true],
    ['/atlas', '/atlas/Role=NULL/Capability=NULL', true],
    ['/atlas/Role=NULL', '/atlas', true],
    ['/atlas', '/atlas/Role=production', false],
    ['/atlas', '/atlas/de', false],
    ['/atlas/Role=production', '/atlas/Role=production', true],
    ['/atlas/Role=production', '/atlas/Role=production/Capability=NULL', true],
    ['/atlas/Role=production', '/atlas/Role=pilot', false],
    ['/atlas/Role=production', '/atlas/de/Role=production', false],
    ['/atlas/Role=production', '/atlasx/Role=production', false],
    ['/atlas/*', '/atlas', true],
    ['/atlas/*', '/atlas/de', true],
    ['/atlas/*', '/atlas/de/munich', true],
    ['/atlas/*', '/atlas/Role=production', false],
    ['/atlas/*', '/atlas/de/Role=production', false],
    ['/atlas/*', '/atlasx', false],
    ['/atlas/*', '/cms', false],
    ['/atlas/*/Role=*', '/atlas', true],
    ['/atlas/*/Role=*', '/atlas/Role=production', true],
    ['/atlas/*/Role=*', '/atlas/de/Role=lcgadmin', true],
    ['/atlas/*/Role=*', '/cms/Role=production', false],
    ['/atlas/Role=*', '/atlas/Role=pilot', true],
    ['/atlas/Role=*', '/atlas/de/Role=pilot', false],
    ['/atlas/de/*', '/atlas', false],
    ['/atlas/de/*', '/atlas/de/x', true],
    ['/atlas/Role=production/Capability=*', '/atlas/Role=production/Capability=x', true],
    ['/atlas/Role=production', '/atlas/Role=production/Capability=x', false],
    // garbage on either side never matches
    ['/atlas/*', 'garbage', false],
    ['atlas', '/atlas', false],
    ['/atlas/*/*', '/atlas/a/b', false],
    ['/*', '/atlas', false],
  ];
  for (const [p, f, want] of table) t.equal(fqanMatches(p, f), want, `${p} vs ${f}`);
});

t.test('pattern canonical form and VO membership', async (t) => {
  t.equal(canonicalFqanPattern('/atlas/*'), '/atlas/*/Role=NULL/Capability=NULL');
  t.equal(canonicalFqanPattern('/atlas/*/Role=*'), '/atlas/*/Role=*/Capability=NULL');
  t.throws(() => canonicalFqanPattern('/atlas/*/x'), VomsError);
  t.ok(fqanInVo('/atlas/Role=NULL/Capability=NULL', 'atlas'));
  t.ok(fqanInVo('/atlas', 'atlas'));
  t.notOk(fqanInVo('/atlasx/Role=NULL/Capability=NULL', 'atlas'), 'a VO name prefix is not membership');
});
