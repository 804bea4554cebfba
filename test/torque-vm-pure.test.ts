// The pure parts of carrying a Torque job into its VM (env, the script wrapper, the start dir) and the boot-slot
// count. The wrapper is also run by the host's real /bin/sh (dash), as the guest's busybox sh would run it.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { guestJobEnv, guestJobArgv, guestCwd, GUEST_PATH, MAX_GUEST_SCRIPT_BYTES, GuestJobError } from '../src/job/guestJob.js';
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
  t.equal(runIt("echo no-shebang 'quotes' \"$HOME\" >/dev/null; echo ok\n"), 'ok\n', 'no #!: run as a script file by sh');
  t.throws(() => guestJobArgv('x'.repeat(MAX_GUEST_SCRIPT_BYTES + 1)), GuestJobError);
  t.throws(() => guestJobArgv('echo \0'), GuestJobError);
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
