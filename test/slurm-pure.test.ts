// Pure parts of the Slurm adapter: slurm.conf and plugstack.conf merging, the shims, job ids, and the sbatch/squeue
// parsers on output captured from Slurm 22.05 (Debian 12).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { mergePlugstack, mergeSlurmConf, renderSlurmShim, slurmLayout, SlurmInstallError, pluginBuildArgs } from '../src/lrm/slurm/install.js';
import { parseSbatchParsable, parseSqueueStates, sbatchArgs, slurmTime, SlurmLrmError } from '../src/lrm/slurm/adapter.js';
import { parseSlurmJobId, SlurmJobIdError } from '../src/lrm/slurm/jobId.js';
import { parseSlurmEntryArgv } from '../src/lrm/slurm/entry-argv.js';

const cfg = { lrm: { type: 'slurm', partition: 'wnod', hookDir: '/opt/wnod/slurm', momPriv: '', prologueBudgetS: 280, maxRequeues: 0 }, vm: { stateDir: '/var/lib/wnod' } } as const;
const layout = slurmLayout(cfg as never, '/etc/slurm/slurm.conf');
const BASE = 'ClusterName=c\nSlurmctldHost=h\nProctrackType=proctrack/linuxproc\nNodeName=n1 CPUs=2 State=UNKNOWN\nPartitionName=wnod Nodes=ALL\n';

t.test('layout: everything in hook_dir, marks under vm.state_dir, plugstack.conf beside slurm.conf', async (t) => {
  t.same(layout, {
    hookDir: '/opt/wnod/slurm', prolog: '/opt/wnod/slurm/prolog', epilog: '/opt/wnod/slurm/epilog', runner: '/opt/wnod/slurm/runner',
    health: '/opt/wnod/slurm/health', plugin: '/opt/wnod/slurm/wnod_spank.so', marks: '/var/lib/wnod/slurm', plugstack: '/etc/slurm/plugstack.conf',
  });
  t.throws(() => slurmLayout(cfg as never, '/etc/slurm dir/slurm.conf'), SlurmInstallError);
});

t.test('slurm.conf: Prolog, Epilog and PrologFlags=Alloc added once; idempotent', async (t) => {
  const p = mergeSlurmConf(BASE, layout, 280);
  t.same(p.changes, ['add Prolog=/opt/wnod/slurm/prolog', 'add Epilog=/opt/wnod/slurm/epilog', 'add PrologFlags=Alloc',
    'add HealthCheckProgram=/opt/wnod/slurm/health', 'add HealthCheckInterval=60']);
  t.same(p.notes, []);
  t.ok(p.text.startsWith(BASE), 'the site lines are kept as they were');
  t.match(p.text, /^Prolog=\/opt\/wnod\/slurm\/prolog$/m);
  const again = mergeSlurmConf(p.text, layout, 280);
  t.same(again.changes, []);
  t.equal(again.text, p.text);
});

t.test('slurm.conf: the health check — a site\'s own HealthCheckProgram and interval are kept, with a note', async (t) => {
  const p = mergeSlurmConf(BASE + 'HealthCheckProgram=/usr/sbin/nhc\nHealthCheckInterval=300\n', layout, 280, 30);
  t.notMatch(p.text, /HealthCheckProgram=\/opt/);
  t.match(p.text, /^HealthCheckInterval=300$/m);
  t.match(p.notes.join('\n'), /already has HealthCheckProgram=\/usr\/sbin\/nhc .*run \/opt\/wnod\/slurm\/health too/);
  const q = mergeSlurmConf(BASE, layout, 280, 30);
  t.match(q.text, /^HealthCheckInterval=30$/m, '--health-interval when slurm.conf sets none');
  t.match(mergeSlurmConf(BASE + 'HealthCheckInterval=0\n', layout, 280).notes.join('\n'), /never runs/);
});

t.test('slurm.conf: existing PrologFlags gain Alloc in place; one with Alloc is kept', async (t) => {
  const p = mergeSlurmConf(BASE + 'PrologFlags=Contain,X11\n', layout, 280);
  t.match(p.text, /^PrologFlags=Contain,X11,Alloc$/m);
  t.equal(p.text.match(/PrologFlags/g)!.length, 1);
  t.match(p.changes.join('\n'), /PrologFlags=Contain,X11 → Contain,X11,Alloc/);
  const q = mergeSlurmConf(BASE + 'prologflags=alloc,contain\n', layout, 280);
  t.notMatch(q.changes.join('\n'), /PrologFlags/);
});

