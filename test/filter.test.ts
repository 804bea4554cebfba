import t from 'tap';
import { mkdtemp, writeFile, chmod, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runFilter } from '../src/filter/filter.js';
import { makeTestSite } from './kit/site.js';
import { verifyTicket } from '../src/ticket/index.js';
import { findTicketLine } from '../src/header/scriptHeader.js';
import { matchGolden } from './kit/golden.js';
import { wnod } from './kit/cli.js';
import { parseClassAd } from '../src/jdl/classad.js';
import { renderBlahScript, unwindCeRequirements } from '../src/jdl/unwind.js';
import { gate } from '../src/filter/gate.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const goldens = join(root, 'test/golden/filter');
const now = new Date();

/** The ticket changes with every run (nonce, time): goldens hold a placeholder, the token is checked apart. */
function normalise(out: string): { text: string; token?: string } {
  const found = findTicketLine(out);
  // the ticket line, and the ticket again where Torque's directives carry it (#PBS -v WNOD_TICKET=)
  const text = out.replace(/^(# wnod-ticket: ).*$/m, '$1<TOKEN>');
  return { text: found.ticket ? text.replaceAll(found.ticket, '<TOKEN>') : text, ...(found.ticket ? { token: found.ticket } : {}) };
}

t.test('golden: BLAH temp scripts → exact directive lines', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-filter-'));
  const site = await makeTestSite(dir);
  const trusting = await makeTestSite(join(dir, 'trusting'), { extra: { trust: { vomsdir: join(dir, 'v'), certdir: join(dir, 'c'), blah_fqans_verified: true } } });
  const cases: [string, string, (claims: ReturnType<typeof verifyTicket>) => void][] = [
    ['allow-vo', site.configPath, (c) => {
      t.equal(c.image, 'vm_sl6'); t.equal(c.vo, 'dteam'); t.equal(c.cpus, 2); t.equal(c.memoryMB, 3000);
      t.equal(c.dn, '/DC=org/DC=wnod/CN=Alice Tester', 'DN from BLAH, unverified, recorded for accounting');
      t.equal(c.fqan, '', 'no FQAN without a proxy or a trusted BLAH list');
    }],
    ['deny-unknown', site.configPath, () => t.fail('no ticket expected')],
    ['deny-role', trusting.configPath, () => t.fail('no ticket expected')],
    ['deny-ambiguous', site.configPath, () => t.fail('no ticket expected')],
    ['allow-blah-fqan-default', trusting.configPath, (c) => {
      t.equal(c.image, 'vm_sl6'); t.equal(c.rule, 'atlas-production'); t.equal(c.fqan, '/atlas/Role=production/Capability=NULL');
    }],
  ];
  for (const [name, cfg, check] of cases) {
    const r = await runFilter(join(goldens, `${name}.sh`), cfg, now);
    const { text, token } = normalise(r.output);
    matchGolden(t, text, join(goldens, `${name}.out`));
    if (token) check(verifyTicket(token, name.includes('blah') ? trusting.key : site.key, now));
  }
});

t.test('golden: Slurm directives (lrm.type slurm): #SBATCH lines, the ticket in --comment and as a comment, never #PBS', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-filter-'));
  const site = await makeTestSite(dir, { images: [{ id: 'vm_sl6', title: 'Scientific Linux 6', os: { name: 'ScientificSL', version: '6.10' } }, { id: 'vm_el9', title: 'AlmaLinux 9', os: { name: 'AlmaLinux', version: '9.4' } }], extra: { lrm: { type: 'slurm', partition: 'wnod' } } });
  for (const name of ['allow-vo', 'deny-unknown']) {
    const r = await runFilter(join(goldens, `${name}.sh`), site.configPath, now);
    const { text, token } = normalise(r.output);
    matchGolden(t, text.replace(token ?? '\0', '<TOKEN>'), join(goldens, `${name}.slurm.out`));
    if (token) t.equal(verifyTicket(token, site.key, now).cpus, 2);
  }
});

t.test('without the trust flag, BLAH FQANs are ignored and only the VO counts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-filter-'));
  const site = await makeTestSite(dir);
  const r = await runFilter(join(goldens, 'allow-blah-fqan-default.sh'), site.configPath, now);
  t.match(r.output, /^# wnod-deny: no rule of this site authorises VO atlas\n$/);
});

