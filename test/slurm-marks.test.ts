// The Slurm Prolog's marks on a real file system (as root): owners and modes the SPANK plugin and the Epilog rely on,
// and an Epilog that reads only the report file the Prolog made (not a link, not another user's file).
import t from 'tap';
import { chown, lstat, mkdtemp, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { clearJob, markJob, readMark, readReport, writeReport, slurmStateDir } from '../src/lrm/slurm/marks.js';

t.test('marks and reports', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async (t) => {
  const state = await mkdtemp('/tmp/wsl-marks-');
  t.teardown(() => rm(state, { recursive: true, force: true }));
  const ids = { uid: 1234, gid: 4321 };
  await markJob(state, '17', ids, { kind: 'refuse', reason: 'no wnod ticket' });
  const dir = await lstat(slurmStateDir(state));
  t.equal(dir.uid, 0);
  t.equal(dir.mode & 0o777, 0o755);
  const mark = await lstat(join(slurmStateDir(state), '17.mode'));
  t.same([mark.uid, mark.gid, mark.mode & 0o777], [0, 4321, 0o640], 'root:<job gid> 0640');
  const status = await lstat(join(slurmStateDir(state), '17.status'));
  t.same([status.uid, status.gid, status.mode & 0o777], [1234, 4321, 0o600], 'the job user\'s, 0600');
  t.same(await readMark(state, '17'), { kind: 'refuse', reason: 'no wnod ticket' });
  t.equal(await readMark(state, '18'), undefined, 'no mark: not a wnod job');

  await writeReport(state, '17', { exit: 77, startedAt: 1, endedAt: 2 });
  t.same(await readReport(state, '17', 1234), { exit: 77, startedAt: 1, endedAt: 2 });
  t.equal(await readReport(state, '17', 999), undefined, 'a report file of another uid is ignored');

  // the job user swaps the report for a link to a root file: never followed
  const target = join(state, 'secret');
  await writeFile(target, '{"exit":0,"startedAt":1,"endedAt":2}\n');
  const path = join(slurmStateDir(state), '17.status');
  await unlink(path);
  await symlink(target, path);
  t.equal(await readReport(state, '17', 0), undefined, 'a symlink is not followed');
  await t.rejects(writeReport(state, '17', { exit: 0, startedAt: 1, endedAt: 2 }), { code: 'ELOOP' }, 'the runner does not follow one either');

  // a mark the user could have written is not trusted
  await markJob(state, '19', ids, { kind: 'vm' });
  await chown(join(slurmStateDir(state), '19.mode'), 1234, 4321);
  await t.rejects(readMark(state, '19'), { code: 'bad-mark' });

  await clearJob(state, '17');
  await clearJob(state, '17');
  t.equal(await readMark(state, '17'), undefined, 'cleared (idempotent)');
  await t.rejects(markJob(state, '../x', ids, { kind: 'vm' }), { code: 'bad-job-id' });
});
