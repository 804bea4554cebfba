// The filter with real VOMS proxies made by voms-proxy-fake: only verified FQANs decide.
import t from 'tap';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTestPki, makeProxy, tamperAcInPlace } from './kit/pki.js';
import { makeTestSite } from './kit/site.js';
import { runFilter } from '../src/filter/filter.js';
import { verifyTicket } from '../src/ticket/index.js';
import { findTicketLine } from '../src/header/scriptHeader.js';
import { matchGolden } from './kit/golden.js';
import { wnod } from './kit/cli.js';

const goldens = join(dirname(dirname(fileURLToPath(import.meta.url))), 'test/golden/filter');

t.test('BLAH script + real proxy → directives; the proxy, not BLAH, decides', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-fproxy-'));
  const pki = await makeTestPki(join(dir, 'pki'), { vo: 'atlas' });
  const site = await makeTestSite(join(dir, 'site'), { vomsdir: pki.vomsdir, certdir: pki.certdir });
  const template = await readFile(join(goldens, 'allow-proxy.sh'), 'utf8');
  const script = async (proxy: string): Promise<string> => {
    const p = join(dir, `blah-${Math.random().toString(36).slice(2)}.sh`);
    await writeFile(p, template.replace('@PROXY@', proxy));
    return p;
  };

  // BLAH claims a plain member, the proxy says production: the verified production role wins (rule 1, sl6 ok).
  const prod = await makeProxy(pki, { vo: 'atlas', fqans: ['/atlas/Role=production', '/atlas'] });
  const r = await runFilter(await script(prod), site.configPath);
  // the ticket changes with every run: in its line and in Torque's #PBS -v alike
  matchGolden(t, r.output.replaceAll(findTicketLine(r.output).ticket!, '<TOKEN>'), join(goldens, 'allow-proxy.out'));
  const claims = verifyTicket(findTicketLine(r.output).ticket!, site.key);
  t.equal(claims.fqan, '/atlas/Role=production/Capability=NULL');
  t.match(claims.dn, /Alice/);
  t.equal(claims.rule, 'atlas-production');

  // A plain atlas member: no rule matches at all (the site has only a production rule for atlas).
  const plain = await makeProxy(pki, { vo: 'atlas', fqans: ['/atlas'] });
  t.match((await runFilter(await script(plain), site.configPath)).output, /^# wnod-deny: no rule of this site authorises \/atlas\/Role=NULL\/Capability=NULL for image vm_sl6\n$/);

  // Bad proxies deny with the verifier's specific reason, never fall back to BLAH's FQANs or the VO.
  const tampered = await tamperAcInPlace(prod, join(dir, 'tampered.pem'));
  t.match((await runFilter(await script(tampered), site.configPath)).output, /^# wnod-deny: the job's VOMS proxy could not be verified \(bad-ac-signature: /);
  const expired = await makeProxy(pki, { vo: 'atlas', fqans: ['/atlas/Role=production'], acHours: 1, acPast: '2:00' });
  t.match((await runFilter(await script(expired), site.configPath)).output, /\(expired-ac: /);
  const noAc = await makeProxy(pki, { noAc: true });
  t.match((await runFilter(await script(noAc), site.configPath)).output, /\(no-ac: /);
  const impostor = await makeProxy(pki, { vo: 'atlas', aa: pki.impostorAa, fqans: ['/atlas/Role=production'] });
  t.match((await runFilter(await script(impostor), site.configPath)).output, /\(untrusted-aa-chain: /);

  // The VO BLAH passes must agree with the proxy's.
  const dteamScript = join(dir, 'dteam.sh');
  await writeFile(dteamScript, template.replace('@PROXY@', prod).replace("VirtualOrganisation='atlas'", "VirtualOrganisation='dteam'"));
  t.match((await runFilter(dteamScript, site.configPath)).output, /^# wnod-deny: the job names VO dteam but its proxy carries VO atlas\n$/);

  // wnod explain --proxy gives the same decision as the filter.
  const ex = await wnod(['explain', '--config', site.configPath, '--cereq', 'Member("vm_sl6", other.GlueHostApplicationSoftwareRunTimeEnvironment)', '--proxy', prod, '--json']);
  t.match(JSON.parse(ex.stdout), { allow: true, image: 'vm_sl6', rule: 'atlas-production', identity: { source: 'proxy', vo: 'atlas' } });
});

t.test('trust.require_verified_proxy: a verified proxy gets its ticket, a job without one is refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-fproxy-'));
  const pki = await makeTestPki(join(dir, 'pki'), { vo: 'atlas' });
  const site = await makeTestSite(join(dir, 'site'), { extra: { trust: { vomsdir: pki.vomsdir, certdir: pki.certdir, require_verified_proxy: true } } });
  const template = await readFile(join(goldens, 'allow-proxy.sh'), 'utf8');
  const prod = await makeProxy(pki, { vo: 'atlas', fqans: ['/atlas/Role=production', '/atlas'] });
  const withProxy = join(dir, 'with.sh');
  await writeFile(withProxy, template.replace('@PROXY@', prod));
  const ok = await runFilter(withProxy, site.configPath);
  t.equal(verifyTicket(findTicketLine(ok.output).ticket!, site.key).fqan, '/atlas/Role=production/Capability=NULL');
  // the same job with the pass list dropped (x509userproxy not passed): BLAH's FQAN list alone gets nothing
  const without = join(dir, 'without.sh');
  await writeFile(without, template.replace('@PROXY@', prod).split('\n').filter((l) => !l.startsWith('x509userproxy=')).join('\n'));
  t.match((await runFilter(without, site.configPath)).output, /^# wnod-deny: this CE requires a verified VOMS proxy and none reached the filter \(only the VO name alone\)/);
  // an expired AC still fails verification, with its reason (never a fallback to the VO)
  const expired = await makeProxy(pki, { vo: 'atlas', fqans: ['/atlas/Role=production'], acHours: 1, acPast: '2:00' });
  await writeFile(withProxy, template.replace('@PROXY@', expired));
  t.match((await runFilter(withProxy, site.configPath)).output, /^# wnod-deny: the job's VOMS proxy could not be verified \(expired-ac: /);
});
