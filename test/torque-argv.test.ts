// Pure parts of the Torque adapter: argv tables (6.x, 2.5), Resource_List, job ids, the job script path rule,
// the ticket line, the starter's call, exit-code mapping and the install renderers.
import t from 'tap';
import { parsePrologueArgv, parseEpilogueArgv, parseJobId, parseResourceList, parseDuration, parseSizeMB, HookArgvError, isRetryStatus } from '../src/lrm/torque/argv.js';
import { jobScriptPath, readJobScript, JobScriptError } from '../src/lrm/torque/jobscript.js';
import { classifyStarterCall, looksLikeBatch, StarterError } from '../src/lrm/torque/starter.js';
import { transientExitCode, PROLOGUE_EXIT } from '../src/lrm/torque/outcome.js';
import { userLine } from '../src/job/outcome.js';
import { parseEntryArgv } from '../src/lrm/torque/entry-argv.js';
import { bootEntry } from '../src/job/detachedBoot.js';
import { renderShim, mergeMomConfig, shimPlan, qmgrLines, momConfigLines, InstallError } from '../src/lrm/torque/install.js';
import { findTicketLine } from '../src/header/scriptHeader.js';
import { mkdir, writeFile, symlink, chmod } from 'node:fs/promises';
import { join } from 'node:path';

const P6 = ['13.ce.example.org', 'atlas001', 'atlas', 'STDIN', 'walltime=00:05:00,nodes=1:ppn=2,mem=2gb', 'wnod', '', '/var/spool/torque/mom_priv/jobs/13.ce.example.org.SC'];
const E6 = ['13.ce.example.org', 'atlas001', 'atlas', 'STDIN', '4242', 'walltime=00:05:00,nodes=1', 'cput=00:00:01,mem=1024kb,vmem=0kb,walltime=00:00:07', 'wnod', 'acct', '271', '/var/spool/torque/mom_priv/jobs/13.ce.example.org.SC'];

t.test('prologue argv: 6.x (8) and 2.5 (7)', async (t) => {
  const a = parsePrologueArgv(P6, '6');
  t.equal(a.jobId, '13.ce.example.org');
  t.equal(a.user, 'atlas001');
  t.equal(a.group, 'atlas');
  t.equal(a.account, '');
  t.equal(a.queue, 'wnod');
  t.equal(a.scriptPath, P6[7]);
  t.equal(a.resourceList.walltimeS, 300);
  t.equal(a.resourceList.ppn, 2);
  t.equal(a.resourceList.nodeCount, 1);
  t.equal(a.resourceList.memMB, 2048);
  const b = parsePrologueArgv(P6.slice(0, 7), '2.5');
  t.equal(b.scriptPath, undefined);
  t.ok(parsePrologueArgv(P6.slice(0, 7)), 'auto accepts 7');
  t.throws(() => parsePrologueArgv(P6.slice(0, 7), '6'), HookArgvError);
  t.throws(() => parsePrologueArgv(P6, '2.5'), HookArgvError);
  t.throws(() => parsePrologueArgv([...P6, 'x']), /expected 7 or 8 arguments/);
});

t.test('prologue argv: every field is validated', async (t) => {
  const bad: [number, string, RegExp][] = [
    [0, '../../etc/passwd', /job id/], [0, '13.host;rm', /job id/], [0, '', /job id/], [0, 'abc.host', /job id/],
    [1, 'root;x', /user/], [1, '-rf', /user/], [1, '', /user/], [2, 'a b', /group/],
    [3, 'name\nline', /job name/], [4, 'walltime=5 min', /Resource_List/], [4, 'walltime=00:99:00', /above 59/],
    [4, 'mem=2zb', /Torque size/], [4, 'nodes', /key=value/], [4, 'nodes=1,nodes=2', /twice/],
    [5, 'q/../x', /queue/], [7, 'relative/path.SC', /absolute/],
  ];
  for (const [i, v, re] of bad) {
    const argv = [...P6];
    argv[i] = v;
    t.throws(() => parsePrologueArgv(argv), re, `argv[${i + 1}] = ${JSON.stringify(v)}`);
  }
});

