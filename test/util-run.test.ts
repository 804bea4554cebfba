// src/util/run.ts: the one way wnod runs a program (argument array, bounded time and output). Its contract:
// output kept whole, each failure thrown as a CommandError that says which failure it was.
import t from 'tap';
import { run, CommandError } from '../src/util/run.js';

const failure = async (p: Promise<unknown>): Promise<CommandError> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof CommandError) return err;
    throw err;
  }
  throw new Error('the run did not fail');
};

t.test('stdout and stderr kept as printed (final newline too); exit 0', async (t) => {
  const r = await run('/bin/sh', ['-c', 'printf "a\\nb\\n"; printf "e\\n" >&2']);
  t.same(r, { stdout: 'a\nb\n', stderr: 'e\n', exitCode: 0 });
});

t.test('arguments are never a shell\'s', async (t) => {
  const r = await run('/bin/echo', ['$HOME', '; true', '`id`']);
  t.equal(r.stdout, '$HOME ; true `id`\n');
});

t.test('a non-zero exit throws with the exit code and the end of stderr', async (t) => {
  const e = await failure(run('/bin/sh', ['-c', 'echo one >&2; echo two >&2; exit 3']));
  t.equal(e.code, 'command-failed');
  t.equal(e.exitCode, 3);
  t.equal(e.stderr, 'one\ntwo\n');
  t.match(e.message, /failed \(exit 3\): one \/ two/);
});

t.test('a program killed by a signal fails', async (t) => {
  const e = await failure(run('/bin/sh', ['-c', 'kill -9 $$']));
  t.equal(e.exitCode, undefined);
  t.match(e.message, /SIGKILL/);
});

t.test('a program that cannot start fails as such (missing program, missing cwd)', async (t) => {
  t.match((await failure(run('/nonexistent/prog', []))).message, /could not be started: .*ENOENT/);
  t.match((await failure(run('/bin/true', [], { cwd: '/nonexistent/dir' }))).message, /could not be started/);
});

t.test('past the timeout the program is killed and the run fails', async (t) => {
  const e = await failure(run('/bin/sleep', ['30'], { timeoutMs: 100 }));
  t.match(e.message, /timed out after 100 ms/);
});

t.test('a program that ignores SIGTERM is killed anyway', async (t) => {
  const e = await failure(run('/bin/sh', ['-c', 'trap "" TERM; sleep 30 & wait; sleep 30'], { timeoutMs: 100 }));
  t.match(e.message, /timed out/);
});

t.test('output past maxBuffer kills the program and fails', async (t) => {
  const e = await failure(run('/bin/sh', ['-c', 'while :; do echo yyyyyyyyyyyyyyyy; done'], { maxBuffer: 1000 }));
  t.match(e.message, /more than 1000 bytes/);
});

t.test('input goes to stdin and is closed; without it stdin is empty', async (t) => {
  t.equal((await run('/bin/cat', [], { input: 'hello\n' })).stdout, 'hello\n');
  t.equal((await run('/bin/cat', [])).stdout, '');
  // a program that exits without reading a large input does not fail the run
  t.equal((await run('/bin/true', [], { input: 'x'.repeat(1 << 20) })).exitCode, 0);
});

t.test('env extends this process\'s environment, or replaces it with extendEnv: false', async (t) => {
  const show = ['-c', 'echo "${WNOD_RUN_T-unset} ${WNOD_RUN_PARENT-unset}"'];
  process.env.WNOD_RUN_PARENT = 'p';
  t.teardown(() => { delete process.env.WNOD_RUN_PARENT; });
  t.equal((await run('/bin/sh', show, { env: { WNOD_RUN_T: 'x' } })).stdout, 'x p\n');
  t.equal((await run('/bin/sh', show, { env: { WNOD_RUN_T: 'x' }, extendEnv: false })).stdout, 'x unset\n');
  t.equal((await run('/bin/sh', show)).stdout, 'unset p\n');
});
