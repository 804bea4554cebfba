// Fidelity of the pbs_mom harness (test/kit/pbsmom.ts) against DESIGN A2, with plain sh hooks that record
// what they were given: argv layouts, env, uid, cwd, stdin, sessions, the alarm, exit-code meaning, qdel.
import t from 'tap';
import { mkdir, readFile, chmod, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PbsMom, ensureTestUser, hookPermissionProblem, JOB_EXEC_FAIL2, JOB_EXEC_RETRY_PROLOGUE, JOB_EXEC_OVERLIMIT, type TestUser } from './kit/pbsmom.js';
import { reachable } from './kit/reachable.js';

const root = reachable(t.testdir({}));
let user: TestUser;
let rec: string;
let workdir: string;

t.before(async () => {
  user = await ensureTestUser('wnodmom');
  rec = join(root, 'rec');
  workdir = join(root, 'work');
  await mkdir(rec, { recursive: true });
  await mkdir(workdir, { recursive: true });
  await chmod(root, 0o755);
  await chmod(rec, 0o777);
  await chmod(workdir, 0o777);
});

/** A hook that records argc/argv, env, uid, cwd and stdin into rec/<tag>.* and exits with `code`. */
const recorder = (tag: string, code = 0, extra = '') => `#!/bin/sh
printf '%s\\n' "$#" "$@" > ${rec}/${tag}.argv
env | sort > ${rec}/${tag}.env
id -u > ${rec}/${tag}.uid
pwd > ${rec}/${tag}.cwd
cat > ${rec}/${tag}.stdin
echo "${tag} says hello"
${extra}
exit ${code}
`;

