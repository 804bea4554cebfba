// The CE side as installed by `wnod install blah`: the submit-attributes shim sourced by a BLAH temp script built
// the way blahpd builds it (the unwound CeRequirements lines first, then `source`), and the qsub/sbatch wrapper.
import { reachableRepo } from './kit/reachable.js';
import t, { type Test } from 'tap';
import { mkdtemp, mkdir, readFile, writeFile, chmod, chown, readdir, readlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseDocument } from 'yaml';
import { makeTestSite, type TestSite } from './kit/site.js';
import { verifyTicket } from '../src/ticket/index.js';
import { findTicketLine } from '../src/header/scriptHeader.js';
import { parseClassAd } from '../src/jdl/classad.js';
import { renderBlahScript, unwindCeRequirements } from '../src/jdl/unwind.js';
import { wnod, repoRoot } from './kit/cli.js';
import { readBlahConfig } from './kit/blahConfig.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { makeProxy, makeTestPki } from './kit/pki.js';
import { blahConfigLines, blahPlan } from '../src/filter/install.js';

const RTE = 'other.GlueHostApplicationSoftwareRunTimeEnvironment';

interface Ce { blahDir: string; binDir: string; realArgs: string; real: string; dir: string }

/** A CE layout: BLAH's libexec dir, a bin dir for the wrapper, a fake real qsub/sbatch that records its argv. */
async function installCe(t: Test, site: TestSite, opts: { lrm?: 'torque' | 'slurm'; extra?: string[] } = {}): Promise<Ce> {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-ce-'));
  await chmod(dir, 0o755);
  const blahDir = join(dir, 'libexec');
  const binDir = join(dir, 'wbin');
  const realDir = join(dir, 'lrm');
  for (const d of [blahDir, binDir, realDir]) await mkdir(d, { mode: 0o755 });
  const submit = opts.lrm === 'slurm' ? 'sbatch' : 'qsub';
  const real = join(realDir, submit);
  const realArgs = join(dir, 'real-args');
  await writeFile(real, `#!/bin/bash\nprintf '%s\\n' "$@" > ${realArgs}\necho 42.server\n`, { mode: 0o755 });
  await writeFile(join(realDir, opts.lrm === 'slurm' ? 'scancel' : 'qstat'), '#!/bin/sh\n', { mode: 0o755 });
  const r = await wnod(['install', 'blah', '--config', site.configPath, '--blah-dir', blahDir, '--bin-dir', binDir, '--real', real, '--prefix', reachableRepo(), ...(opts.extra ?? [])]);
  t.equal(r.exitCode, 0, r.stderr);
  return { blahDir, binDir, real, realArgs, dir };
}

/** What blahpd's <lrms>_submit.sh does (DESIGN A1): temp script = #!/bin/bash + the unwound -C lines +
 * blah_opt_mpinodes + `source <shim>`, run with stdout appended to the batch script and stderr thrown away. */
async function blahRun(ce: Ce, shim: string, reqLines: string, opts: { cwd?: string; env?: Record<string, string>; shebang?: string } = {}): Promise<string> {
  const tmp = join(ce.dir, `blahtmp-${Math.random().toString(36).slice(2)}`);
  await writeFile(tmp, `${opts.shebang ?? '#!/bin/bash'}\n${reqLines}VirtualOrganisation='dteam'\nblah_opt_mpinodes=2\nsource ${join(ce.blahDir, shim)}\n`, { mode: 0o755 });
  const batch = join(ce.dir, 'batch.sh');
  await writeFile(batch, '#!/bin/bash\n# PBS directives:\n#PBS -S /bin/bash\n');
  await execa('/bin/bash', ['-c', `"${tmp}" >> "${batch}" 2>/dev/null`], { env: opts.env ?? { PATH: '/usr/bin:/bin' }, extendEnv: false, cwd: opts.cwd ?? ce.dir, reject: false }); // blahpd ignores the exit code
  return readFile(batch, 'utf8');
}

