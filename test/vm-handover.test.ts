// handOverAgent: the job user gets its VM's three agent sockets, the exec lock and the notes file, never the directory (a user who
// owned it could swap a file for a symlink while root chowns by path, or plant one for the epilogue's rm -r).
import t from 'tap';
import { createServer, type Server } from 'node:net';
import { chown, lstat, mkdir, mkdtemp, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { handOverAgent, readAgentNotes } from '../src/vm/state.js';

const UID = 65534;
const GID = 65534;

async function agentDir(): Promise<{ dir: string; sockets: { control: string; stdout: string; stderr: string }; servers: Server[] }> {
  const root = await mkdtemp(join(tmpdir(), 'wnod-handover-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const dir = join(root, 'agent');
  await mkdir(dir, { mode: 0o700 });
  const sockets = { control: join(dir, 'control.sock'), stdout: join(dir, 'stdout.sock'), stderr: join(dir, 'stderr.sock') };
  const servers: Server[] = [];
  for (const p of Object.values(sockets)) {
    const s = createServer();
    await new Promise<void>((r) => s.listen(p, r));
    servers.push(s);
  }
  t.teardown(() => { for (const s of servers) s.close(); });
  return { dir, sockets, servers };
}

t.test('the sockets and the exec lock go to the user, the directory stays root\'s (0711)', async (t) => {
  const { dir, sockets } = await agentDir();
  await handOverAgent(sockets, dir, UID, GID);
  const d = await lstat(dir);
  t.equal(d.uid, 0, 'directory owner');
  t.equal(d.mode & 0o777, 0o711, 'directory mode: traversable, not listable or writable');
  for (const p of [...Object.values(sockets), join(dir, 'exec.lock'), join(dir, 'notes')]) {
    const st = await lstat(p);
    t.same([st.uid, st.gid, st.mode & 0o777], [UID, GID, 0o600], p);
  }
});

t.test('a directory the user owns is refused before anything is chowned', async (t) => {
  const { dir, sockets } = await agentDir();
  await chown(dir, UID, GID);
  await t.rejects(handOverAgent(sockets, dir, UID, GID), /not a root-owned directory/);
  t.equal((await lstat(sockets.control)).uid, 0, 'the control socket is still root\'s');
});

t.test('a symlink where a socket should be is refused, and its target keeps its owner', async (t) => {
  const { dir, sockets } = await agentDir();
  const target = join(dir, '..', 'precious');
  await writeFile(target, 'x', { mode: 0o600 });
  await unlink(sockets.stderr);
  await symlink(target, sockets.stderr);
  await t.rejects(handOverAgent(sockets, dir, UID, GID), /is not the agent's socket/);
  t.equal((await lstat(target)).uid, 0, 'the symlink target was not chowned');
});

t.test('a symlinked exec.lock is not followed', async (t) => {
  const { dir, sockets } = await agentDir();
  const target = join(dir, '..', 'precious-lock');
  await writeFile(target, 'x', { mode: 0o600 });
  await symlink(target, join(dir, 'exec.lock'));
  await t.rejects(handOverAgent(sockets, dir, UID, GID), /ELOOP/);
  t.equal((await lstat(target)).uid, 0, 'the symlink target was not chowned');
});

t.test('the notes the user\'s run left: read bounded, never through a symlink', async (t) => {
  const { dir, sockets } = await agentDir();
  t.same(await readAgentNotes(dir), [], 'no notes file: none');
  await handOverAgent(sockets, dir, UID, GID);
  t.same(await readAgentNotes(dir), [], 'empty');
  await writeFile(join(dir, 'notes'), 'first\n\nsecond\n' + 'x'.repeat(10_000));
  const got = await readAgentNotes(dir);
  t.same(got.slice(0, 2), ['first', 'second']);
  t.ok(got.join('\n').length <= 4096, 'at most 4 KiB read');
  const target = join(dir, '..', 'secret');
  await writeFile(target, 'root-only\n', { mode: 0o600 });
  await unlink(join(dir, 'notes'));
  await symlink(target, join(dir, 'notes'));
  t.same(await readAgentNotes(dir), [], 'a symlink is not followed');
});
