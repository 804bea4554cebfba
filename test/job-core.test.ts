// The worker-node core's own rules: the job user from the files (no helper exec), the header reader, job ids,
// and Torque's mapping of the core's outcomes.
import t from 'tap';
import { findGroupId, findPasswdEntry } from '../src/util/unixUsers.js';
import { readScriptHeader } from '../src/header/scriptHeader.js';
import { checkJobId } from '../src/job/jobId.js';
import { prologueExit, PROLOGUE_EXIT } from '../src/lrm/torque/outcome.js';

t.test('passwd and group entries are read from the files, strictly', async (t) => {
  const passwd = 'root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1002:Alice:/home/alice:/bin/sh\nbad:x:12a:1:b:/:/bin/sh\nshort:x:5:5\n';
  t.same(findPasswdEntry(passwd, 'alice'), { name: 'alice', uid: 1001, gid: 1002, home: '/home/alice', shell: '/bin/sh' });
  t.equal(findPasswdEntry(passwd, 'ali'), undefined, 'no prefix match');
  t.equal(findPasswdEntry(passwd, 'bad'), undefined, 'a non-numeric uid is no entry');
  t.equal(findPasswdEntry(passwd, 'short'), undefined, 'a truncated line is no entry');
  t.equal(findGroupId('wheel:x:10:alice\nwnod:x:998:\n', 'wnod'), 998);
  t.equal(findGroupId('wheel:x:10:alice\n', 'wnod'), undefined);
});

t.test('one header reader: ticket or deny (first wins) and the lease marker, in the leading block only', async (t) => {
  t.same(readScriptHeader('#!/bin/sh\n# wnod-lease: l0123456789\n# wnod-ticket: a.b\n# wnod-deny: x\necho\n'), { lease: 'l0123456789', ticket: 'a.b' });
  t.same(readScriptHeader('#!/bin/sh\n# wnod-deny: no\n# wnod-lease: lzzzz\n'), { deny: 'no' }, 'a malformed lease id is no lease');
  t.same(readScriptHeader('#!/bin/sh\necho\n# wnod-lease: l0123456789\n# wnod-ticket: a.b\n'), {});
});

t.test('job ids the core names files by', async (t) => {
  for (const id of ['13.host', '7[2].host', '42']) t.equal(checkJobId(id), id);
  for (const id of ['../x', '13.host/..', '', 'a13']) t.throws(() => checkJobId(id), { code: 'bad-job-id' });
});

t.test('Torque maps the core outcomes onto prologue exit codes', async (t) => {
  t.equal(prologueExit({ kind: 'go' }), PROLOGUE_EXIT.go);
  t.equal(prologueExit({ kind: 'refuse', code: 'denied', reason: 'r' }), PROLOGUE_EXIT.go, 'recorded: the starter tells the user');
  t.equal(prologueExit({ kind: 'retry', code: 'vm-start', message: 'm' }), PROLOGUE_EXIT.requeue);
});

t.test('the job state dir a hook creates under pbs_mom\'s job umask (077) is still traversable by the job user', async (t) => {
  const { stat } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { ensureJobStateDir } = await import('../src/job/jobstate.js');
  const base = t.testdir({});
  const stateDir = join(base, 'var', 'wnod');
  const old = process.umask(0o077);
  try {
    await ensureJobStateDir(stateDir);
  } finally {
    process.umask(old);
  }
  for (const d of [join(base, 'var'), stateDir]) t.equal((await stat(d)).mode & 0o777, 0o711, `${d} (made here) is 0711`);
  t.equal((await stat(join(stateDir, 'torque'))).mode & 0o777, 0o755, 'torque/ is 0755');
});

t.test('mkdirMode: the VM run dirs keep their mode under the job umask (077)', async (t) => {
  const { stat } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { mkdirMode } = await import('../src/util/atomic.js');
  const base = t.testdir({});
  const old = process.umask(0o077);
  try {
    await mkdirMode(join(base, 'run'), 0o711);
    await mkdirMode(join(base, 'run', 'vm-1'), 0o711);
  } finally {
    process.umask(old);
  }
  t.equal((await stat(join(base, 'run'))).mode & 0o777, 0o711);
  t.equal((await stat(join(base, 'run', 'vm-1'))).mode & 0o777, 0o711, 'the job user can reach its agent sockets');
});