t.test('epilogue argv: 6.x (11) and 2.5 (10)', async (t) => {
  const e = parseEpilogueArgv(E6, '6');
  t.equal(e.sessionId, 4242);
  t.equal(e.exitStatus, 271);
  t.equal(e.account, 'acct');
  t.equal(e.resourcesUsed.walltimeS, 7);
  t.equal(e.resourcesUsed.cputS, 1);
  t.equal(e.resourcesUsed.memMB, 1);
  t.equal(e.scriptPath, E6[10]);
  t.equal(parseEpilogueArgv(E6.slice(0, 10), '2.5').scriptPath, undefined);
  t.equal(parseEpilogueArgv([...E6.slice(0, 9), '-14', E6[10]!]).exitStatus, -14);
  t.throws(() => parseEpilogueArgv([...E6.slice(0, 9), '1e3', E6[10]!]), /exit status/);
  t.throws(() => parseEpilogueArgv(E6.slice(0, 9)), /10 or 11/);
  t.ok(isRetryStatus(-14) && isRetryStatus(-3) && !isRetryStatus(-2) && !isRetryStatus(0));
});

t.test('job ids, durations, sizes, Resource_List', async (t) => {
  for (const ok of ['13', '13.host', '7[2].host.example.org', '7[].host', '123.ce-01.example.org']) t.equal(parseJobId(ok), ok);
  for (const bad of ['13.', '.host', '13/x', '13.host/..', '13 .h', '1[a].h', '13.h_x']) t.throws(() => parseJobId(bad), HookArgvError, bad);
  t.equal(parseDuration('01:02:03'), 3723);
  t.equal(parseDuration('05:00'), 300);
  t.equal(parseDuration('3600'), 3600);
  t.equal(parseDuration('100:00:00'), 360000);
  t.throws(() => parseDuration('1:2:3:4'));
  t.equal(parseSizeMB('2gb'), 2048);
  t.equal(parseSizeMB('512MB'), 512);
  t.equal(parseSizeMB('1048576kb'), 1024);
  t.equal(parseSizeMB('1'), 1, 'bytes round up to 1 MB');
  t.equal(parseSizeMB('1mw'), 8);
  const r = parseResourceList('neednodes=2:ppn=4+n7,nodes=2:ppn=4+n7,walltime=00:05:00,other=x');
  t.equal(r.nodeCount, 3);
  t.equal(r.ppn, 4);
  t.equal(r.raw.other, 'x');
  t.same(parseResourceList(''), { raw: {} });
});

t.test('job script path: built from mom_priv and the job id; argv[8] must agree', async (t) => {
  t.equal(jobScriptPath('/var/spool/torque/mom_priv', '13.h'), '/var/spool/torque/mom_priv/jobs/13.h.SC');
  t.equal(jobScriptPath('/var/spool/torque/mom_priv/', '13.h', '/var/spool/torque/mom_priv/jobs/13.h.SC'), '/var/spool/torque/mom_priv/jobs/13.h.SC');
  t.throws(() => jobScriptPath('/m', '13.h', '/tmp/13.h.SC'), JobScriptError);
  t.throws(() => jobScriptPath('/m', '13.h', '/m/jobs/14.h.SC'), /not \/m\/jobs\/13.h.SC/);
  t.throws(() => jobScriptPath('/m', '../13'), HookArgvError);
});

t.test('job script reading: regular files only, no symlinks, bounded', async (t) => {
  const dir = t.testdir({ mom_priv: { jobs: { '1.h.SC': '#!/bin/bash\n# wnod-ticket: abc\n' } }, secret: 'root only' });
  const mp = join(dir, 'mom_priv');
  t.match(await readJobScript(mp, '1.h'), /wnod-ticket: abc/);
  await symlink(join(dir, 'secret'), join(mp, 'jobs', '2.h.SC'));
  await t.rejects(readJobScript(mp, '2.h'), { code: 'script-unsafe', message: /symbolic link/ });
  await mkdir(join(mp, 'jobs', '3.h.SC'));
  await t.rejects(readJobScript(mp, '3.h'), { code: 'script-unsafe', message: /not a regular file/ });
  await t.rejects(readJobScript(mp, '4.h'), { code: 'script-missing' });
  await writeFile(join(mp, 'jobs', '5.h.SC'), '#'.repeat(100) + '\n' + 'x'.repeat(10_000));
  t.equal((await readJobScript(mp, '5.h', undefined, 200)).length, 200, 'a large script is read up to the bound');
  // a symlinked jobs directory that points elsewhere is refused too
  const other = join(dir, 'other');
  await mkdir(join(other, 'jobs'), { recursive: true });
  await writeFile(join(other, 'jobs', '6.h.SC'), 'x');
  await mkdir(join(dir, 'mp2'));
  await symlink(join(other, 'jobs'), join(dir, 'mp2', 'jobs'));
  t.ok(await readJobScript(join(dir, 'mp2'), '6.h'), 'a jobs dir that is a symlink resolves consistently (admin-made)');
  await chmod(dir, 0o755);
});