const lines = async (tag: string, ext: string) => (await readFile(join(rec, `${tag}.${ext}`), 'utf8')).split('\n').slice(0, -1);
const envOf = async (tag: string) => Object.fromEntries((await lines(tag, 'env')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

async function mom(name: string, opts: Partial<ConstructorParameters<typeof PbsMom>[0]> = {}): Promise<PbsMom> {
  const m = new PbsMom({ momPriv: join(root, name, 'mom_priv'), ...opts });
  await m.setup();
  return m;
}

/** Alive = has a /proc entry that is not a zombie. */
function isAlive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

t.test('permission rule: root hooks and user hooks', async (t) => {
  t.equal(hookPermissionProblem({ uid: 0, mode: 0o100500, isFile: true }, 'root'), undefined);
  t.equal(hookPermissionProblem({ uid: 0, mode: 0o100755, isFile: true }, 'root'), undefined);
  t.match(hookPermissionProblem({ uid: 1000, mode: 0o100500, isFile: true }, 'root'), /not root/);
  t.match(hookPermissionProblem({ uid: 0, mode: 0o100775, isFile: true }, 'root'), /writable/);
  t.match(hookPermissionProblem({ uid: 0, mode: 0o100400, isFile: true }, 'root'), /u\+rx/);
  t.match(hookPermissionProblem({ uid: 0, mode: 0o100500, isFile: true }, 'user'), /o\+rx/);
  t.equal(hookPermissionProblem({ uid: 0, mode: 0o100555, isFile: true }, 'user'), undefined);
});

t.test('Torque 6.x: prologue 8 args, epilogue 11, as root, pbs_mom env without PBS_JOBID; starter as user', async (t) => {
  const m = await mom('v6');
  await m.installHook('prologue', recorder('pro6'));
  await m.installHook('epilogue', recorder('epi6'));
  const starter = join(root, 'v6', 'starter.sh');
  await writeFile(starter, `#!/bin/sh
read line
echo "$line" > ${rec}/st6.stdin
printf '%s\\n' "$#" "$@" > ${rec}/st6.argv
env | sort > ${rec}/st6.env
id -u > ${rec}/st6.uid
pwd > ${rec}/st6.cwd
echo "$line" | exec "$1"
`, { mode: 0o755 });
  (m.opts as { jobStarter?: string }).jobStarter = starter;
  const r = await m.runJob({ id: '13.node1', user, workdir, script: '#!/bin/bash\necho job-out\necho job-err >&2\nexit 3\n', vars: { MYVAR: 'x y' }, account: '', queue: 'wnod', resourceList: 'walltime=00:05:00,nodes=1' });
  t.equal(r.outcome, 'completed');
  t.equal(r.exitStatus, 3, 'the starter\'s exit status is the job\'s');
  const pa = await lines('pro6', 'argv');
  t.same(pa, ['8', '13.node1', user.name, user.group, 'STDIN', 'walltime=00:05:00,nodes=1', 'wnod', '', join(m.opts.momPriv, 'jobs', '13.node1.SC')]);
  const ea = await lines('epi6', 'argv');
  t.equal(ea[0], '11');
  t.equal(ea[5], String(r.attempts[0]!.starter!.sessionId), 'argv[5] = the job session id');
  t.match(ea[7]!, /^cput=.*walltime=\d\d:\d\d:\d\d/);
  t.equal(ea[10], '3', 'argv[10] = exit status');
  t.equal(ea[11], m.scriptPath({ id: '13.node1' } as never));
  t.same(await lines('pro6', 'uid'), ['0']);
  t.same(await lines('pro6', 'stdin'), [], 'stdin is /dev/null');
  const penv = await envOf('pro6');
  t.equal(penv.PATH, '/bin:/usr/bin');
  t.notOk('PBS_JOBID' in penv, 'no PBS_JOBID for hooks');
  t.notOk('MYVAR' in penv, 'no -v variables for hooks');
  t.equal(penv.PBS_O_WORKDIR, workdir);
  // the starter: argv = login shell, one stdin line, the full job env, as the user, in the initial dir
  t.same(await lines('st6', 'argv'), ['1', '/bin/bash']);
  t.same(await lines('st6', 'stdin'), [m.scriptPath({ id: '13.node1' } as never)]);
  t.same(await lines('st6', 'uid'), [String(user.uid)]);
  t.same(await lines('st6', 'cwd'), [workdir]);
  const senv = await envOf('st6');
  t.equal(senv.PBS_JOBID, '13.node1');
  t.equal(senv.MYVAR, 'x y');
  t.equal(senv.PBS_O_WORKDIR, workdir);
  // hook and job output land in the job's .o/.e files
  t.match(r.stdout, /pro6 says hello[\s\S]*job-out[\s\S]*epi6 says hello/);
  t.match(r.stderr, /job-err/);
});

t.test('Torque 2.5: prologue 7 args, epilogue 10', async (t) => {
  const m = await mom('v25', { version: '2.5' });
  await m.installHook('prologue', recorder('pro25'));
  await m.installHook('epilogue', recorder('epi25'));
  const r = await m.runJob({ id: '7[2].node1', user, workdir, script: '#!/bin/bash\nexit 0\n' });
  t.equal(r.exitStatus, 0);
  t.equal((await lines('pro25', 'argv'))[0], '7');
  t.equal((await lines('epi25', 'argv'))[0], '10');
});

t.test('prologue exit 1 aborts the job (-2); the epilogue still runs; the job never starts', async (t) => {
  const m = await mom('abort');
  await m.installHook('prologue', recorder('proab', 1));
  await m.installHook('epilogue', recorder('epiab'));
  const r = await m.runJob({ id: '20.n', user, workdir, script: '#!/bin/bash\ntouch ' + join(rec, 'ab-ran') + '\n' });
  t.equal(r.outcome, 'aborted');
  t.equal(r.exitStatus, JOB_EXEC_FAIL2);
  t.equal(r.requeues, 0);
  t.notOk(r.attempts[0]!.starter, 'no starter');
  t.equal((await lines('epiab', 'argv'))[10], '-2');
  await t.rejects(readFile(join(rec, 'ab-ran')), 'the job script did not run');
  // as the real pbs_mom: the output of a job aborted in its prologue is not delivered, it stays in the spool
  t.equal(r.delivered, false);
  t.equal(r.stdout, '', 'nothing reaches the user');
  t.match(r.spool.stdout, /proab says hello/, 'the prologue\'s line stays in the node\'s spool');
});

t.test('the job umask (077) for every hook and the job; the starter runs for every job of the MOM', async (t) => {
  const starter = join(root, 'umask', 'starter');
  await mkdir(join(root, 'umask'), { recursive: true });
  await writeFile(starter, `#!/bin/sh\necho "starter umask $(umask)"\nexec "$@"\n`, { mode: 0o755 });
  const m = await mom('umask', { jobStarter: starter });
  await m.installHook('prologue', `#!/bin/sh\nmkdir ${rec}/umask-dir\necho "prologue umask $(umask)"\n`);
  for (const [id, script] of [['25.n', '#!/bin/bash\necho "job umask $(umask)"\n'], ['26.n', '#!/bin/bash\necho plain\n']] as const) {
    const r = await m.runJob({ id, user, workdir, script });
    t.match(r.stdout, /^starter umask 0077$/m, `${id}: the starter ran`);
    t.equal(r.exitStatus, 0);
    if (id === '25.n') t.match(r.stdout, /prologue umask 0077[\s\S]*job umask 0077/);
  }
  const { stat } = await import('node:fs/promises');
  t.equal((await stat(join(rec, 'umask-dir'))).mode & 0o777, 0o700, 'a directory a hook makes without a mode comes out 0700');
});

t.test('one job dispatched at a time while a prologue runs', async (t) => {
  const m = await mom('dispatch');
  await m.installHook('prologue', `#!/bin/sh\necho "start $1" >> ${rec}/dispatch\nsleep 0.5\necho "end $1" >> ${rec}/dispatch\n`);
  await Promise.all(['30.n', '31.n', '32.n'].map((id) => m.runJob({ id, user, workdir, script: '#!/bin/bash\ntrue\n' })));
  const seen = (await readFile(join(rec, 'dispatch'), 'utf8')).trim().split('\n');
  t.equal(seen.length, 6);
  for (let i = 0; i < 6; i += 2) {
    t.equal(seen[i]!.split(' ')[0], 'start', `line ${i}`);
    t.equal(seen[i + 1], `end ${seen[i]!.split(' ')[1]}`, 'no other prologue started before this one ended');
  }
});

t.test('prologue exit 2 requeues in a loop, each attempt followed by the epilogue', async (t) => {
  const m = await mom('requeue', { requeueLimit: 2 });
  await m.installHook('prologue', recorder('prorq', 2));
  await m.installHook('epilogue', `#!/bin/sh\necho "\${10}" >> ${rec}/epirq.status\n`);
  const r = await m.runJob({ id: '21.n', user, workdir, script: '#!/bin/bash\n' });
  t.equal(r.outcome, 'requeue-limit');
  t.equal(r.requeues, 2);
  t.same(await lines('epirq', 'status'), ['-14', '-14', '-14']);
});

t.test('a hook with bad permissions is a FAILURE: requeue loop, counted', async (t) => {
  const m = await mom('badmode', { requeueLimit: 3 });
  await m.installHook('prologue', recorder('probad'), 0o777);
  await m.installHook('epilogue', recorder('epibad'));
  const r = await m.runJob({ id: '22.n', user, workdir, script: '#!/bin/bash\n' });
  t.equal(r.outcome, 'requeue-limit');
  t.equal(r.requeues, 3);
  t.equal(r.attempts.length, 4);
  for (const a of r.attempts) {
    t.match(a.prologue!.badPermissions, /writable/);
    t.equal(a.exitStatus, JOB_EXEC_RETRY_PROLOGUE);
    t.equal(a.epilogue!.exitCode, 0, 'the epilogue ran');
  }
  await t.rejects(readFile(join(rec, 'probad.argv')), 'the badly owned prologue was never executed');
  // a non-root owner is refused the same way
  const m2 = await mom('badowner', { requeueLimit: 0 });
  await m2.installHook('prologue', recorder('proown'), 0o500, user.uid);
  const r2 = await m2.runJob({ id: '23.n', user, workdir, script: '#!/bin/bash\n' });
  t.match(r2.attempts[0]!.prologue!.badPermissions, /not root/);
  t.equal(r2.outcome, 'requeue-limit');
});

t.test('$prologalarm kills the hook\'s whole session (children included) → requeue; the epilogue runs', async (t) => {
  const m = await mom('alarm', { prologAlarmMs: 1500, alarmMarginMs: 500, requeueLimit: 0 });
  await m.installHook('prologue', `#!/bin/sh\nsleep 300 &\necho $! > ${rec}/alarm.child\nsetsid sleep 300 &\necho $! > ${rec}/alarm.escaped\nsleep 300\n`);
  await m.installHook('epilogue', recorder('epialarm'));
  const r = await m.runJob({ id: '24.n', user, workdir, script: '#!/bin/bash\n' });
  const p = r.attempts[0]!.prologue!;
  t.equal(p.timedOut, true);
  t.equal(p.signal, 'SIGKILL');
  t.equal(r.exitStatus, JOB_EXEC_RETRY_PROLOGUE);
  t.equal((await lines('epialarm', 'argv'))[10], '-14', 'the epilogue ran after the timeout');
  const child = Number((await lines('alarm', 'child'))[0]);
  const escaped = Number((await lines('alarm', 'escaped'))[0]);
  // the SIGKILL is sent synchronously to every session member; give init a moment to reap the orphan
  for (let i = 0; i < 50 && isAlive(child); i++) await new Promise((res) => setTimeout(res, 100));
  t.notOk(isAlive(child), 'the background child in the hook\'s session was killed');
  t.ok(isAlive(escaped), 'a process that left the session (setsid) is not pbs_mom\'s to kill');
  process.kill(escaped, 'SIGKILL');
});

t.test('job class: prologue.<class> replaces the plain prologue', async (t) => {
  const m = await mom('class');
  await m.installHook('prologue', recorder('proplain'));
  await m.installHook('prologue.wnod', recorder('proclass'));
  await m.runJob({ id: '25.n', user, workdir, script: '#!/bin/bash\n', jobClass: 'wnod' });
  t.equal((await lines('proclass', 'argv'))[0], '8');
  await t.rejects(readFile(join(rec, 'proplain.argv')));
});

t.test('qdel: epilogue.precancel as the user, then SIGTERM to the session (exit 256+15)', async (t) => {
  const m = await mom('qdel', { killDelayMs: 300 });
  await m.installHook('epilogue.precancel', recorder('precancel'), 0o555);
  await m.installHook('epilogue', recorder('epiqdel'));
  const r = await m.runJob({ id: '26.n', user, workdir, script: '#!/bin/bash\necho started\nsleep 60\n', qdelAfterMs: 500 });
  t.same(await lines('precancel', 'uid'), [String(user.uid)]);
  t.notMatch(r.stdout, /precancel says hello/, 'precancel output is discarded');
  t.equal(r.exitStatus, 256 + 15);
  t.equal((await lines('epiqdel', 'argv'))[10], '271');
});

t.test('walltime: SIGTERM to the session, exit status -11', async (t) => {
  const m = await mom('wall', { checkPollMs: 300 });
  await m.installHook('epilogue', recorder('epiwall'));
  const r = await m.runJob({ id: '27.n', user, workdir, script: `#!/bin/bash\ntrap "" TERM\necho $$ > ${rec}/wall.pid\nsleep 60\n`, walltimeMs: 300 });
  t.equal(r.exitStatus, JOB_EXEC_OVERLIMIT);
  const pid = Number((await lines('wall', 'pid'))[0]);
  for (let i = 0; i < 50 && isAlive(pid); i++) await new Promise((res) => setTimeout(res, 100));
  t.notOk(isAlive(pid), 'a job that ignores SIGTERM is SIGKILLed at the next poll');
  t.equal((await lines('epiwall', 'argv'))[10], '-11');
});
