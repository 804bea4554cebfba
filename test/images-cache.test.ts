// src/images/cache.ts with real files, real flock(1) and real child processes: single-flight across 16 processes,
// cheap hits, new digest = new entry, eviction order and in-use protection, verify, crash leftovers.
import t from 'tap';
import http from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { execa } from 'execa';
import type { Image } from '../src/config/types.js';
import { ImageCache } from '../src/images/cache.js';
import { acquireLock } from '../src/util/lock.js';
import { ensureBuilt } from './kit/cli.js';

const repo = dirname(dirname(fileURLToPath(import.meta.url)));
const distCache = join(repo, 'dist/images/cache.js');
const root = t.testdir({});
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

let n = 0;
/** A fresh source file of `size` random bytes and a disk image pointing at it. */
async function diskImage(id: string, size = 256 * 1024, source?: (file: string) => string): Promise<{ image: Image; bytes: Buffer; file: string }> {
  const bytes = randomBytes(size);
  const file = join(root, `src-${id}-${n++}.img`);
  await writeFile(file, bytes);
  const digest = sha(bytes);
  const image: Image = {
    id, title: id, os: { family: 'linux', name: 'Test', version: '1' }, arch: 'x86_64', kind: 'disk',
    disk: { source: source ? source(file) : file, sha256: digest, format: 'raw' },
    cpus: { default: 1, max: 1 }, memoryMB: { default: 256, max: 256 }, diskGB: { default: 1, max: 1 }, published: true, digest,
  };
  return { image, bytes, file };
}