t.test('removing a record also removes what a writer killed mid-write left (the epilogue SIGKILLs a boot still running)', async (t) => {
  const { readdir, writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { spawnSync } = await import('node:child_process');
  const { removeRecord } = await import('../src/vm/state.js');
  const { updateJobRecord, newJobRecord, jobStateDir } = await import('../src/job/jobstate.js');
  const stateDir = t.testdir({ vms: { '7.node.json': '{}', 'other.json': '{}' } });
  const dead = spawnSync('/bin/true').pid!; // exited and reaped: no process has this pid now (bar reuse)
  const vms = join(stateDir, 'vms');
  await writeFile(join(vms, `.7.node.json.${dead}.0badc0de.tmp`), '{"half');
  await writeFile(join(vms, `.7.node.json.${process.pid}.12345678.tmp`), '{"under way'); // a live writer's
  await writeFile(join(vms, `.other.json.${dead}.0badc0de.tmp`), '{"half'); // another VM's: not this removal's
  await removeRecord(stateDir, '7.node');
  t.same((await readdir(vms)).sort(), [`.7.node.json.${process.pid}.12345678.tmp`, `.other.json.${dead}.0badc0de.tmp`, 'other.json'],
    'the record and its dead writer\'s temp file are gone; a live write and other records stay');

  await updateJobRecord(stateDir, '7.node', () => newJobRecord('7.node', 'alice'));
  const jobs = jobStateDir(stateDir);
  await writeFile(join(jobs, `.7.node.json.${dead}.0badc0de.tmp`), '{"half');
  await updateJobRecord(stateDir, '7.node', () => undefined);
  t.same((await readdir(jobs)).filter((f) => f.includes('7.node')), [], 'a deleted job record leaves no temp file');
});

t.test('a process whose first thread has exited but another still runs is running: its writes may still land', async (t) => {
  const { writeFile, readFile, readdir } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { spawn, execFileSync } = await import('node:child_process');
  const { pidRunning } = await import('../src/util/pid.js');
  const { removeFileAtomic } = await import('../src/util/atomic.js');
  const { isAlive, procRef } = await import('../src/vm/proc.js');
  // what a SIGKILLed node process looks like while a thread of its pool is still in an fsync: the first thread a
  // zombie, one other thread alive (here: it returned from main with pthread_exit, the other sleeps)
  const dir = t.testdir({ 'r.json': '{}', 'leader.c': '#include <pthread.h>\n#include <unistd.h>\nstatic void *w(void *a) { (void)a; sleep(30); return 0; }\nint main(void) { pthread_t t; pthread_create(&t, 0, w, 0); pthread_exit(0); }\n' });
  execFileSync('cc', ['-pthread', '-o', join(dir, 'leader'), join(dir, 'leader.c')]);
  const child = spawn(join(dir, 'leader'), [], { stdio: 'ignore' });
  t.teardown(() => { child.kill('SIGKILL'); });
  const pid = child.pid!;
  const ref = await procRef(pid);
  const deadline = Date.now() + 10_000;
  const state = async () => /\) (\S)/.exec(await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''))?.[1];
  while ((await state()) !== 'Z' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(await state(), 'Z', 'its first thread is a zombie');
  t.equal((await readdir(`/proc/${pid}/task`)).length, 2, 'its other thread runs');
  t.equal(await pidRunning(pid), true, 'the process counts as running');
  t.equal(await isAlive(ref), true, 'and as alive');
  await writeFile(join(dir, `.r.json.${pid}.0badc0de.tmp`), '{"under way');
  await removeFileAtomic(join(dir, 'r.json'));
  t.ok((await readdir(dir)).includes(`.r.json.${pid}.0badc0de.tmp`), 'its temp file stays: that write may still end');
  child.kill('SIGKILL');
  const gone = Date.now() + 10_000;
  while ((await pidRunning(pid)) && Date.now() < gone) await new Promise((r) => setTimeout(r, 20));
  t.equal(await pidRunning(pid), false, 'killed: gone');
});

t.test('a writer killed but not yet reaped (a zombie: init reaps orphans when it gets to them) is dead: its temp file goes', async (t) => {
  const { readdir, readFile, writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { spawn } = await import('node:child_process');
  const { removeFileAtomic } = await import('../src/util/atomic.js');
  const { pidRunning } = await import('../src/util/pid.js');
  // `sleep 0` exits at once; its parent, exec'd into `sleep 30`, never waits for it: a zombie for 30 s
  const holder = spawn('/bin/sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => { holder.kill('SIGKILL'); });
  const zombie = Number(await new Promise<string>((resolve) => holder.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()))));
  const deadline = Date.now() + 10_000;
  const state = async () => /\) (\S)/.exec(await readFile(`/proc/${zombie}/stat`, 'utf8').catch(() => ''))?.[1];
  while ((await state()) !== 'Z' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(await state(), 'Z', `pid ${zombie} is a zombie (its /proc entry is still there)`);
  t.equal(await pidRunning(zombie), false, 'a zombie does not count as running');
  t.equal(await pidRunning(process.pid), true, 'this process does');
  const dir = t.testdir({ 'r.json': '{}' });
  await writeFile(join(dir, `.r.json.${zombie}.0badc0de.tmp`), '{"half');
  await removeFileAtomic(join(dir, 'r.json'));
  t.same(await readdir(dir), [], 'the record and the zombie writer\'s temp file are gone');
});