t.test('ticket line extraction from a job script', async (t) => {
  t.same(findTicketLine('#!/bin/bash\n#PBS -q wnod\n# wnod-ticket: AAA.BBB\n# wnod-ticket: CCC.DDD\necho hi\n'), { ticket: 'AAA.BBB' }, 'first wins');
  t.same(findTicketLine('#!/bin/bash\n# wnod-deny: image vm_x not allowed\n'), { deny: 'image vm_x not allowed' });
  t.same(findTicketLine('#!/bin/bash\necho hi\n# wnod-ticket: AAA.BBB\n'), {}, 'a line after the header belongs to the job');
  t.same(findTicketLine('#!/bin/bash\r\n# wnod-ticket: AAA.BBB\r\n'), { ticket: 'AAA.BBB' });
  t.same(findTicketLine(''), {});
});

t.test('starter call: `starter /bin/bash` + one stdin line vs TM `starter argv…`', async (t) => {
  t.ok(looksLikeBatch(['/bin/bash']));
  t.notOk(looksLikeBatch(['/bin/hostname']));
  t.notOk(looksLikeBatch(['/bin/bash', '-c', 'x']));
  t.same(classifyStarterCall(['/bin/bash'], '/m/jobs/1.h.SC', '/m', '1.h'), { kind: 'batch', shell: '/bin/bash', scriptPath: '/m/jobs/1.h.SC', stdinLine: '/m/jobs/1.h.SC' });
  t.same(classifyStarterCall(['/bin/hostname', '-f'], undefined, '/m', '1.h'), { kind: 'tm', argv: ['/bin/hostname', '-f'] });
  t.same(classifyStarterCall(['/bin/bash'], '', '/m', '1.h'), { kind: 'tm', argv: ['/bin/bash'] });
  t.throws(() => classifyStarterCall(['/bin/bash'], '/tmp/evil.sh', '/m', '1.h'), StarterError);
  t.throws(() => classifyStarterCall(['/bin/bash'], '/m/jobs/2.h.SC', '/m', '1.h'), /is not the job script/);
  t.throws(() => classifyStarterCall([], undefined, '/m', '1.h'), StarterError);
  t.throws(() => classifyStarterCall(['/bin/bash'], '/m/jobs/x.SC', '/m', '../x'), HookArgvError);
});

t.test('exit codes and the user line', async (t) => {
  t.equal(transientExitCode(1, 3), PROLOGUE_EXIT.requeue);
  t.equal(transientExitCode(3, 3), PROLOGUE_EXIT.requeue);
  t.equal(transientExitCode(4, 3), PROLOGUE_EXIT.abort);
  t.equal(transientExitCode(1, 0), PROLOGUE_EXIT.abort, 'max_requeues 0: never requeue');
  t.equal(userLine('a\nb\x1b[31m'), 'wnod: a b [31m');
});

t.test('hook entry argv', async (t) => {
  t.same(parseEntryArgv(['--config', '/etc/wnod/wnod.yaml', 'prologue', 'a', '']), { configPath: '/etc/wnod/wnod.yaml', hook: 'prologue', rest: ['a', ''] });
  t.same(parseEntryArgv(['--config', '/c', '--log', '/var/log/wnod.log', 'epilogue', 'x']), { configPath: '/c', fallbackLog: '/var/log/wnod.log', hook: 'epilogue', rest: ['x'] });
  t.throws(() => parseEntryArgv(['--config', '/c', '--log', 'rel.log', 'epilogue']));
  t.throws(() => parseEntryArgv(['--config', 'rel.yaml', 'prologue']));
  t.throws(() => parseEntryArgv(['prologue']));
  t.throws(() => parseEntryArgv(['--config', '/c', 'evil']));
});

