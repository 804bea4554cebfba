// src/util/lock.ts against the real flock(1): the lock outlives the flock process, blocks other processes until
// the holder closes it, and a SIGKILLed holder releases it.
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { acquireLock, withLock, flockArgs, LockTimeoutError } from '../src/util/lock.js';
import { ensureBuilt } from './kit/cli.js';

const repo = dirname(dirname(fileURLToPath(import.meta.url)));
const distLock = join(repo, 'dist/util/lock.js');
const dir = t.testdir({});
const lockFile = join(dir, 'a.lock');
const holderScript = join(dir, 'holder.mjs');

t.before(async () => {
  await ensureBuilt();
  // A second process: takes the lock, says "locked", releases on "release" (staying alive), exits on "exit".
  await writeFile(holderScript, `
import { acquireLock } from ${JSON.stringify(distLock)};
import { createInterface } from 'node:readline';
const lock = await acquireLock(process.argv[2], process.argv[3]);
process.stdout.write('locked\\n');
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'release') { await lock.release(); process.stdout.write('released\\n'); }
  if (line === 'exit') process.exit(0);
}
`);
});

/** Start a holder process and wait until it holds the lock. */
async function holder(t: Test, mode: 'shared' | 'exclusive'): Promise<{ child: ChildProcess; next: () => Promise<string> }> {
  const child = spawn(process.execPath, [holderScript, lockFile, mode], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(l); else lines.push(l);
    }
  });
  const next = () => new Promise<string>((res) => { const l = lines.shift(); if (l !== undefined) res(l); else waiters.push(res); });
  t.equal(await next(), 'locked', `holder (${mode}) took the lock`);
  return { child, next };
}

const exited = (c: ChildProcess) => new Promise<void>((res) => { if (c.exitCode !== null || c.signalCode !== null) res(); else c.once('exit', () => res()); });

t.test('flock arguments', async (t) => {
  t.same(flockArgs('exclusive'), ['--exclusive', '--conflict-exit-code', '75', '3']);
  t.same(flockArgs('shared', { wait: false }), ['--shared', '--conflict-exit-code', '75', '--nonblock', '3']);
  t.same(flockArgs('exclusive', { timeoutMs: 1500 }), ['--exclusive', '--conflict-exit-code', '75', '--wait', '1.500', '3']);
  t.throws(() => flockArgs('exclusive', { timeoutMs: -1 }), RangeError);
});

t.test('an exclusive lock held by another process blocks until that process closes it', async (t) => {
  const h = await holder(t, 'exclusive');
  // the flock(1) child that took the lock has exited; the lock lives on in the holder's descriptor
  const err = await acquireLock(lockFile, 'exclusive', { timeoutMs: 200 }).catch((e) => e);
  t.type(err, LockTimeoutError);
  t.equal(err.code, 'lock-timeout');
  t.match(err.message, lockFile);
  const nb = await acquireLock(lockFile, 'shared', { wait: false }).catch((e) => e);
  t.equal(nb.code, 'lock-timeout', 'shared is refused at once with wait: false');

  let got = false;
  const waiting = acquireLock(lockFile, 'exclusive').then((l) => { got = true; return l; });
  // a shared acquire that waits is also still blocked; the holder is alive and holds the lock
  t.equal(got, false, 'blocked while the other process holds it');
  h.child.stdin!.write('release\n');
  t.equal(await h.next(), 'released');
  const lock = await waiting;
  t.equal(got, true, 'acquired once the holder closed its descriptor (holder still running)');
  t.equal(h.child.exitCode, null, 'holder process is still alive');
  await lock.release();
  await lock.release(); // idempotent
  h.child.stdin!.write('exit\n');
  await exited(h.child);
});

t.test('a SIGKILLed holder releases its lock', async (t) => {
  const h = await holder(t, 'exclusive');
  t.equal((await acquireLock(lockFile, 'exclusive', { wait: false }).catch((e) => e)).code, 'lock-timeout');
  const waiting = acquireLock(lockFile, 'exclusive', { timeoutMs: 60_000 });
  h.child.kill('SIGKILL');
  await exited(h.child);
  const lock = await waiting;
  t.equal(lock.mode, 'exclusive', 'the kernel released the dead holder\'s lock');
  await lock.release();
});

t.test('shared locks coexist and keep an exclusive one out', async (t) => {
  const h = await holder(t, 'shared');
  const mine = await acquireLock(lockFile, 'shared', { wait: false });
  t.pass('second shared lock granted at once');
  t.equal((await acquireLock(lockFile, 'exclusive', { wait: false }).catch((e) => e)).code, 'lock-timeout');
  await mine.release();
  t.equal((await acquireLock(lockFile, 'exclusive', { wait: false }).catch((e) => e)).code, 'lock-timeout', 'the other process still holds shared');
  h.child.stdin!.write('exit\n');
  await exited(h.child);
  const ex = await acquireLock(lockFile, 'exclusive', { wait: false });
  await ex.release();
});

t.test('two locks in one process conflict (each has its own open file description)', async (t) => {
  const a = await acquireLock(lockFile, 'exclusive');
  t.equal((await acquireLock(lockFile, 'exclusive', { wait: false }).catch((e) => e)).code, 'lock-timeout');
  await a.release();
  const b = await acquireLock(lockFile, 'exclusive', { wait: false });
  await b.release();
});

t.test('withLock releases when the function throws', async (t) => {
  await t.rejects(withLock(lockFile, 'exclusive', () => { throw new Error('boom'); }), /boom/);
  t.equal(await withLock(lockFile, 'exclusive', () => 42, { wait: false }), 42, 'lock free again');
});

t.test('an unusable lock path is a clear error', async (t) => {
  const err = await acquireLock(join(dir, 'no/such/dir/x.lock'), 'shared').catch((e) => e);
  t.equal(err.code, 'lock-failed');
  t.match(err.message, 'no/such/dir/x.lock');
});
