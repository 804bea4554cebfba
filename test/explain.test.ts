import t from 'tap';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestSite } from './kit/site.js';
import { wnod } from './kit/cli.js';

const RTE = 'other.GlueHostApplicationSoftwareRunTimeEnvironment';

t.test('wnod explain: --cereq goes through the same unwinding as blahpd', async (t) => {
  const site = await makeTestSite(await mkdtemp(join(tmpdir(), 'wnod-explain-')));
  const c = site.configPath;
  const allow = await wnod(['explain', '--config', c, '--cereq', `Member("vm_sl6", ${RTE}) && other.GlueHostMainMemoryRAMSize >= 4000`, '--fqan', '/dteam', '--json']);
  t.equal(allow.exitCode, 0, allow.stderr);
  t.same(JSON.parse(allow.stdout), {
    allow: true, image: 'vm_sl6', cpus: 1, memoryMB: 4000, rule: 'dteam', queue: 'wnod', digest: JSON.parse(allow.stdout).digest,
    requested: true, identity: { vo: 'dteam', fqans: ['/dteam/Role=NULL/Capability=NULL'], source: 'blah' }, tags: ['vm_sl6'],
  });

  const eq = await wnod(['explain', '--config', c, '--cereq', `${RTE} == "vm_el9"`, '--fqan', '/atlas/Role=production', '--json']);
  t.equal(eq.exitCode, 1);
  t.match(JSON.parse(eq.stdout), { allow: false, reason: /is not authorised for image vm_el9 \(rule atlas-production allows: vm_sl6\)/ });

  // blahpd emits both branches of || and loses negation: explain shows what the filter will really see.
  const or = await wnod(['explain', '--config', c, '--cereq', `Member("vm_sl6", ${RTE}) || Member("vm_el9", ${RTE})`, '--vo', 'dteam', '--json']);
  t.match(JSON.parse(or.stdout), { allow: false, reason: /requests 2 different images/ });
  const not = await wnod(['explain', '--config', c, '--cereq', `!Member("vm_sl6", ${RTE})`, '--vo', 'dteam', '--json']);
  t.match(JSON.parse(not.stdout), { allow: true, image: 'vm_sl6' }, 'negation is lost in BLAH, and explain says so by allowing vm_sl6');

  const none = await wnod(['explain', '--config', c, '--cereq', 'other.GlueCEImplementationName == "CREAM"', '--vo', 'dteam']);
  t.equal(none.exitCode, 0);
  t.match(none.stdout, /no image requested: the rule's default/);
  t.match(none.stdout, /image: +vm_el9/);
});

t.test('wnod explain: syntax errors point at the position; usage errors exit 2', async (t) => {
  const site = await makeTestSite(await mkdtemp(join(tmpdir(), 'wnod-explain-')));
  const bad = await wnod(['explain', '--config', site.configPath, '--cereq', `Member("vm_sl6", ${RTE}) && (other.X >`, '--vo', 'dteam', '--json']);
  t.equal(bad.exitCode, 2);
  t.match(JSON.parse(bad.stdout).reason, /^CeRequirements: column \d+: /);
  const both = await wnod(['explain', '--config', site.configPath, '--cereq', 'true', '--fqan', '/a', '--vo', 'a']);
  t.equal(both.exitCode, 2);
  t.match(both.stderr, /exactly one of --proxy, --fqan and --vo/);
  const badFqan = await wnod(['explain', '--config', site.configPath, '--cereq', 'true', '--fqan', 'not-an-fqan', '--json']);
  t.equal(badFqan.exitCode, 2);
  t.match(JSON.parse(badFqan.stdout).reason, /^--fqan: /);
});

t.test('wnod explain --req-script reads a BLAH temp script', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-explain-'));
  const site = await makeTestSite(dir);
  const s = join(dir, 'req.sh');
  await writeFile(s, `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_el9"'\nblah_opt_mpinodes=3\n`);
  const r = await wnod(['explain', '--config', site.configPath, '--req-script', s, '--fqan', '/dteam/Role=NULL/Capability=NULL', '--json']);
  t.match(JSON.parse(r.stdout), { allow: true, image: 'vm_el9', cpus: 3, queue: 'wnod_el9' });
});

t.test('wnod check reports every problem and exits 1; a good file exits 0', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-check-'));
  const site = await makeTestSite(dir);
  const ok = await wnod(['check', '--config', site.configPath]);
  t.equal(ok.exitCode, 0, ok.stderr);
  t.match(ok.stdout, /OK — 2 images \(vm_sl6, vm_el9\), 2 rules/);
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'site: {name: x, ce_host: "a b"}\nimages: []\npolicy:\n  rules: [{name: r, images: [vm_x]}]\nbogus: 1\n');
  const r = await wnod(['check', '--config', bad, '--json']);
  t.equal(r.exitCode, 1);
  const j = JSON.parse(r.stdout);
  t.equal(j.ok, false);
  t.same(j.problems.map((p: { line: number; key: string }) => `${p.line}:${p.key}`).sort(),
    ['1:site.ce_host', '4:policy.rules[0]', '4:policy.rules[0].images[0]', '5:bogus'].sort());
});