t.test('the detached boot runs the hook entry it came from, and nothing else', async (t) => {
  t.equal(bootEntry('/opt/wnod/dist/hot/hook.cjs', 'torque'), '/opt/wnod/dist/hot/hook.cjs', 'the bundle');
  t.equal(bootEntry('/opt/wnod/dist/hot/slurm-hook.cjs', 'slurm'), '/opt/wnod/dist/hot/slurm-hook.cjs', 'Slurm\'s bundle');
  t.equal(bootEntry('/opt/wnod/dist/hot/hook.cjs', 'slurm'), undefined, 'never the other LRM\'s bundle');
  t.equal(bootEntry('/opt/wnod/dist/job/detachedBoot.js', 'torque'), '/opt/wnod/dist/lrm/torque/entry.js', 'the unbundled build');
  t.equal(bootEntry('/opt/wnod/dist/job/detachedBoot.js', 'slurm'), '/opt/wnod/dist/lrm/slurm/entry.js', 'the unbundled build, Slurm');
  t.equal(bootEntry('/work/src/job/detachedBoot.ts', 'torque'), undefined, 'sources: no entry to run');
  t.same(parseEntryArgv(['--config', '/c', 'boot', '7.h']), { configPath: '/c', hook: 'boot', rest: ['7.h'] });
  t.same(parseEntryArgv(['--config', '/c', 'sister', '7.h']).hook, 'sister', 'prologue.parallel');
  t.same(parseEntryArgv(['--config', '/c', 'sister-epilogue', '7.h']).hook, 'sister-epilogue', 'epilogue.parallel');
});

t.test('install renderers', async (t) => {
  const tpl = '[ -e @STATE@/x ]; exec @NODE@ @ENTRY@ --config @CONFIG@ --log @LOG@ prologue "$@"\n';
  const paths = { node: '/usr/bin/node', entry: '/opt/wnod/dist/lrm/torque/entry.js', config: '/etc/wnod/wnod.yaml', log: '/var/log/wnod/wnod.log', state: '/var/lib/wnod' };
  t.equal(renderShim(tpl, paths),
    '[ -e /var/lib/wnod/x ]; exec /usr/bin/node /opt/wnod/dist/lrm/torque/entry.js --config /etc/wnod/wnod.yaml --log /var/log/wnod/wnod.log prologue "$@"\n');
  for (const bad of ['/etc/wnod $(id).yaml', '/etc/wnod/`x`', 'rel/path', '/a/../b', '/a b']) {
    for (const k of ['config', 'log', 'state'] as const) t.throws(() => renderShim(tpl, { ...paths, [k]: bad }), InstallError, `${k} ${bad}`);
  }
  t.throws(() => mergeMomConfig('$job_starter_run_privileged true\n', []), InstallError, 'a root job starter is refused');
  t.throws(() => mergeMomConfig('$job_starter_run_privileged 1\n', []), InstallError);
  t.doesNotThrow(() => mergeMomConfig('$job_starter_run_privileged false\n', []));
  const cfg = { lrm: { type: 'torque' as const, jobClass: 'wnod', queue: 'wnod', momPriv: '/m', prologueBudgetS: 280, maxRequeues: 3 }, vm: { stopGraceS: 10 } as never };
  t.same(shimPlan(cfg).map((s) => [s.name, s.mode.toString(8)]), [['prologue.wnod', '500'], ['epilogue.wnod', '500'], ['prologue.parallel', '500'], ['epilogue.parallel', '500'], ['wnod-starter', '555']]);
  t.same(shimPlan({ lrm: { ...cfg.lrm, jobClass: undefined } }).map((s) => s.name), ['prologue', 'epilogue', 'prologue.parallel', 'epilogue.parallel', 'wnod-starter']);
  t.same(momConfigLines(cfg, '/m/wnod-starter'), ['$prologalarm 300', '$job_starter /m/wnod-starter']);
  t.match(qmgrLines(cfg).join('\n'), /set queue wnod kill_delay = 30/);
  const merged = mergeMomConfig('$pbsserver torque\n$prologalarm 60\n$usecp *:/home /home\n', momConfigLines(cfg, '/m/s'));
  t.equal(merged, '$pbsserver torque\n$usecp *:/home /home\n# wnod (wnod install torque)\n$prologalarm 300\n$job_starter /m/s\n');
  t.equal(mergeMomConfig(merged, momConfigLines(cfg, '/m/s')).match(/\$prologalarm/g)?.length, 1, 'idempotent');
});