t.test('slurm.conf: a foreign Prolog/Epilog, PlugStackConfig elsewhere, a short PrologEpilogTimeout, duplicates are refused', async (t) => {
  t.throws(() => mergeSlurmConf(BASE + 'Prolog=/etc/slurm/site-prolog\n', layout, 280), { message: /already has Prolog=\/etc\/slurm\/site-prolog/ });
  t.throws(() => mergeSlurmConf(BASE + 'Epilog=/x\n', layout, 280), { message: /already has Epilog=\/x/ });
  t.throws(() => mergeSlurmConf(BASE + 'PlugStackConfig=/etc/other/plugstack.conf\n', layout, 280), { message: /PlugStackConfig=\/etc\/other\/plugstack.conf/ });
  t.doesNotThrow(() => mergeSlurmConf(BASE + 'PlugStackConfig=/etc/slurm/plugstack.conf\n', layout, 280));
  t.throws(() => mergeSlurmConf(BASE + 'PrologEpilogTimeout=60\n', layout, 280), { message: /at least 310/ });
  t.doesNotThrow(() => mergeSlurmConf(BASE + 'PrologEpilogTimeout=400\n', layout, 280));
  t.throws(() => mergeSlurmConf(BASE + 'Prolog=/a\nprolog=/b\n', layout, 280), { message: /twice/ });
});

t.test('plugstack.conf: our line replaces an older one; the site lines stay', async (t) => {
  const site = 'optional /usr/lib/slurm/spank_x11.so\n';
  const one = mergePlugstack(site, layout);
  t.equal(one, 'optional /usr/lib/slurm/spank_x11.so\n# wnod SPANK plugin (wnod install slurm)\nrequired /opt/wnod/slurm/wnod_spank.so runner=/opt/wnod/slurm/runner marks=/var/lib/wnod/slurm\n');
  t.equal(mergePlugstack(one, layout), one, 'idempotent');
  t.equal(mergePlugstack('', layout).split('\n').filter((l) => l.startsWith('required')).length, 1);
});

