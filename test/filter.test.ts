import t from 'tap';
import { mkdtemp, readFile, writeFile, chmod, readdir, copyFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { runFilter } from '../src/filter/filter.js';
import { makeTestSite } from './kit/site.js';
import { verifyTicket } from '../src/ticket/index.js';
import { findTicketLine } from '../src/header/scriptHeader.js';
import { matchGolden } from './kit/golden.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const goldens = join(root, 'test/golden/filter');
const now = new Date();

/** The ticket changes with every run (nonce, time): goldens hold a placeholder, the token is checked apart. */
function normalise(out: string): { text: string; token?: string } {
  const found = findTicketLine(out);
  return { text: out.replace(/^(# wnod-ticket: ).*$/m, '$1<TOKEN>'), ...(found.ticket ? { token: found.ticket } : {}) };
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

t.test('the real BLAH path: bash temp script sources the shim, stdout appended to the batch script', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-blah-'));
  const site = await makeTestSite(dir);
  const libexec = join(dir, 'libexec');
  await mkdir(libexec);
  await copyFile(join(root, 'plugins/pbs_local_submit_attributes.sh'), join(libexec, 'pbs_local_submit_attributes.sh'));
  // What pbs_submit.sh does (DESIGN A1): temp script = shebang + the -C lines + mpinodes + source; run it with
  // stdout appended to the batch script and stderr thrown away; variables are not exported.
  const tmpScript = join(dir, 'blahtmp');
  const body = (await readFile(join(goldens, 'allow-vo.sh'), 'utf8')).replace('#!/bin/bash\n', '');
  await writeFile(tmpScript, `#!/bin/bash\n${body}source ${join(libexec, 'pbs_local_submit_attributes.sh')}\n`, { mode: 0o755 });
  const batch = join(dir, 'batch.sh');
  await writeFile(batch, '#!/bin/bash\n#PBS -N blahjob\n');
  const env = { PATH: process.env.PATH!, WNOD_PREFIX: root, WNOD_CONFIG: site.configPath };
  await execa('bash', ['-c', `"${tmpScript}" >> "${batch}" 2>/dev/null`], { env, extendEnv: false });
  const text = await readFile(batch, 'utf8');
  t.match(text, /^#!\/bin\/bash\n#PBS -N blahjob\n# wnod: image vm_sl6 .*\n#PBS -q wnod\n#PBS -T wnod\n#PBS -l nodes=1:ppn=2\n#PBS -l mem=3000mb\n# wnod-ticket: \S+\n$/);
  t.equal(verifyTicket(findTicketLine(text).ticket!, site.key).image, 'vm_sl6');

  // node missing or crashing → the shim still fails closed
  const brokenEnv = { ...env, WNOD_PREFIX: join(dir, 'nowhere') };
  await writeFile(batch, '#!/bin/bash\n');
  await execa('bash', ['-c', `"${tmpScript}" >> "${batch}" 2>/dev/null`], { env: brokenEnv, extendEnv: false });
  t.equal(await readFile(batch, 'utf8'), '#!/bin/bash\n# wnod-deny: the wnod submit filter could not run on this CE; contact the site\n');
});

t.test('the qsub wrapper refuses deny-marked scripts and passes others unchanged', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-qsub-'));
  const realQsub = join(dir, 'qsub.real');
  await writeFile(realQsub, `#!/bin/bash\nprintf '%s\\n' "$@" > ${dir}/args\necho 42.server\n`, { mode: 0o755 });
  const env = { PATH: process.env.PATH!, WNOD_REAL_QSUB: realQsub, WNOD_PREFIX: root };
  const denied = join(dir, 'denied.sh');
  await writeFile(denied, '#!/bin/bash\n#PBS -N x\n# wnod-deny: image vm_x is not offered by this CE (it offers: vm_sl6)\n/bin/true\n');
  const r1 = await execa(join(root, 'plugins/qsub'), ['-q', 'wnod', denied], { env, extendEnv: false, reject: false });
  t.equal(r1.exitCode, 1);
  t.equal(r1.stderr, 'wnod: job refused by site policy: image vm_x is not offered by this CE (it offers: vm_sl6)');
  t.equal(r1.stdout, '');
  const ok = join(dir, 'ok.sh');
  await writeFile(ok, '#!/bin/bash\n#PBS -N x\n# wnod-ticket: abc.def\n/bin/true\n# wnod-deny: in the body, not ours\n');
  const r2 = await execa(join(root, 'plugins/qsub'), ['-q', 'wnod', ok], { env, extendEnv: false, reject: false });
  t.equal(r2.exitCode, 0);
  t.equal(r2.stdout, '42.server');
  t.equal(await readFile(join(dir, 'args'), 'utf8'), `-q\nwnod\n${ok}\n`, 'arguments passed through unchanged');
});
