// `wnod voms inspect`: JSON shapes, text output and exit codes of the built CLI on real proxies.
import t from 'tap';
import { rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../src/util/run.js';
import { repoRoot, wnod, wnodBin, ensureBuilt } from './kit/cli.js';
import { type TestPki, makeTestPki, makeProxy } from './kit/pki.js';

let pki: TestPki;
let dirs: string[];
t.before(async () => {
  await ensureBuilt();
  pki = await makeTestPki();
  t.teardown(() => rm(pki.dir, { recursive: true, force: true }));
  dirs = ['--vomsdir', pki.vomsdir, '--certdir', pki.certdir];
});

t.test('--json on a valid proxy: exactly one JSON object, exit 0', async (t) => {
  const p = await makeProxy(pki, { fqans: ['/testvo/Role=production', '/testvo/sub'] });
  const r = await wnod(['voms', 'inspect', '--proxy', p, ...dirs, '--json']);
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(r.stdout.trim().split('\n').length, 1, 'one line');
  const o = JSON.parse(r.stdout);
  t.equal(o.ok, true);
  t.equal(o.vo, 'testvo');
  t.same(o.fqans, ['/testvo/Role=production/Capability=NULL', '/testvo/sub/Role=NULL/Capability=NULL']);
  t.equal(o.primary, '/testvo/Role=production/Capability=NULL');
  t.equal(o.issuer, pki.aa.subject);
  t.match(o.notBefore, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.ok(Date.parse(o.notAfter) > Date.parse(o.notBefore));
});

t.test('text output on a valid proxy', async (t) => {
  const p = await makeProxy(pki, { fqans: ['/testvo/Role=pilot'] });
  const r = await wnod(['voms', 'inspect', '--proxy', p, ...dirs]);
  t.equal(r.exitCode, 0, r.stderr);
  t.match(r.stdout, /^VO: +testvo$/m);
  t.match(r.stdout, /^Primary: +\/testvo\/Role=pilot\/Capability=NULL$/m);
  t.match(r.stdout, new RegExp(`^AC issuer: +${pki.aa.subject.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  t.match(r.stdout, /^Validity: +\S+Z – \S+Z$/m);
});

t.test('failures: exit 1 with one specific reason', async (t) => {
  const cases: [string, string, string[]][] = [
    ['no-ac', await makeProxy(pki, { noAc: true }), dirs],
    ['unknown-aa', await makeProxy(pki, { aa: pki.strangerAa }), dirs],
    ['untrusted-aa-chain', await makeProxy(pki, { aa: pki.impostorAa }), dirs],
    ['expired-ac', await makeProxy(pki, { acPast: '3:00', acHours: 1 }), dirs],
    ['fqan-outside-vo', await makeProxy(pki, { fqans: ['/elsewhere'] }), dirs],
    ['unreadable', join(pki.dir, 'missing.pem'), dirs],
  ];
  for (const [code, proxy, d] of cases) {
    const j = await wnod(['voms', 'inspect', '--proxy', proxy, ...d, '--json']);
    t.equal(j.exitCode, 1, `${code}: exit 1`);
    const o = JSON.parse(j.stdout);
    t.same(Object.keys(o).sort(), ['error', 'ok'], `${code}: {"ok":false,"error":…}`);
    t.equal(o.ok, false);
    t.match(o.error, new RegExp(`^${code}: `), `${code}: error names the reason`);
    const txt = await wnod(['voms', 'inspect', '--proxy', proxy, ...d]);
    t.equal(txt.exitCode, 1);
    t.equal(txt.stdout, '', `${code}: nothing on stdout without --json`);
    t.match(txt.stderr, new RegExp(`^wnod voms inspect: ${code}: `), `${code}: reason on stderr`);
  }
  const garbage = join(pki.dir, 'garbage.pem');
  await writeFile(garbage, 'not a proxy\n');
  const g = await wnod(['voms', 'inspect', '--proxy', garbage, ...dirs, '--json']);
  t.equal(g.exitCode, 1);
  t.match(JSON.parse(g.stdout).error, /^malformed: /);
});

t.test('default dirs come from --config trust paths', async (t) => {
  const sample = await readFile(join(repoRoot, 'etc/wnod.yaml'), 'utf8');
  const cfg = join(pki.dir, 'wnod.yaml');
  await writeFile(cfg, sample.replace('/etc/grid-security/vomsdir', pki.vomsdir).replace('/etc/grid-security/certificates', pki.certdir));
  const p = await makeProxy(pki);
  const r = await wnod(['voms', 'inspect', '--proxy', p, '--config', cfg, '--json']);
  t.equal(r.exitCode, 0, r.stdout + r.stderr);
  t.equal(JSON.parse(r.stdout).vo, 'testvo');
  const noDirs = await wnod(['voms', 'inspect', '--proxy', p, '--vomsdir', join(pki.dir, 'nowhere'), '--certdir', pki.certdir, '--json']);
  t.equal(noDirs.exitCode, 1);
  t.match(JSON.parse(noDirs.stdout).error, /^unknown-aa: /, 'an empty vomsdir knows no AA');
});

t.test('usage errors exit 2', async (t) => {
  for (const args of [['voms'], ['voms', 'inspect'], ['voms', 'inspect', '--proxy', 'x', '--bogus'], ['voms', 'frobnicate']]) {
    const r = await wnod(args);
    t.equal(r.exitCode, 2, args.join(' '));
  }
  const h = await wnod(['voms', 'inspect', '--help']);
  t.equal(h.exitCode, 0);
  t.match(h.stdout, /--proxy FILE/);
});