t.test('shims: paths baked in, the partition checked, the templates fully filled', async (t) => {
  const v = { node: '/usr/bin/node', entry: '/opt/wnod/dist/hot/slurm-hook.cjs', config: '/etc/wnod/wnod.yaml', slurmConf: '/etc/slurm/slurm.conf', partition: 'wnod' };
  for (const shim of ['prolog', 'epilog', 'runner']) {
    const text = renderSlurmShim(readFileSync(new URL(`../lrm-hooks/slurm/${shim}`, import.meta.url), 'utf8'), v);
    t.notMatch(text, /@[A-Z_]+@/, `${shim}: no placeholder left`);
    t.match(text, /exec .*\/usr\/bin\/node \/opt\/wnod\/dist\/hot\/slurm-hook\.cjs --config \/etc\/wnod\/wnod\.yaml /s);
    if (shim !== 'runner') {
      t.match(text, /^\[ "\$\{SLURM_JOB_PARTITION-\}" = "wnod" \] \|\| exit 0$/m, `${shim}: other partitions leave at once`);
      t.match(text, /env -i /, `${shim}: a clean environment`);
    }
  }
  t.throws(() => renderSlurmShim('@NODE@', { ...v, node: '/usr/bin/no de' }), SlurmInstallError);
  t.throws(() => renderSlurmShim('@NODE@', { ...v, partition: 'a"b' }), SlurmInstallError);
  t.throws(() => renderSlurmShim('@NODE@ @OTHER@', v), { message: /unknown placeholder/ });
  t.same(pluginBuildArgs('/p/wnod_spank.c', '/t/wnod_spank.so'), ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-o', '/t/wnod_spank.so', '/p/wnod_spank.c']);
});

t.test('job ids: plain decimal ids below NO_VAL only', async (t) => {
  t.equal(parseSlurmJobId('42'), '42');
  t.equal(parseSlurmJobId('4294967293'), '4294967293');
  for (const bad of [undefined, '', '0', '042', '12_3', '12+0', '../1', '1 ', '4294967294', '99999999999']) t.throws(() => parseSlurmJobId(bad), SlurmJobIdError, String(bad));
});

t.test('sbatch arguments and output', async (t) => {
  const j = { script: '', workdir: '/home/u/.wnod/leases/l1', name: 'wnod-l0123456789', walltimeS: 3600 * 8 + 5, cpus: 2, memoryMB: 512, stdoutPath: '/o', stderrPath: '/e' };
  t.same(sbatchArgs(j, 'wnod', '/tmp/p.sh'), ['--parsable', '--job-name', 'wnod-l0123456789', '--partition', 'wnod', '--time', '8:00:05',
    '--nodes', '1', '--ntasks', '1', '--cpus-per-task', '2', '--mem', '512M', '--chdir', '/home/u/.wnod/leases/l1', '--output', '/o', '--error', '/e', '/tmp/p.sh']);
  // a lease group: one task per node on N nodes, the cpus and memory on each
  t.same(sbatchArgs({ ...j, nodes: 3 }, 'wnod', '/tmp/p.sh').slice(7, 17), ['--nodes', '3', '--ntasks-per-node', '1', '--cpus-per-task', '2', '--mem', '512M', '--chdir', '/home/u/.wnod/leases/l1']);
  t.throws(() => sbatchArgs(j, 'a,b', '/p'), SlurmLrmError);
  t.equal(slurmTime(65), '0:01:05');
  t.throws(() => slurmTime(0), SlurmLrmError);
  // as printed by sbatch --parsable (22.05), with and without a cluster
  t.equal(parseSbatchParsable('6\n'), '6');
  t.equal(parseSbatchParsable('17;wsl\n'), '17');
  t.throws(() => parseSbatchParsable('Submitted batch job 6\n'), SlurmJobIdError);
  t.throws(() => parseSbatchParsable(''), SlurmLrmError);
});

t.test('squeue states (squeue -h --me -t all -o %i|%T as printed by 22.05)', async (t) => {
  const out = '5|CANCELLED\n6|COMPLETED\n7|RUNNING\n8|PENDING\n9|COMPLETING\n10|TIMEOUT\n';
  t.equal(parseSqueueStates(out, '5'), 'done');
  t.equal(parseSqueueStates(out, '6'), 'done');
  t.equal(parseSqueueStates(out, '7'), 'running');
  t.equal(parseSqueueStates(out, '8'), 'queued');
  t.equal(parseSqueueStates(out, '9'), 'running');
  t.equal(parseSqueueStates(out, '10'), 'done');
  t.equal(parseSqueueStates(out, '11'), 'unknown', 'purged (MinJobAge) or never known');
  t.equal(parseSqueueStates('', '1'), 'unknown');
  t.throws(() => parseSqueueStates('7|WEIRD_STATE\n', '7'), SlurmLrmError);
  t.throws(() => parseSqueueStates('JOBID STATE\n', '7'), SlurmLrmError);
});

t.test('hook environment: slurmd\'s variables parsed strictly', async (t) => {
  const { parseHookEnv, parseEpilogEnv, parseCpusPerNode, expandCpusPerNode, parseSlurmMemoryMB, waitStatusToExit, SlurmEnvError } = await import('../src/lrm/slurm/env.js');
  // as dumped from a real Prolog (22.05, PrologFlags=Alloc)
  const env = {
    SLURMD_NODENAME: 'n1', SLURM_JOB_COMMENT: 'wnod-ticket:abc', SLURM_JOB_CPUS_PER_NODE: '2', SLURM_JOB_GID: '1002', SLURM_JOB_ID: '1',
    SLURM_JOB_PARTITION: 'wnod', SLURM_JOB_UID: '1002', SLURM_JOB_USER: 'wsljob', SLURM_JOB_WORK_DIR: '/home/wsljob',
  };
  t.same(parseHookEnv(env), { jobId: '1', user: 'wsljob', uid: 1002, gid: 1002, partition: 'wnod', comment: 'wnod-ticket:abc', cpus: 2, workdir: '/home/wsljob', node: 'n1', numNodes: 1, nodelist: undefined, cpusPerNode: [2] });
  // a job on three nodes, as slurmd passes it
  const multi = parseHookEnv({ ...env, SLURM_JOB_NUM_NODES: '3', SLURM_JOB_NODELIST: 'n[1-2],gpu01', SLURM_JOB_CPUS_PER_NODE: '2(x2),1' });
  t.same([multi.numNodes, multi.nodelist, multi.cpusPerNode], [3, 'n[1-2],gpu01', [2, 2, 1]]);
  t.equal(parseHookEnv({ ...env, SLURM_JOB_NODELIST: 'n1;rm -rf' }).nodelist, undefined, 'a node list with other characters is not passed on');
  t.throws(() => parseHookEnv({ ...env, SLURM_JOB_NUM_NODES: 'two' }), SlurmEnvError);
  t.throws(() => parseHookEnv({ ...env, SLURM_JOB_ID: '1;rm' }), SlurmJobIdError);
  t.throws(() => parseHookEnv({ ...env, SLURM_JOB_USER: '../root' }), SlurmEnvError);
  t.throws(() => parseHookEnv({ ...env, SLURM_JOB_UID: '-1' }), SlurmEnvError);
  t.equal(parseHookEnv({ ...env, SLURM_JOB_WORK_DIR: 'relative' }).workdir, undefined);
  t.equal(parseCpusPerNode('2(x3)'), 2);
  t.equal(parseCpusPerNode('4,2(x2)'), 4);
  t.equal(parseCpusPerNode('x'), undefined);
  t.same(expandCpusPerNode('4,2(x2)'), [4, 2, 2]);
  for (const bad of ['2(x0)', '2(x', '0', '2,,1', '2(x3)x']) t.equal(expandCpusPerNode(bad), undefined, bad);
  t.equal(expandCpusPerNode('1(x5)', 4), undefined, 'more nodes than allowed');
  t.equal(parseSlurmMemoryMB('300M\n'), 300);
  t.equal(parseSlurmMemoryMB('2G'), 2048);
  t.equal(parseSlurmMemoryMB('4000'), 4000);
  t.equal(parseSlurmMemoryMB('0'), undefined);
  t.equal(parseSlurmMemoryMB('lots'), undefined);
  t.equal(waitStatusToExit(768), 3);
  t.equal(waitStatusToExit(9), 137);
  t.equal(parseEpilogEnv({ ...env, SLURM_JOB_EXIT_CODE: '1792' }).exitCode, 7);
  t.equal(parseEpilogEnv(env).exitCode, undefined);
});

t.test('marks and run reports (pure)', async (t) => {
  const { renderMark, parseMark, parseReport, renderReport, SlurmMarkError } = await import('../src/lrm/slurm/marks.js');
  t.equal(renderMark({ kind: 'vm' }), 'vm\n');
  t.equal(renderMark({ kind: 'refuse', reason: 'no\nticket\x1b[31m' }), 'refuse\nno ticket [31m\n');
  t.same(parseMark('refuse\nno ticket\n'), { kind: 'refuse', reason: 'no ticket' });
  t.same(parseMark('vm\n'), { kind: 'vm' });
  t.throws(() => parseMark('bare\n'), SlurmMarkError);
  const r = { exit: 3, startedAt: 1000, endedAt: 2500 };
  t.same(parseReport(renderReport(r)), r);
  for (const bad of ['', '{}', '{"exit":256,"startedAt":1,"endedAt":2}', '{"exit":1,"startedAt":3,"endedAt":2}', '{"exit":1,"startedAt":1,"endedAt":2,"x":1}', '{"exit":"0","startedAt":1,"endedAt":2}']) {
    t.equal(parseReport(bad), undefined, bad);
  }
});

t.test('the Slurm hook entry: slurmd\'s hooks and the detached boot the Prolog starts', async (t) => {
  t.same(parseSlurmEntryArgv(['--config', '/c', 'boot', '42']), { configPath: '/c', hook: 'boot', rest: ['42'] });
  t.same(parseSlurmEntryArgv(['--config', '/c', 'runner', 'a']).hook, 'runner');
  t.throws(() => parseSlurmEntryArgv(['--config', '/c', 'sister-boot', '42']), 'Torque\'s sister boot is not Slurm\'s');
  t.throws(() => parseSlurmEntryArgv(['--config', 'rel.yaml', 'boot', '42']));
});
