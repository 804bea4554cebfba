// The pure parts of carrying a Torque job into its VM (env, the script wrapper, the start dir) and the boot-slot
// count. The wrapper is also run by the host's real /bin/sh (dash), as the guest's busybox sh would run it.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { guestJobEnv, guestJobArgv, guestCwd, guestNoteFilter, GUEST_PATH, MAX_GUEST_SCRIPT_BYTES, GuestJobError } from '../src/job/guestJob.js';
import { bootSlotCount } from '../src/job/bootSlots.js';

t.test('guestJobEnv: PBS_* and -v variables pass; host PATH, LD_*, shell state and bad names do not', async (t) => {
  const env = guestJobEnv({
    PBS_JOBID: '1.wn', PBS_O_WORKDIR: '/home/u/w', MY_VAR: 'a b', USER: 'u', LANG: 'C.UTF-8',
    PATH: '/host/bin', LD_PRELOAD: '/x.so', LD_LIBRARY_PATH: '/y', HOME: '/home/u', SHELL: '/bin/bash', PWD: '/p', SHLVL: '2',
    'BASH_FUNC_f%%': '() { :; }', UNSET: undefined, NODE_OPTIONS: '--require /x.js',
  }, '/home/u/w');
  t.same(env, { PBS_JOBID: '1.wn', PBS_O_WORKDIR: '/home/u/w', MY_VAR: 'a b', USER: 'u', LANG: 'C.UTF-8', PATH: GUEST_PATH, HOME: '/home/u/w' });
});

t.test('guestJobArgv: the script travels as one word; its #! chooses the interpreter; a missing one falls back to sh', async (t) => {
  const argv = guestJobArgv('#!/bin/sh\necho "one $1"\n');
  t.equal(argv[0], '/bin/sh');
  t.equal(argv.at(-1), '#!/bin/sh\necho "one $1"\n');
  const runIt = (script: string) => {
    const a = guestJobArgv(script);
    return execFileSync(a[0]!, a.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  };
  t.equal(runIt('#!/bin/sh\necho "it ran: $0" | sed "s#/tmp/wnod-job\\.[A-Za-z0-9]*/#DIR/#"\n'), 'it ran: DIR/job\n', 'exec of the written file');
  let err = '';
  try {
    execFileSync('/bin/sh', guestJobArgv('#!/nonexistent/bash -e\necho fell-back; exit 4\n').slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    t.equal(x.status, 4, 'the script\'s own exit status');
    t.equal(x.stdout, 'fell-back\n');
    err = x.stderr;
  }
  t.match(err, 'wnod: /nonexistent/bash is not in this image; running the job script with /bin/sh');
  // with the run's tag: the note is the first stderr line, headed by the tag, before anything of the job's
  try {
    execFileSync('/bin/sh', guestJobArgv('#!/nonexistent/zsh\necho out; echo err >&2; exit 5\n', ['a1'], 'wnod-note-T1').slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    t.equal((e as { stderr: Buffer }).stderr.toString(), 'wnod-note-T1 /nonexistent/zsh is not in this image; running the job script with /bin/sh\nerr\n');
  }
  t.equal(runIt("echo no-shebang 'quotes' \"$HOME\" >/dev/null; echo ok\n"), 'ok\n', 'no #!: run as a script file by sh');
  t.throws(() => guestJobArgv('x'.repeat(MAX_GUEST_SCRIPT_BYTES + 1)), GuestJobError);
  t.throws(() => guestJobArgv('echo \0'), GuestJobError);
});

t.test('guestNoteFilter: the tagged first line goes to the admin\'s note, the rest of stderr is untouched', async (t) => {
  const run = (chunks: string[]) => {
    let got = '';
    const notes: string[] = [];
    const out = new Writable({ write(c: Buffer, _e, cb) { got += c.toString(); cb(); } });
    const f = guestNoteFilter('wnod-note-T1', out, (n) => notes.push(n));
    for (const c of chunks) f.write(Buffer.from(c));
    f.flush();
    return { got, notes };
  };
  t.same(run(['wnod-note-T1 /bin/zsh is not in this image\nerr1\n', 'err2\n']), { got: 'err1\nerr2\n', notes: ['/bin/zsh is not in this image'] });
  t.same(run(['wnod-no', 'te-T1 split', ' note\n', 'e']), { got: 'e', notes: ['split note'] }, 'a note split across chunks');
  t.same(run(['plain error\n', 'wnod-note-T1 later\n']), { got: 'plain error\nwnod-note-T1 later\n', notes: [] }, 'only the first line can be a note');
  t.same(run(['wnod-note-T2 other tag\n']), { got: 'wnod-note-T2 other tag\n', notes: [] }, 'another run\'s tag is the job\'s text');
  t.same(run(['wnod-note']), { got: 'wnod-note', notes: [] }, 'a prefix of the tag at the end is flushed, not lost');
  t.same(run(['wnod-note-T1 ' + 'x'.repeat(2000)]), { got: 'wnod-note-T1 ' + 'x'.repeat(2000), notes: [] }, 'an endless first line is passed on, not held');
  t.same(run([]), { got: '', notes: [] });
});

t.test('guestCwd: the starter\'s cwd when inside the shared workdir, else the workdir, else /tmp', async (t) => {
  t.equal(guestCwd('/home/u/w', '/home/u/w'), '/home/u/w');
  t.equal(guestCwd('/home/u/w/sub', '/home/u/w/'), '/home/u/w/sub');
  t.equal(guestCwd('/home/u/w2', '/home/u/w'), '/home/u/w', 'a sibling with the same prefix is outside');
  t.equal(guestCwd('/home/u', '/home/u/w'), '/home/u/w');
  t.equal(guestCwd('/home/u', undefined), '/tmp');
});

t.test('bootSlotCount: max_booting, 0 = the core count', async (t) => {
  t.equal(bootSlotCount(3, 16), 3);
  t.equal(bootSlotCount(0, 2), 2);
  t.equal(bootSlotCount(0, 0), 1);
});
