// Accounting: records appended under a lock by 16 processes at once, corrupt lines skipped and counted,
// summaries by VO / image / day, and the `wnod accounting` command.
import t from 'tap';
import { access, readFile, writeFile, appendFile, stat } from 'node:fs/promises';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { appendRecord, readRecords, parseRecords } from '../src/accounting/store.js';
import { summarise, renderTable } from '../src/accounting/summary.js';
import { validateRecord, type AccountingRecord } from '../src/accounting/record.js';
import { ensureBuilt } from './kit/cli.js';

const exec = promisify(execFile);
const repo = join(import.meta.dirname, '..');
const cli = join(repo, 'dist', 'cli', 'main.js');

t.before(async () => {
  await ensureBuilt();
});

const rec = (over: Partial<AccountingRecord> = {}): AccountingRecord => ({
  v: 1, jobId: '1.ce', user: 'dteam001', dn: '/CN=u', fqan: '/dteam', vo: 'dteam', image: 'vm_el9', digest: 'a'.repeat(64),
  cpus: 1, memoryMB: 2048, bootS: 2, runS: 100, teardownS: 1, exitStatus: 0, vmCpuS: 50, end: '2026-11-20T10:00:00.000Z',
  node: 'wn1', mode: 'vm', ...over,
});

t.test('record validation names the bad field', async (t) => {
  t.ok(validateRecord(rec()));
  t.throws(() => validateRecord({ ...rec(), cpus: '1' }), /field cpus/);
  t.throws(() => validateRecord({ ...rec(), runS: Infinity }), /field runS/);
  t.throws(() => validateRecord({ ...rec(), mode: 'x' }), /field mode/);
  t.throws(() => validateRecord({ ...rec(), end: 'yesterday' }), /field end/);
  t.throws(() => validateRecord([]), /not a JSON object/);
});

t.test('16 processes append at once: every record intact, file 0600', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'acct', 'accounting.jsonl');
  const perProc = 15;
  const code = `
    const { appendRecord } = await import(${JSON.stringify(join(repo, 'dist', 'accounting', 'store.js'))});
    const p = Number(process.argv[1]);
    for (let i = 0; i < ${perProc}; i++) {
      await appendRecord(process.argv[2], { v: 1, jobId: p + '.' + i, user: 'u' + p, dn: '/CN=' + 'x'.repeat(3000), fqan: '/vo' + (p % 3),
        vo: 'vo' + (p % 3), image: 'img' + (i % 2), digest: 'd', cpus: 1, memoryMB: 1, bootS: 1, runS: 10, teardownS: 1, exitStatus: 0,
        vmCpuS: 5, end: new Date().toISOString(), node: 'n', mode: 'vm' });
    }`;
  await Promise.all(Array.from({ length: 16 }, (_, p) => exec(process.execPath, ['--input-type=module', '-e', code, String(p), file], { timeout: 120_000 })));
  const { records, corrupt } = await readRecords(file);
  t.equal(corrupt.length, 0, 'no torn or interleaved line (each line is > 3 kB, above PIPE_BUF)');
  t.equal(records.length, 16 * perProc);
  t.equal(new Set(records.map((r) => r.jobId)).size, 16 * perProc, 'every job once');
  t.equal((await stat(file)).mode & 0o777, 0o600);
  const byVo = summarise(records, 'vo');
  t.same(byVo.map((r) => [r.key, r.jobs]), [['vo0', 6 * perProc], ['vo1', 5 * perProc], ['vo2', 5 * perProc]]);
});

t.test('corrupt lines are skipped and counted; a torn last line does not swallow the next record', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'a.jsonl');
  await appendRecord(file, rec({ jobId: '1.ce' }));
  await appendFile(file, 'this is not json\n{"v":1,"jobId":"2.ce"}\n{"v":1,"jobId":"3.ce","us');  // hand edit, bad record, crash mid-write
  await appendRecord(file, rec({ jobId: '4.ce' }));
  const { records, corrupt } = await readRecords(file);
  t.same(records.map((r) => r.jobId), ['1.ce', '4.ce']);
  t.same(corrupt.map((c) => c.line), [2, 3, 4]);
  t.match(corrupt[1]!.why, /a\.jsonl:3: field user must be a string/);
  t.same(await readRecords(join(dir, 'missing.jsonl')), { records: [], corrupt: [] });
  t.same(parseRecords('\n\n'), { records: [], corrupt: [] });
});

t.test('summaries by vo, image, day and total', async (t) => {
  const rs = [
    rec({ vo: 'atlas', image: 'vm_sl6', end: '2026-11-20T23:59:59Z', bootS: 1, runS: 3599, teardownS: 0, vmCpuS: 3600 }),
    rec({ vo: 'atlas', image: 'vm_el9', end: '2026-11-21T00:00:01Z' }),
    rec({ vo: 'dteam', image: 'vm_el9', end: '2026-11-21T12:00:00Z' }),
  ];
  t.same(summarise(rs, 'vo'), [{ key: 'atlas', jobs: 2, wallS: 3703, cpuS: 3650 }, { key: 'dteam', jobs: 1, wallS: 103, cpuS: 50 }]);
  t.same(summarise(rs, 'image').map((r) => [r.key, r.jobs]), [['vm_el9', 2], ['vm_sl6', 1]]);
  t.same(summarise(rs, 'day').map((r) => [r.key, r.jobs]), [['2026-11-20', 1], ['2026-11-21', 2]]);
  t.same(summarise(rs, 'all'), [{ key: 'all', jobs: 3, wallS: 3806, cpuS: 3700 }]);
  t.same(summarise([], 'vo'), []);
  t.equal(renderTable(summarise(rs, 'vo'), 'vo'), 'vo     jobs  wall_h  cpu_h\natlas     2    1.03   1.01\ndteam     1    0.03   0.01\n');
});

t.test('wnod accounting (built CLI)', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'acct.jsonl');
  await appendRecord(file, rec({ vo: 'atlas' }));
  await appendRecord(file, rec({ vo: 'dteam' }));
  await appendFile(file, 'garbage\n');
  const r = await exec(process.execPath, [cli, 'accounting', '--by', 'vo', '--json', '--file', file]);
  const out = JSON.parse(r.stdout);
  t.same(out.rows.map((x: { key: string }) => x.key), ['atlas', 'dteam']);
  t.equal(out.corruptLines, 1);
  t.match(r.stderr, /skipped 1 corrupt line/);
  const table = await exec(process.execPath, [cli, 'accounting', '--file', file]);
  t.match(table.stdout, /^total\s+jobs\s+wall_h\s+cpu_h\nall\s+2\s+0\.06\s+0\.03\n$/);
  // --config: the file comes from accounting_file
  const cfgText = (await readFile(join(repo, 'etc', 'wnod.yaml'), 'utf8')).replace(/^accounting_file: .*$/m, `accounting_file: ${file}`);
  await writeFile(join(dir, 'wnod.yaml'), cfgText);
  const viaCfg = await exec(process.execPath, [cli, 'accounting', '--by', 'image', '--json', '--config', join(dir, 'wnod.yaml')]);
  t.equal(JSON.parse(viaCfg.stdout).rows[0].jobs, 2);
  for (const bad of [['--by', 'user'], ['--bogus'], ['--file', file, '--config', join(dir, 'wnod.yaml')]]) {
    const e = await exec(process.execPath, [cli, 'accounting', ...bad]).then(() => undefined, (err: { code: number }) => err);
    t.equal(e?.code, 2, `usage error for ${bad.join(' ')}`);
  }
});