t.test('every failure fails closed with a deny marker and nothing else', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-filter-'));
  const site = await makeTestSite(dir);
  const script = join(goldens, 'allow-vo.sh');
  const noConfig = await runFilter(script, join(dir, 'missing.yaml'), now);
  t.match(noConfig.output, /^# wnod-deny: the wnod submit filter failed \(.*missing\.yaml:0: \(top level\): cannot read/);
  t.equal(noConfig.output.split('\n').length, 2, 'one line');
  const noScript = await runFilter(join(dir, 'nope.sh'), site.configPath, now);
  t.match(noScript.output, /^# wnod-deny: the wnod submit filter failed/);
  await chmod(site.keyPath, 0o644);
  const badKey = await runFilter(script, site.configPath, now);
  t.match(badKey.output, /^# wnod-deny: .*ticket key .* accessible by others/);
  t.match(badKey.log.join('\n'), /internal error/);
  const proxyMissing = join(dir, 'with-proxy.sh');
  await writeFile(proxyMissing, `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'\nVirtualOrganisation='dteam'\nx509userproxy='${join(dir, 'no-such-proxy')}'\n`);
  await chmod(site.keyPath, 0o600);
  const r = await runFilter(proxyMissing, site.configPath, now);
  t.match(r.output, /^# wnod-deny: the job's VOMS proxy could not be verified/, 'an unverifiable proxy never falls back to the VO');
});

t.test('hostile values stay data: no line of the output comes from the job', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-filter-'));
  const site = await makeTestSite(dir);
  const s = join(dir, 'evil.sh');
  await writeFile(s, [
    `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_$(touch ${dir}/pwned)"'`,
    `VirtualOrganisation='dteam\`id\`'`,
    `x509UserProxySubject='/CN=x\n#PBS -l walltime=999:00:00'`,
    `\`touch ${dir}/pwned2\`='1'`,
    '',
  ].join('\n'));
  const r = await runFilter(s, site.configPath, now);
  for (const line of r.output.trimEnd().split('\n')) t.match(line, /^(#PBS -[qTl] [A-Za-z0-9=:_]+|# wnod[-:].*)$/, `only our directives: ${line}`);
  t.notOk(r.output.includes('walltime'), 'no injected directive');
  t.same((await readdir(dir)).filter((f) => f.startsWith('pwned')), []);
});

// The shim and the qsub/sbatch wrappers as installed (`wnod install blah`) are tested in ce-blah.test.ts.

t.test('a requested tag that is not a valid tag is refused as an image this CE does not offer, never replaced by the default', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-filter-'));
  const site = await makeTestSite(dir);
  const RTE = 'other.GlueHostApplicationSoftwareRunTimeEnvironment';
  // What blahpd writes for these CeRequirements (non-ASCII as octal escapes, backticks literally) …
  const fromCereq = (expr: string) => renderBlahScript(unwindCeRequirements(parseClassAd(expr)));
  const cafe = fromCereq(`Member("vm_café", ${RTE})`);
  t.match(cafe, /'"vm_caf\\303\\251"'/, 'octal-escaped as blahpd does');
  const scripts: [string, string, RegExp][] = [
    ['café', cafe, /image "vm_caf\\u\{e9\}" is not offered/],
    ['backticks', fromCereq(`Member("vm_\`id\`", ${RTE})`), /image "vm_`id`" is not offered/],
    // … and a newline: escaped inside the ClassAd string, or raw inside the quoted value (a rejected line)
    ['escaped newline', `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_a\\nb"'\n`, /image "vm_a\\u\{a\}b" is not offered/],
    ['raw newline', `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_a\nb"'\n`, /image the unreadable value on line 1 is not offered/],
  ];
  for (const [what, text, reason] of scripts) {
    const p = join(dir, `${what.replace(/ /g, '-')}.sh`);
    await writeFile(p, `${text}VirtualOrganisation='dteam'\n`);
    const r = await runFilter(p, site.configPath, now);
    t.match(r.output, /^# wnod-deny: image .* is not offered by this CE \(an image tag is 1-100 characters of A-Z a-z 0-9 \. _ \+ -; it offers: vm_sl6, vm_el9\)\n$/, what);
    t.match(r.output, reason, what);
    t.notOk(findTicketLine(r.output).ticket, `${what}: no ticket (the dteam rule's default would have been vm_el9)`);
  }
  // the same expression through wnod explain
  const ex = await wnod(['explain', '--config', site.configPath, '--cereq', `Member("vm_café", ${RTE})`, '--vo', 'dteam', '--json']);
  t.equal(ex.exitCode, 1);
  t.match(JSON.parse(ex.stdout), { allow: false, reason: /^image "vm_caf\\u\{e9\}" is not offered by this CE/ });
});

t.test('trust.require_verified_proxy: no verified identity, no ticket', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-filter-'));
  const strict = await makeTestSite(dir, { extra: { trust: { vomsdir: join(dir, 'v'), certdir: join(dir, 'c'), blah_fqans_verified: true, require_verified_proxy: true } } });
  for (const name of ['allow-vo', 'allow-blah-fqan-default']) {
    const r = await runFilter(join(goldens, `${name}.sh`), strict.configPath, now);
    t.match(r.output, /^# wnod-deny: this CE requires a verified VOMS proxy and none reached the filter \(only (the VO name alone|BLAH's FQAN list)\): the CE must pass the job's proxy to the filter \(blah_pass_submit_attributes: x509userproxy\)\n$/, name);
  }
  const ex = await wnod(['explain', '--config', strict.configPath, '--cereq', 'Member("vm_sl6", other.GlueHostApplicationSoftwareRunTimeEnvironment)', '--fqan', '/dteam', '--json']);
  t.equal(ex.exitCode, 1);
  t.match(JSON.parse(ex.stdout), { allow: false, reason: /requires a verified VOMS proxy .*give --proxy/ });
  const chk = await wnod(['check', '--config', strict.configPath]);
  t.equal(chk.exitCode, 0, chk.stderr);
});

t.test('wnod explain --cereq: a raw line break is what blahpd rejects, not an allowed job', async (t) => {
  const site = await makeTestSite(await mkdtemp(join(tmpdir(), 'wnod-filter-')));
  for (const brk of ['\n', '\r\n']) {
    const ex = await wnod(['explain', '--config', site.configPath, '--cereq', `Member("vm_sl6",${brk} other.GlueHostApplicationSoftwareRunTimeEnvironment)`, '--vo', 'dteam', '--json']);
    t.equal(ex.exitCode, 2);
    t.match(JSON.parse(ex.stdout), { allow: false, reason: /^CeRequirements holds a raw line break \(offset 16\): blahpd rejects the submission/ });
    const plain = await wnod(['explain', '--config', site.configPath, '--cereq', `Member("vm_sl6",${brk} other.GlueHostApplicationSoftwareRunTimeEnvironment)`, '--vo', 'dteam']);
    t.equal(plain.exitCode, 2);
    t.match(plain.stderr, /blahpd rejects the submission/);
  }
});

// main's wrapper test, now on the gate the installed wrappers run (the wrappers themselves: ce-blah.test.ts)
t.test('the submit gate refuses deny-marked scripts and reads only the header', async (t) => {
  const denied = '#!/bin/bash\n#PBS -N x\n# wnod-deny: image vm_x is not offered by this CE (it offers: vm_sl6)\n/bin/true\n';
  t.same(gate(denied, { lrm: 'torque', requireFilter: true }), { go: false, reason: 'job refused by site policy: image vm_x is not offered by this CE (it offers: vm_sl6)' });
  const ok = '#!/bin/bash\n#PBS -N x\n# wnod-ticket: abc.def\n/bin/true\n# wnod-deny: in the body, not ours\n';
  t.same(gate(ok, { lrm: 'torque', requireFilter: true }), { go: true, args: [] }, 'a ticket without the filter\'s block: nothing added, the arguments pass unchanged');
  const bodyOnly = '#!/bin/bash\n#PBS -N x\n/bin/true\n# wnod-ticket: abc.def\n';
  t.match(gate(bodyOnly, { lrm: 'torque', requireFilter: true }), { go: false, reason: /neither a wnod ticket nor a wnod deny marker/ }, 'a ticket in the body is not the header\'s');
  // the filter's #PBS -v passes as the ticket variable, and only as that
  const tok = `eyJ2IjoxfQ.${'A'.repeat(43)}`;
  const block = (v: string) => `#!/bin/bash\n# wnod: image vm_sl6 (1 cpu, 2048 MB) for VO dteam by rule dteam\n#PBS -q wnod\n#PBS -l nodes=1:ppn=1\n#PBS -v ${v}\n# wnod-ticket: ${tok}\n/bin/true\n`;
  t.same(gate(block(`WNOD_TICKET=${tok}`), { lrm: 'torque', requireFilter: true }), { go: true, args: ['-q', 'wnod', '-l', 'nodes=1:ppn=1', '-v', `WNOD_TICKET=${tok}`] });
  for (const v of ['FOO=bar', `WNOD_TICKET=${tok},LD_PRELOAD=/tmp/x.so`, 'WNOD_TICKET=abc.def', `WNOD_TICKET=${tok} -V`]) {
    t.match(gate(block(v), { lrm: 'torque', requireFilter: true }), { go: false, reason: /holds a line the filter does not print/ }, `#PBS -v ${v.slice(0, 40)}`);
  }
});
