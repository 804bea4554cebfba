// The root log: one JSON line per decision, 0600 in a 0700 directory, rotated by size (log_max_mb) keeping log_keep
// old files, by renames under a lock, so that writers in many processes lose no line and never interleave.
import t from 'tap';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { hookLog, readLogEvents, rotateLog, rotatedLogs, logTarget } from '../src/job/log.js';

const quiet = { write: () => true } as never;

async function tmp(t: Tap): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wop-log-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
type Tap = { teardown(fn: () => unknown): void };

t.test('rotation by size: file → .1 → .2, the oldest dropped past keep, every file 0600', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'log', 'wnod.log');
  const target = { file, maxBytes: 400, keep: 2 };
  const log = hookLog(target, 'prologue', '1.ce', quiet);
  for (let i = 0; i < 30; i++) await log.detail('accepted', { n: i });
  const names = (await readdir(join(dir, 'log'))).filter((n) => !n.endsWith('.lock')).sort();
  t.same(names, ['wnod.log', 'wnod.log.1', 'wnod.log.2'], 'keep 2: no .3');
  t.equal((await stat(join(dir, 'log'))).mode & 0o777, 0o700);
  for (const n of names) {
    const s = await stat(join(dir, 'log', n));
    t.equal(s.mode & 0o777, 0o600, `${n} is 0600`);
    t.ok(s.size <= 400, `${n}: ${s.size} bytes <= max`);
  }
  const { events, corrupt } = await readLogEvents(file, 2);
  t.equal(corrupt, 0);
  const ns = events.map((e) => e.n as number);
  t.same(ns, [...ns].sort((a, b) => a - b), 'oldest first across the rotated files');
  t.equal(ns.at(-1), 29, 'the newest line is in the current file');
  t.ok(ns[0]! > 0, 'the oldest lines went with the dropped file');
  t.same(events[0]!.hook, 'prologue');
  t.equal(events[0]!.job, '1.ce');
});

t.test('keep 0: the file is emptied (removed) instead of rotated', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'wnod.log');
  await writeFile(file, 'x'.repeat(100) + '\n', { mode: 0o600 });
  await rotateLog(file, { maxBytes: 50, keep: 0 });
  t.same((await readdir(dir)).filter((n) => !n.endsWith('.lock')), []);
});

t.test('under the limit nothing moves; a second rotation finds the file small and leaves it', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'wnod.log');
  await writeFile(file, 'a\n', { mode: 0o600 });
  await rotateLog(file, { maxBytes: 50, keep: 3 });
  t.equal(await readFile(file, 'utf8'), 'a\n');
  t.same(rotatedLogs(file, 2), [`${file}.1`, `${file}.2`]);
});

t.test('8 processes writing at once across rotations: no line lost, none torn', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'wnod.log');
  const perProc = 40;
  const mod = join(import.meta.dirname, '..', 'src', 'job', 'log.ts');
  const code = `const { hookLog } = await import(${JSON.stringify(mod)});
    const log = hookLog({ file: ${JSON.stringify(file)}, maxBytes: 2000, keep: 1000 }, 'epilogue', process.argv[1], { write: () => true });
    for (let i = 0; i < ${perProc}; i++) await log.detail('done', { i, pad: 'p'.repeat(40) });`;
  const loader = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a.startsWith('--experimental'));
  await Promise.all(Array.from({ length: 8 }, (_, p) => execa(process.execPath, [...loader, '--input-type=module', '-e', code, `p${p}`], { timeout: 300_000 })));
  const { events, corrupt } = await readLogEvents(file, 1000);
  t.equal(corrupt, 0, 'no torn line');
  t.equal(events.length, 8 * perProc, 'every line is in some file');
  for (let p = 0; p < 8; p++) {
    t.same(events.filter((e) => e.job === `p${p}`).map((e) => e.i), Array.from({ length: perProc }, (_, i) => i), `p${p}: all its lines, in order`);
  }
  const rotated = (await readdir(dir)).filter((n) => /^wnod\.log\.\d+$/.test(n));
  t.ok(rotated.length >= 5, `rotated ${rotated.length} times`);
});

t.test('logTarget maps the config keys', async (t) => {
  t.same(logTarget({ logFile: '/var/log/wnod/wnod.log', log: { maxBytes: 64 << 20, keep: 5 } }), { file: '/var/log/wnod/wnod.log', maxBytes: 64 << 20, keep: 5 });
});

t.test('log_max_mb and log_keep: defaults, the sample, and bad values refused', async (t) => {
  const { parseConfig } = await import('../src/config/parse.js');
  const { readFileSync } = await import('node:fs');
  const sample = readFileSync(new URL('../etc/wnod.yaml', import.meta.url), 'utf8');
  t.same(parseConfig(sample, 'etc/wnod.yaml').log, { maxBytes: 64 * 1024 * 1024, keep: 5 });
  t.same(parseConfig(`${sample}\nlog_max_mb: 2\nlog_keep: 0\n`.replace(/^log_max_mb: 64.*\n/m, '').replace(/^log_keep: 5.*\n/m, ''), 'x.yaml').log, { maxBytes: 2 * 1024 * 1024, keep: 0 });
  t.throws(() => parseConfig(sample.replace(/^log_keep: 5/m, 'log_keep: -1'), 'x.yaml'), /log_keep/);
  t.throws(() => parseConfig(sample.replace(/^log_max_mb: 64/m, 'log_max_mb: 0'), 'x.yaml'), /log_max_mb/);
});