t.test('CeRequirements cannot override the shim: no variable of the temp script reaches the filter', async (t) => {
  const site = await makeTestSite(await mkdtemp(join(tmpdir(), 'wnod-ce-site-')));
  const ce = await installCe(t, site);
  // The attacker's directory, BLAH's working directory for the job: 42/dist/hot/filter.cjs forges a ticket line,
  // 42/node does the same for a PATH lookup, 42/wnod.yaml is a config of its own.
  const evil = join(ce.dir, 'sandbox');
  await mkdir(join(evil, '42', 'dist', 'hot'), { recursive: true });
  const forge = `require('fs').writeFileSync(${JSON.stringify(join(evil, 'ran'))}, 'x'); console.log('# wnod-ticket: FORGED');\n`;
  await writeFile(join(evil, '42', 'dist', 'hot', 'filter.cjs'), forge);
  await writeFile(join(evil, '42', 'node'), `#!/bin/sh\ntouch ${join(evil, 'ran')}; echo '# wnod-ticket: FORGED'\n`, { mode: 0o755 });
  const req = renderBlahScript(unwindCeRequirements(parseClassAd(
    `Member(42, other.WNOD_PREFIX) && Member(42, other.PATH) && Member(42, other.WNOD_CONFIG) && Member(42, other.NODE_OPTIONS) && Member("vm_sl6", ${RTE})`)))
    .replace('#!/bin/bash\n', '');
  t.match(req, /^WNOD_PREFIX\[0\]='42'\nPATH\[0\]='42'\nWNOD_CONFIG\[0\]='42'\nNODE_OPTIONS\[0\]='42'\n/, 'what blahpd writes');
  // blahpd's own environment may carry exported variables that the assignments then change
  const text = await blahRun(ce, 'pbs_local_submit_attributes.sh', req, { cwd: evil, env: { PATH: '/usr/bin:/bin', NODE_OPTIONS: '', WNOD_PREFIX: '/nowhere' } });
  t.notOk(text.includes('FORGED'), 'no forged line');
  t.same((await readdir(evil)).filter((f) => f === 'ran'), [], 'no attacker code ran');
  const claims = verifyTicket(findTicketLine(text).ticket!, site.key);
  t.equal(claims.image, 'vm_sl6');
  t.match(text, /^#!\/bin\/bash\n# PBS directives:\n#PBS -S \/bin\/bash\n# wnod: image vm_sl6 \(2 cpu, 2048 MB\) for VO dteam by rule dteam\n#PBS -q wnod\n#PBS -T wnod\n#PBS -l nodes=1:ppn=2\n#PBS -l mem=2048mb\n#PBS -v WNOD_TICKET=(\S+)\n# wnod-ticket: \1\n$/, 'the ticket again as a job variable (Torque\'s sisters read it)');

  const shim = await readFile(join(ce.blahDir, 'pbs_local_submit_attributes.sh'), 'utf8');
  const cmd = shim.split('\n').filter((l) => l && !l.startsWith('#'));
  t.equal(cmd.length, 1, 'one command line');
  t.match(cmd[0], new RegExp(`^\\( exec -c ${process.execPath} ${reachableRepo()}/dist/hot/filter\\.cjs --config ${site.configPath} -- "\\$0" \\) 2>/dev/null \\|\\| printf`));
  t.notMatch(cmd[0], /\$(?!0)/, 'no variable but $0');
});

t.test('a filter that cannot run fails closed; the repo template itself is never a working shim', async (t) => {
  const site = await makeTestSite(await mkdtemp(join(tmpdir(), 'wnod-ce-site-')));
  const ce = await installCe(t, site);
  const shim = join(ce.blahDir, 'pbs_local_submit_attributes.sh');
  await writeFile(shim, (await readFile(shim, 'utf8')).replace(process.execPath, '/nonexistent/node'));
  t.equal(await blahRun(ce, 'pbs_local_submit_attributes.sh', `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'\n`),
    '#!/bin/bash\n# PBS directives:\n#PBS -S /bin/bash\n# wnod-deny: the wnod submit filter could not run on this CE; contact the site\n');
  await writeFile(shim, await readFile(join(repoRoot, 'plugins', 'pbs_local_submit_attributes.sh'), 'utf8'));
  t.match(await blahRun(ce, 'pbs_local_submit_attributes.sh', ''), /\n# wnod-deny: the wnod submit filter could not run on this CE; contact the site\n$/);
});

t.test('wnod install blah: refuses what the pool accounts could change, and bad paths', async (t) => {
  const site = await makeTestSite(await mkdtemp(join(tmpdir(), 'wnod-ce-site-')));
  const ce = await installCe(t, site);
  await chmod(ce.blahDir, 0o777);
  const r = await wnod(['install', 'blah', '--config', site.configPath, '--blah-dir', ce.blahDir, '--bin-dir', ce.binDir, '--real', ce.real]);
  t.equal(r.exitCode, 1);
  t.match(r.stderr, /--blah-dir: refusing .*libexec: .*libexec is writable by its group/);
  await chmod(ce.blahDir, 0o755);
  const bad = await wnod(['install', 'blah', '--config', site.configPath, '--blah-dir', `${ce.blahDir}/x y`, '--bin-dir', ce.binDir, '--real', ce.real]);
  t.not(bad.exitCode, 0);
  t.match(bad.stderr, /--blah-dir ".* must be an absolute path of/);
  const self = await wnod(['install', 'blah', '--config', site.configPath, '--blah-dir', ce.blahDir, '--bin-dir', ce.binDir, '--real', join(ce.binDir, 'qsub')]);
  t.match(self.stderr, /inside --bin-dir/);
  t.equal(await readlink(join(ce.binDir, 'qstat')), join(ce.dir, 'lrm', 'qstat'), 'the companions BLAH runs from pbs_binpath are linked');
});

/** A batch script as pbs_submit.sh writes it around the filter's output: its header, the filter's block, then
 * `#PBS -l nodes=N` (CREAM always sends NodeNumber) and `#PBS -m n`, then the job wrapper. */
function pbsBatch(filterOutput: string): string {
  return `#!/bin/bash\n# PBS job wrapper generated by pbs_submit.sh\n#\n# PBS directives:\n#PBS -S /bin/bash\n#PBS -o /dev/null\n#PBS -e /dev/null\n${filterOutput}#PBS -l nodes=4\n#PBS -m n\nnew_home=\`pwd\`/home_x\n`;
}

t.test('the qsub wrapper: deny → the reason on stderr; no marker → refused; ticket → the filter\'s directives on the command line', async (t) => {
  const site = await makeTestSite(await mkdtemp(join(tmpdir(), 'wnod-ce-site-')));
  const ce = await installCe(t, site);
  const qsub = join(ce.binDir, 'qsub');
  // a hostile environment must not matter (the wrapper reads none of it, the gate gets none of it)
  const env = { PATH: `${ce.dir}/evil:/usr/bin:/bin`, NODE_OPTIONS: `--require ${ce.dir}/evil.js`, WNOD_REAL_QSUB: '/bin/false' };
  await writeFile(join(ce.dir, 'evil.js'), `require('fs').writeFileSync(${JSON.stringify(join(ce.dir, 'ran'))}, 'x');\n`);
  const submit = async (text: string) => {
    const p = join(ce.dir, `job-${Math.random().toString(36).slice(2)}.sh`);
    await writeFile(p, text);
    await writeFile(ce.realArgs, '');
    const r = await execa(qsub, [p], { env, extendEnv: false, reject: false });
    return { ...r, path: p, realArgs: await readFile(ce.realArgs, 'utf8') };
  };

  const denied = await submit(pbsBatch('# wnod-deny: image vm_x is not offered by this CE (it offers: vm_sl6)\n'));
  t.equal(denied.exitCode, 1);
  t.equal(denied.stderr, 'wnod: job refused by site policy: image vm_x is not offered by this CE (it offers: vm_sl6)');
  t.equal(denied.realArgs, '', 'the real qsub never ran');

  const unfiltered = await submit(pbsBatch(''));
  t.equal(unfiltered.exitCode, 1);
  t.equal(unfiltered.stderr, 'wnod: job refused: the batch script carries neither a wnod ticket nor a wnod deny marker: the wnod submit filter did not run on this CE (BLAH skipped it); the site must fix its BLAH setup');
  t.equal(unfiltered.realArgs, '');

  const filterOut = (await blahRun(ce, 'pbs_local_submit_attributes.sh', `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'\n`)).split('#PBS -S /bin/bash\n')[1]!;
  const ok = await submit(pbsBatch(filterOut));
  t.equal(ok.exitCode, 0, ok.stderr);
  t.equal(ok.stdout, '42.server');
  const token = findTicketLine(filterOut).ticket!;
  t.equal(ok.realArgs, `-q\nwnod\n-T\nwnod\n-l\nnodes=1:ppn=2\n-l\nmem=2048mb\n-v\nWNOD_TICKET=${token}\n${ok.path}\n`, 'the filter\'s block first (its ticket variable too: it outranks a #PBS -v of the script), BLAH\'s argument last');
  t.same((await readdir(ce.dir)).filter((f) => f === 'ran'), [], 'NODE_OPTIONS did not reach the gate');

  // a block the filter did not print is refused, not passed on
  const tampered = await submit(pbsBatch(filterOut.replace('#PBS -l mem=2048mb', '#PBS -l mem=2048mb,walltime=99:00:00')));
  t.equal(tampered.exitCode, 1);
  t.match(tampered.stderr, /^wnod: job refused: the wnod block of the batch script holds a line the filter does not print: "#PBS -l mem=2048mb,walltime=99:00:00"$/);

  // the Debian failure: prelz's #!/bin/sh temp script under dash cannot `source`, the filter never runs …
  const dashOut = (await blahRun(ce, 'pbs_local_submit_attributes.sh', `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'\n`, { shebang: '#!/bin/dash' })).split('#PBS -S /bin/bash\n')[1]!;
  t.equal(dashOut, '', 'dash skipped the filter silently');
  // … and the wrapper stops the job
  const skipped = await submit(pbsBatch(dashOut));
  t.equal(skipped.exitCode, 1);
  t.match(skipped.stderr, /the wnod submit filter did not run on this CE/);

  const noFile = await execa(qsub, ['-q', 'wnod'], { env, extendEnv: false, reject: false, input: '#!/bin/sh\ntrue\n' });
  t.equal(noFile.exitCode, 1);
  t.match(noFile.stderr, /qsub got no batch script file to check/);
});

t.test('the qsub wrapper with --allow-unfiltered passes scripts without a marker, still refuses deny markers', async (t) => {
  const site = await makeTestSite(await mkdtemp(join(tmpdir(), 'wnod-ce-site-')));
  const ce = await installCe(t, site, { extra: ['--allow-unfiltered'] });
  const qsub = join(ce.binDir, 'qsub');
  const p = join(ce.dir, 'plain.sh');
  await writeFile(p, pbsBatch(''));
  const r = await execa(qsub, ['-q', 'long', p], { env: {}, extendEnv: false, reject: false });
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(await readFile(ce.realArgs, 'utf8'), `-q\nlong\n${p}\n`);
  await writeFile(p, pbsBatch('# wnod-deny: no\n'));
  t.equal((await execa(qsub, [p], { env: {}, extendEnv: false, reject: false })).exitCode, 1);
});

/** A site config for Slurm: lrm.type slurm with the wnod partition (Torque-only keys dropped). */
async function slurmSite(): Promise<TestSite> {
  const site = await makeTestSite(await mkdtemp(join(tmpdir(), 'wnod-ce-site-')));
  const doc = parseDocument(await readFile(site.configPath, 'utf8'));
  doc.set('lrm', { type: 'slurm', partition: 'wnod' });
  for (const i of (doc.get('images') as { items: { delete(k: string): void }[] }).items) i.delete('queue');
  await writeFile(site.configPath, doc.toString());
  return site;
}

t.test('Slurm: #SBATCH directives and the ticket (never #PBS -T); the sbatch wrapper passes them on its command line', async (t) => {
  const site = await slurmSite();
  const ce = await installCe(t, site, { lrm: 'slurm' });
  const text = await blahRun(ce, 'slurm_local_submit_attributes.sh', `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'\n`);
  const token = findTicketLine(text).ticket!;
  t.equal(verifyTicket(token, site.key).image, 'vm_sl6');
  t.equal(text.split('#PBS -S /bin/bash\n')[1]!.replace(token, '<T>').replace(token, '<T>'), [
    '# wnod: image vm_sl6 (2 cpu, 2048 MB) for VO dteam by rule dteam', '#SBATCH --partition=wnod', '#SBATCH --nodes=1',
    '#SBATCH --ntasks=1', '#SBATCH --cpus-per-task=2', '#SBATCH --mem=2048M', '#SBATCH --comment=<T>', '# wnod-ticket: <T>', ''].join('\n'));
  t.notMatch(text, /#PBS -T/);

  // slurm_submit.sh (prelz) appends `#SBATCH -p <queue>` when it finds no `#SBATCH -p` line: the wrapper's
  // --partition on the command line outranks it
  const batch = join(ce.dir, 'slurm-job.sh');
  await writeFile(batch, `#!/bin/bash\n# SLURM directives:\n#SBATCH -o /dev/null\n#SBATCH -e /dev/null\n${text.split('#PBS -S /bin/bash\n')[1]}#SBATCH -p long\nexit 0\n`);
  const r = await execa(join(ce.binDir, 'sbatch'), [batch], { env: {}, extendEnv: false, reject: false });
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(await readFile(ce.realArgs, 'utf8'), `--partition=wnod\n--nodes=1\n--ntasks=1\n--cpus-per-task=2\n--mem=2048M\n${batch}\n`);
  await writeFile(batch, '#!/bin/bash\n#SBATCH -o /dev/null\n# wnod-deny: image vm_x is not offered\nexit 0\n');
  const d = await execa(join(ce.binDir, 'sbatch'), [batch], { env: {}, extendEnv: false, reject: false });
  t.equal(d.exitCode, 1);
  t.equal(d.stderr, 'wnod: job refused by site policy: image vm_x is not offered');
  t.equal(await readlink(join(ce.binDir, 'scancel')), join(ce.dir, 'lrm', 'scancel'));
});

t.test('blah.config: the pass list the install prints survives /bin/sh = dash; the [N]= lines do not', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-ce-conf-'));
  const printed = join(dir, 'printed.config');
  await writeFile(printed, `${blahConfigLines(blahPlan('torque'), '/opt/wnod/blah-bin').join('\n')}\n`);
  const usual = join(dir, 'usual.config');
  await writeFile(usual, 'pbs_binpath=/opt/wnod/blah-bin\nblah_pass_submit_attributes[0]="x509userproxy"\nblah_pass_submit_attributes[1]="x509UserProxyFQAN"\n');
  for (const shell of ['/bin/dash', '/bin/bash']) {
    const got = await readBlahConfig(printed, shell);
    t.same(got.get('blah_pass_submit_attributes')?.values, ['x509userproxy', 'x509UserProxyFQAN'], `printed lines through ${shell}`);
    t.equal(got.get('pbs_binpath')?.value, '/opt/wnod/blah-bin');
  }
  t.same((await readBlahConfig(usual, '/bin/bash')).get('blah_pass_submit_attributes')?.values, ['x509userproxy', 'x509UserProxyFQAN'], 'the usual lines work under bash');
  t.equal((await readBlahConfig(usual, '/bin/dash')).get('blah_pass_submit_attributes'), undefined, 'and silently vanish under dash (the bug)');
});

t.test('Slurm: the real sbatch parses the filter\'s script and the wrapper\'s command line (no controller: it stops at the connection)', async (t) => {
  if (!existsSync('/usr/bin/sbatch')) {
    t.skip('sbatch is not installed (slurm-client)', () => {});
    return;
  }
  const site = await slurmSite();
  const ce = await installCe(t, site, { lrm: 'slurm' });
  // a client config naming a controller port of this test's range where nothing listens
  const conf = join(ce.dir, 'slurm.conf');
  await writeFile(conf, ['ClusterName=wce', 'SlurmctldHost=localhost(127.0.0.1)', 'SlurmctldPort=17299', 'AuthType=auth/none',
    'CredType=cred/none', 'NodeName=n1 NodeAddr=127.0.0.1 CPUs=1 State=UNKNOWN', 'PartitionName=wnod Nodes=n1 Default=YES', 'MessageTimeout=2', ''].join('\n'));
  const sbatch = async (args: string[]) => execa('/usr/bin/sbatch', args, { env: { PATH: '/usr/bin:/bin', SLURM_CONF: conf }, extendEnv: false, reject: false, cwd: ce.dir });
  const text = await blahRun(ce, 'slurm_local_submit_attributes.sh', `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'\n`);
  const batch = join(ce.dir, 'job.sh');
  await writeFile(batch, `#!/bin/bash\n# SLURM directives:\n#SBATCH -o /dev/null\n#SBATCH -e /dev/null\n${text.split('#PBS -S /bin/bash\n')[1]}#SBATCH -p wnod\ntrue\n`);
  const parsed = await sbatch([batch]);
  t.match(parsed.stderr, /Unable to contact slurm controller/, `every directive parsed: ${parsed.stderr}`);
  await execa(join(ce.binDir, 'sbatch'), [batch], { env: {}, extendEnv: false, reject: false });
  const args = (await readFile(ce.realArgs, 'utf8')).trim().split('\n'); // what the wrapper gave the (fake) real sbatch
  const withArgs = await sbatch(args);
  t.match(withArgs.stderr, /Unable to contact slurm controller/, `the wrapper's command line parsed: ${withArgs.stderr}`);
  // what the filter must never print for Slurm
  await writeFile(batch, '#!/bin/bash\n#PBS -T wnod\n#SBATCH --partition=wnod\ntrue\n');
  t.match((await sbatch([batch])).stderr, /invalid option -- 'T'/, 'sbatch rejects #PBS -T');
});

t.test('as a pool account, with a real VOMS proxy and require_verified_proxy: the installed shim verifies it and signs', async (t) => {
  const user = await ensureTestUser('wce2');
  const base = await mkdtemp(join(tmpdir(), 'wnod-ce-pool-'));
  await chmod(base, 0o755);
  const pki = await makeTestPki(join(base, 'pki'), { vo: 'dteam' });
  const site = await makeTestSite(join(base, 'site'), { extra: { trust: { vomsdir: pki.vomsdir, certdir: pki.certdir, require_verified_proxy: true } } });
  for (const d of ['site', 'pki', ...['vomsdir', 'certdir'].map((k) => pki[k as 'vomsdir' | 'certdir'].slice(base.length + 1))]) await chmod(join(base, d), 0o755);
  await chown(site.keyPath, user.uid, user.gid); // the CE's copy of the key, readable by the account BLAH runs as
  const ce = await installCe(t, site);
  await chown(ce.dir, user.uid, user.gid);
  const proxy = await makeProxy(pki, { vo: 'dteam', fqans: ['/dteam/Role=NULL'] });
  await chown(proxy, user.uid, user.gid);
  const run = async (req: string) => {
    const tmp = join(ce.dir, `blahtmp-${Math.random().toString(36).slice(2)}`);
    const batch = join(ce.dir, 'batch-pool.sh');
    await writeFile(tmp, `#!/bin/bash\nGlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'\n${req}blah_opt_mpinodes=1\nsource ${join(ce.blahDir, 'pbs_local_submit_attributes.sh')}\n`, { mode: 0o755 });
    await writeFile(batch, '#!/bin/bash\n');
    for (const f of [tmp, batch]) await chown(f, user.uid, user.gid);
    await execa('/bin/bash', ['-c', `"${tmp}" >> "${batch}" 2>/dev/null`], { env: { PATH: '/usr/bin:/bin', HOME: user.home }, extendEnv: false, uid: user.uid, gid: user.gid, cwd: ce.dir, reject: false });
    return readFile(batch, 'utf8');
  };
  const ok = await run(`VirtualOrganisation='dteam'\nx509userproxy='${proxy}'\n`);
  const claims = verifyTicket(findTicketLine(ok).ticket!, site.key);
  t.equal(claims.account, user.name, 'signed as the pool account');
  t.equal(claims.fqan, '/dteam/Role=NULL/Capability=NULL', 'from the verified proxy');
  t.match(await run(`VirtualOrganisation='dteam'\n`), /\n# wnod-deny: this CE requires a verified VOMS proxy and none reached the filter/);
});