const cacheAt = (name: string, highGB = 100, lowGB = 50, now?: () => Date) => new ImageCache({ dir: join(root, name), highWatermarkGB: highGB, lowWatermarkGB: lowGB }, now);
const fetchLog = async (c: ImageCache) => (await readFile(join(c.dir, 'fetch.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
const metaOf = async (c: ImageCache, digest: string) => JSON.parse(await readFile(join(c.entryDir(digest), 'meta.json'), 'utf8'));

// A slow HTTP server for the concurrency and crash cases: counts requests, sends 4 MiB in 32 paced pieces.
const slowBody = randomBytes(4 * MiB);
let slowHits = 0;
let stallHits = 0;
let onStallStarted: (() => void) | undefined;
const server = http.createServer((req, res) => {
  if (req.url === '/slow') {
    slowHits++;
    res.writeHead(200, { 'content-length': slowBody.length });
    let at = 0;
    const step = slowBody.length / 32;
    const next = () => { if (at >= slowBody.length) return void res.end(); const p = slowBody.subarray(at, at + step); at += step; res.write(p, () => setTimeout(next, 20)); };
    next();
    return;
  }
  if (req.url === '/stall') {
    // half the body, then nothing: the client is killed while it waits
    stallHits++;
    res.writeHead(200, { 'content-length': slowBody.length });
    res.write(slowBody.subarray(0, slowBody.length / 2), () => onStallStarted?.());
    return;
  }
  res.writeHead(404);
  res.end();
});
let base = '';
const runner = join(root, 'acquire.mjs');

t.before(async () => {
  await ensureBuilt();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // A separate process that acquires an image: prints "ready", waits for "go" on stdin, acquires, prints the result.
  await writeFile(runner, `
import { ImageCache } from ${JSON.stringify(distCache)};
import { createInterface } from 'node:readline';
const { config, image, holder } = JSON.parse(process.argv[2]);
const cache = new ImageCache(config);
process.stdout.write('ready\\n');
const rl = createInterface({ input: process.stdin });
for await (const line of rl) if (line === 'go') break;
rl.close();
try {
  const r = await cache.acquire(image, holder);
  process.stdout.write(JSON.stringify(r) + '\\n');
} catch (err) {
  process.stdout.write(JSON.stringify({ error: err.code, message: err.message }) + '\\n');
  process.exitCode = 1;
}
`);
});
t.teardown(() => { server.closeAllConnections(); return new Promise<void>((r) => server.close(() => r())); });

function startRunner(c: ImageCache, image: Image, holder: string): { child: ChildProcess; ready: Promise<void>; result: Promise<Record<string, unknown>> } {
  const child = spawn(process.execPath, [runner, JSON.stringify({ config: c.config, image, holder })], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => { readyResolve = r; });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; if (out.startsWith('ready\n')) readyResolve(); });
  const result = new Promise<Record<string, unknown>>((res) => child.on('close', () => {
    const last = out.split('\n').filter(Boolean).at(-1) ?? '{}';
    res(last === 'ready' ? { error: 'no-result' } : JSON.parse(last));
  }));
  return { child, ready, result };
}

t.test('acquire fetches once, records the holder, and the directory is root-only', async (t) => {
  const c = cacheAt('basic');
  const { image, bytes, file } = await diskImage('vm_a');
  const r = await c.acquire(image, 'vm-1');
  t.equal(r.digest, image.digest);
  t.equal(r.holder, 'vm-1');
  t.equal(r.files.disk, join(c.dir, 'images', image.digest, 'disk'));
  t.ok((await readFile(r.files.disk!)).equals(bytes));
  t.equal((await stat(c.dir)).mode & 0o777, 0o700, 'cache dir is 0700');
  const meta = await metaOf(c, image.digest);
  t.same(Object.keys(meta.holders), ['vm-1']);
  t.same(meta.imageIds, ['vm_a']);
  t.equal(meta.files.disk.size, bytes.length);
  t.equal(r.fetchedBytes, bytes.length, 'a miss: the bytes fetched (counted by wnod metrics)');

  // a hit never goes back to the source (it is gone now) and does not re-fetch
  await unlink(file);
  const again = await c.acquire(image, 'vm-2');
  t.equal(again.files.disk, r.files.disk);
  t.equal(again.fetchedBytes, 0, 'a hit fetches nothing');
  t.equal((await fetchLog(c)).length, 1, 'exactly one fetch');
  t.same(Object.keys((await metaOf(c, image.digest)).holders).sort(), ['vm-1', 'vm-2']);

  for (const bad of ['', 'a/b', '../x', 'x'.repeat(65), 'vm 1']) {
    await t.rejects(c.acquire(image, bad), { code: 'cache-bad-input' }, `holder ${JSON.stringify(bad)} refused`);
  }
  await t.rejects(c.acquire({ ...image, digest: '../../etc' }, 'vm-3'), { code: 'cache-bad-input' }, 'a digest that is not hex never becomes a path');

  t.equal(await c.release(image.digest, 'vm-1'), true);
  t.equal(await c.release(image.digest, 'vm-1'), false, 'release is idempotent');
  t.same((await c.list())[0]!.holders, ['vm-2']);
});

t.test('a cached file whose size or mtime changed is fetched again', async (t) => {
  const c = cacheAt('tamper');
  const { image, bytes } = await diskImage('vm_t');
  const r = await c.acquire(image, 'vm-1');
  await chmod(r.files.disk!, 0o600);
  await writeFile(r.files.disk!, 'short');
  const r2 = await c.acquire(image, 'vm-2');
  t.ok((await readFile(r2.files.disk!)).equals(bytes), 'restored');
  t.equal((await fetchLog(c)).length, 2);
});

t.test('a failed fetch leaves no entry and no temp file; the next attempt starts clean', async (t) => {
  const c = cacheAt('failed');
  const { image } = await diskImage('vm_f');
  const wrong = { ...image, disk: { ...image.disk!, sha256: 'ee'.repeat(32) }, digest: 'ee'.repeat(32) };
  await t.rejects(c.acquire(wrong, 'vm-1'), { code: 'digest-mismatch' });
  t.same(await c.list(), [], 'no entry');
  t.same(await readdir(join(c.dir, 'tmp')), [], 'no temp file');
  await t.resolves(c.acquire(image, 'vm-1'));
});

t.test('a new digest in the catalog is a new entry; the old one stays while in use', async (t) => {
  const c = cacheAt('newdigest');
  const v1 = await diskImage('vm_sl6');
  const v2 = await diskImage('vm_sl6');
  const a = await c.acquire(v1.image, 'vm-old');
  const b = await c.acquire(v2.image, 'vm-new');
  t.not(a.digest, b.digest);
  t.ok((await readFile(a.files.disk!)).equals(v1.bytes), 'old entry intact for the running VM');
  t.ok((await readFile(b.files.disk!)).equals(v2.bytes));
  const list = await c.list();
  t.same(list.map((e) => [e.digest, e.imageIds, e.holders]).sort(), [[a.digest, ['vm_sl6'], ['vm-old']], [b.digest, ['vm_sl6'], ['vm-new']]].sort());
});

t.test('kernel images cache every role under one digest', async (t) => {
  const c = cacheAt('kernel');
  const k = randomBytes(50_000);
  const i = randomBytes(30_000);
  await writeFile(join(root, 'k.bin'), k);
  await writeFile(join(root, 'i.bin'), i);
  const img: Image = {
    ...(await diskImage('x')).image, id: 'vm_k', kind: 'kernel', disk: undefined,
    kernel: { source: `file://${join(root, 'k.bin')}`, sha256: sha(k) }, initrd: { source: join(root, 'i.bin'), sha256: sha(i) }, digest: 'ab'.repeat(32),
  };
  const r = await c.acquire(img, 'vm-k');
  t.same(Object.keys(r.files).sort(), ['initrd', 'kernel']);
  t.ok((await readFile(r.files.kernel!)).equals(k));
  t.ok((await readFile(r.files.initrd!)).equals(i));
  t.equal((await c.list())[0]!.complete, true);
});

t.test('eviction: least recently used first, down to the low watermark, never an entry in use', async (t) => {
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const now = () => new Date(clock);
  const GiBPerMiB = 1 / 1024;
  // four 1 MiB entries; high 3.5 MiB, low 2.5 MiB
  const c = cacheAt('evict', 3.5 * GiBPerMiB, 2.5 * GiBPerMiB, now);
  const imgs: Image[] = [];
  for (const id of ['e1', 'e2', 'e3', 'e4']) {
    const { image } = await diskImage(id, MiB);
    clock += 60_000;
    await c.acquire(image, `vm-${id}`);
    imgs.push(image);
  }
  // e1 is the oldest but still held by its VM; the others were released (in order e2, e3, e4)
  for (const img of imgs.slice(1)) { clock += 60_000; await c.release(img.digest, `vm-${img.id}`); }
  const r = await c.evict();
  t.equal(r.totalBefore, 4 * MiB);
  t.same(r.evicted.map((e) => e.imageIds[0]), ['e2', 'e3'], 'LRU order, stops at the low watermark');
  t.equal(r.totalAfter, 2 * MiB);
  t.same((await c.list()).map((e) => e.imageIds[0]).sort(), ['e1', 'e4'], 'the held entry stays although it is the oldest');
  t.notOk(existsSync(c.entryDir(imgs[1]!.digest)));
  const again = await c.evict();
  t.same(again.evicted, [], 'below the high watermark: nothing to do (idempotent)');

  // over the watermark with only held entries: nothing is evicted, and the report says why
  const extra = await diskImage('e5', 2 * MiB);
  clock += 60_000;
  await c.acquire(extra.image, 'vm-e5');
  const blocked = await c.evict();
  t.same(blocked.evicted.map((e) => e.imageIds[0]), ['e4'], 'only the unheld one goes');
  t.ok(blocked.kept.some((k) => k.reason === 'in-use' && k.digest === imgs[0]!.digest));
  t.ok(existsSync(c.entryDir(imgs[0]!.digest)) && existsSync(c.entryDir(extra.image.digest)));
});

t.test('eviction skips an entry that another process has locked, and concurrent runs are safe', async (t) => {
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const c = cacheAt('evict2', 1.5 / 1024, 0.5 / 1024, () => new Date(clock));
  const imgs = [];
  for (const id of ['f1', 'f2', 'f3']) {
    const { image } = await diskImage(id, MiB);
    clock += 60_000;
    await c.acquire(image, 'vm');
    await c.release(image.digest, 'vm');
    imgs.push(image);
  }
  // f1 is the least recently used, but someone is acquiring it right now
  const busy = await acquireLock(join(c.dir, 'locks', `${imgs[0]!.digest}.lock`), 'exclusive');
  const r = await c.evict();
  await busy.release();
  t.same(r.kept, [{ digest: imgs[0]!.digest, reason: 'busy' }]);
  t.same(r.evicted.map((e) => e.imageIds[0]), ['f2', 'f3'], 'the next ones in LRU order take its place');

  // two evictions at once on a fresh over-full cache: each entry is deleted once, no errors
  const c2 = cacheAt('evict3', 1.5 / 1024, 0.5 / 1024, () => new Date(clock));
  for (const id of ['g1', 'g2', 'g3']) { const { image } = await diskImage(id, MiB); clock += 1000; await c2.acquire(image, 'vm'); await c2.release(image.digest, 'vm'); }
  const [x, y] = await Promise.all([c2.evict(), new ImageCache(c2.config).evict()]);
  t.same([...x.evicted, ...y.evicted].map((e) => e.imageIds[0]).sort(), ['g1', 'g2', 'g3'], 'each entry evicted exactly once');
  t.same(await c2.list(), []);
});

t.test('releaseStale drops references of dead holders only', async (t) => {
  const c = cacheAt('stale');
  const { image } = await diskImage('vm_s');
  for (const h of ['vm-alive', 'vm-dead1', 'vm-dead2']) await c.acquire(image, h);
  const released = await c.releaseStale(async (h) => h === 'vm-alive');
  t.same(released.map((r) => r.holder).sort(), ['vm-dead1', 'vm-dead2']);
  t.same((await c.list())[0]!.holders, ['vm-alive']);
});

/** Overwrite the cached file with `bad`, keeping its size and (to the nanosecond) its mtime. */
async function corruptInPlace(file: string, bad: Buffer): Promise<void> {
  const ref = join(root, `mtime-ref-${n++}`);
  await writeFile(ref, '');
  await execa('touch', ['-r', file, ref]); // keeps the nanoseconds, unlike utimes()
  await chmod(file, 0o600);
  await writeFile(file, bad);
  await execa('touch', ['-r', ref, file]);
}

t.test('a cached file rewritten at the same size and mtime is caught on acquire (its ctime moved) and fetched again', async (t) => {
  const c = cacheAt('samemtime');
  const { image, bytes } = await diskImage('vm_s');
  const r = await c.acquire(image, 'vm-1');
  const bad = Buffer.from(bytes);
  bad[1000] = bad[1000]! ^ 0xff;
  await corruptInPlace(r.files.disk!, bad);
  const r2 = await c.acquire(image, 'vm-2');
  t.ok((await readFile(r2.files.disk!)).equals(bytes), 'the next VM gets the right bytes');
  t.equal((await fetchLog(c)).length, 2, 'fetched again');
});

t.test('verify re-hashes, catches damage at rest that the cheap check cannot see, and the next use refetches', async (t) => {
  const c = cacheAt('verify');
  const { image, bytes } = await diskImage('vm_v', 4 * MiB);
  const r = await c.acquire(image, 'vm-1');
  t.same((await c.verify()).map((v) => v.ok), [true]);
  // a flipped byte between two samples, and a record that still matches the inode (as after damage the kernel never
  // saw): invisible to the cheap check, by design — the scheduled verify is what finds it
  const bad = Buffer.from(bytes);
  bad[100_000] = bad[100_000]! ^ 0xff;
  await corruptInPlace(r.files.disk!, bad);
  const metaPath = join(c.entryDir(image.digest), 'meta.json');
  const meta = JSON.parse(await readFile(metaPath, 'utf8'));
  meta.files.disk.ctimeMs = (await stat(r.files.disk!)).ctimeMs;
  await writeFile(metaPath, JSON.stringify(meta));
  t.equal((await c.acquire(image, 'vm-2')).digest, image.digest, 'the hit does not re-hash');
  t.equal((await fetchLog(c)).length, 1);
  const [rep] = await c.verify(['vm_v']);
  t.equal(rep!.ok, false);
  t.equal(rep!.files[0]!.expected, image.digest);
  t.equal(rep!.files[0]!.actual, sha(bad));
  t.equal(rep!.files[0]!.removed, true);
  t.same(await c.verify(['nope']), [], 'an unknown id selects nothing');
  const r3 = await c.acquire(image, 'vm-3');
  t.ok((await readFile(r3.files.disk!)).equals(bytes), 'fetched again after verify removed the bad copy');
  t.equal((await fetchLog(c)).length, 2);
  t.same(Object.keys((await metaOf(c, image.digest)).holders).sort(), ['vm-1', 'vm-2', 'vm-3'], 'holders survive the repair');
});

t.test('damage inside a sample is caught on acquire even when the inode looks untouched', async (t) => {
  const c = cacheAt('sampled');
  const { image, bytes } = await diskImage('vm_d', 4 * MiB);
  const r = await c.acquire(image, 'vm-1');
  const bad = Buffer.from(bytes);
  bad[bytes.length - 10] = bad[bytes.length - 10]! ^ 0xff; // the last block is always sampled
  await corruptInPlace(r.files.disk!, bad);
  const metaPath = join(c.entryDir(image.digest), 'meta.json');
  const meta = JSON.parse(await readFile(metaPath, 'utf8'));
  meta.files.disk.ctimeMs = (await stat(r.files.disk!)).ctimeMs;
  await writeFile(metaPath, JSON.stringify(meta));
  const r2 = await c.acquire(image, 'vm-2');
  t.ok((await readFile(r2.files.disk!)).equals(bytes), 'fetched again');
  t.equal((await fetchLog(c)).length, 2);
});

t.test('prefetch fetches what is missing, reports what failed, and takes no holder', async (t) => {
  const c = cacheAt('prefetch');
  const a = await diskImage('vm_p1');
  const b = await diskImage('vm_p2');
  const broken = { ...(await diskImage('vm_p3')).image };
  broken.disk = { ...broken.disk!, source: join(root, 'no-such-file') };
  await c.acquire(a.image, 'vm-1');
  const seen = new Set<string>();
  const res = await c.prefetch([a.image, b.image, broken], (p) => seen.add(`${p.imageId}/${p.role}`));
  t.same(res.map((r) => [r.imageId, r.status]), [['vm_p1', 'cached'], ['vm_p2', 'fetched'], ['vm_p3', 'failed']]);
  t.equal(res[1]!.bytes, b.bytes.length);
  t.equal((res[2]!.error as { code?: string }).code, 'source-unreadable');
  t.ok(seen.has('vm_p2/disk'), 'progress reported');
  t.same((await c.list()).find((e) => e.digest === b.image.digest)!.holders, []);
});

t.test('16 processes asking at once for an uncached image: exactly one fetch, all share it', async (t) => {
  const c = cacheAt('sixteen');
  const digest = sha(slowBody);
  const { image } = await diskImage('vm_16');
  const img: Image = { ...image, disk: { source: `${base}/slow`, sha256: digest, format: 'raw' }, digest };
  slowHits = 0;
  const runners = Array.from({ length: 16 }, (_, i) => startRunner(c, img, `vm-${i}`));
  await Promise.all(runners.map((r) => r.ready));
  for (const r of runners) r.child.stdin!.write('go\n');
  const results = await Promise.all(runners.map((r) => r.result));
  t.same(results.filter((r) => r.error), [], 'every process succeeded');
  t.same(new Set(results.map((r) => (r.files as { disk: string }).disk)), new Set([join(c.entryDir(digest), 'disk')]), 'all share one file');
  t.equal(slowHits, 1, 'the source was read exactly once');
  t.equal((await fetchLog(c)).filter((l) => l.digest === digest).length, 1, 'one fetch in the fetch log');
  t.same(Object.keys((await metaOf(c, digest)).holders).sort(), Array.from({ length: 16 }, (_, i) => `vm-${i}`).sort(), '16 holders recorded');
  t.equal(sha(await readFile(join(c.entryDir(digest), 'disk'))), digest);
});

t.test('a fetch killed mid-way leaves its lock free and nothing visible; the next attempt cleans up', async (t) => {
  const c = cacheAt('crash');
  const digest = sha(slowBody);
  const { image } = await diskImage('vm_c');
  const img: Image = { ...image, disk: { source: `${base}/stall`, sha256: digest, format: 'raw' }, digest };
  const started = new Promise<void>((r) => { onStallStarted = r; });
  const run = startRunner(c, img, 'vm-crash');
  await run.ready;
  run.child.stdin!.write('go\n');
  await started;
  // wait until the half-written temp file is there, then kill the fetcher
  for (let i = 0; i < 500 && (await readdir(join(c.dir, 'tmp')).catch(() => [])).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal((await readdir(join(c.dir, 'tmp'))).length, 1, 'a partial download exists');
  run.child.kill('SIGKILL');
  await run.result;
  t.notOk(existsSync(join(c.entryDir(digest), 'disk')), 'nothing under the final name');
  // the retry (from the good source) must not wait for the dead process's lock, and removes its leftover
  const good = { ...img, disk: { ...img.disk!, source: `${base}/slow` } };
  const r = await c.acquire(good, 'vm-retry', { lockTimeoutMs: 30_000 });
  t.equal(sha(await readFile(r.files.disk!)), digest);
  t.same(await readdir(join(c.dir, 'tmp')), [], 'the dead fetch\'s temp file is gone');
  t.equal(stallHits, 1);
});

t.test('discardPartial (a job\'s last teardown): the image\'s parts go, its complete entry and other images\' parts stay', async (t) => {
  const c = cacheAt('discard');
  const { image } = await diskImage('vm_d');
  const a = await c.acquire(image, 'vm-d');
  const other = 'ab'.repeat(32);
  const tmp = join(c.dir, 'tmp');
  // the usual case: a complete entry and nothing partial
  t.same(await c.discardPartial(a.digest), []);
  t.ok(existsSync(a.files.disk!), 'the complete entry is left');
  // a cut download of this image (the resumable part and a numbered one) and one of another image
  await writeFile(join(tmp, `${a.digest}.disk.part`), 'x');
  await writeFile(join(tmp, `${a.digest}.disk.12.part`), 'x');
  await writeFile(join(tmp, `${other}.disk.part`), 'x');
  t.same((await c.discardPartial(a.digest)).sort(), [`${a.digest}.disk.12.part`, `${a.digest}.disk.part`]);
  t.same(await readdir(tmp), [`${other}.disk.part`], 'another image\'s part is not this job\'s to discard');
  t.ok(existsSync(a.files.disk!));
  // an entry nothing arrived in goes too
  const empty = 'cd'.repeat(32);
  await mkdir(c.entryDir(empty), { recursive: true });
  t.same(await c.discardPartial(empty), []);
  t.notOk(existsSync(c.entryDir(empty)), 'the empty entry is removed');
  // a part whose fetch is under way (its lock held) is that fetch's
  const lock = await acquireLock(join(c.dir, 'locks', `${other}.lock`), 'exclusive');
  t.same(await c.discardPartial(other), []);
  await lock.release();
  t.same(await readdir(tmp), [`${other}.disk.part`]);
  t.same(await c.discardPartial(other), [`${other}.disk.part`], 'removed once nobody fetches it');
});
