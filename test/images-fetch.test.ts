// src/images/fetch.ts: streaming into the cache with the digest checked on the way, atomic visibility, and
// nothing left behind on a digest mismatch, an unreadable source or a full disk (a real tiny tmpfs).
import t from 'tap';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { execa } from 'execa';
import { fetchArtifact, parseSource, hashFile } from '../src/images/fetch.js';

const dir = t.testdir({});
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const payload = randomBytes(3 * 1024 * 1024 + 123);
const payloadSha = sha(payload);
const srcFile = join(dir, 'source.img');

/** Temp and final directories for one case; returns a checker that nothing is left in either. */
async function area(name: string) {
  const tmpDir = join(dir, name, 'tmp');
  const out = join(dir, name, 'out');
  await mkdir(tmpDir, { recursive: true });
  await mkdir(out, { recursive: true });
  return { tmpDir, out, dest: join(out, 'disk'), empty: async () => [...await readdir(tmpDir), ...await readdir(out)] };
}

// A local HTTP server: every path is a behaviour; requests are counted.
const hits = new Map<string, number>();
let visibleDuringSlow: boolean[] = [];
let slowDest = '';
const server = http.createServer((req, res) => {
  const path = req.url ?? '/';
  hits.set(path, (hits.get(path) ?? 0) + 1);
  if (path === '/ok') { res.writeHead(200, { 'content-length': payload.length }); res.end(payload); return; }
  if (path === '/chunked') { res.writeHead(200); res.write(payload.subarray(0, 1000)); res.end(payload.subarray(1000)); return; }
  if (path === '/redirect') { res.writeHead(302, { location: '/ok' }); res.end(); return; }
  if (path === '/short') {
    res.writeHead(200, { 'content-length': payload.length });
    res.write(payload.subarray(0, 100_000), () => res.destroy());
    return;
  }
  if (path === '/slow') {
    // 24 pieces; before each one, note whether anything is visible under the final name
    res.writeHead(200, { 'content-length': payload.length });
    const step = Math.ceil(payload.length / 24);
    let at = 0;
    const next = () => {
      visibleDuringSlow.push(existsSync(slowDest));
      if (at >= payload.length) { res.end(); return; }
      const piece = payload.subarray(at, at + step);
      at += step;
      res.write(piece, () => setTimeout(next, 5));
    };
    next();
    return;
  }
  if (path === '/ranged' || path === '/trickle') {
    // honours `Range: bytes=N-`; a full request (no range) is cut after half the body the first time
    ranges.push(req.headers.range ?? '');
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      const from = Number(m[1]);
      if (from >= payload.length) { res.writeHead(416); res.end(); return; }
      res.writeHead(206, { 'content-length': payload.length - from, 'content-range': `bytes ${from}-${payload.length - 1}/${payload.length}` });
      res.end(payload.subarray(from));
      return;
    }
    res.writeHead(200, { 'content-length': payload.length });
    if (path === '/trickle' && onTrickle) { res.write(payload.subarray(0, 100_000), () => onTrickle?.()); return; } // then nothing more
    if (cutNext) { cutNext = false; res.write(payload.subarray(0, payload.length >> 1), () => res.destroy()); return; }
    res.end(payload);
    return;
  }
  res.writeHead(404, 'Not Found');
  res.end('no such image');
});
let ranges: string[] = [];
let cutNext = false;
let onTrickle: (() => void) | undefined;
let base = '';

t.before(async () => {
  await writeFile(srcFile, payload);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
t.teardown(() => { server.closeAllConnections(); return new Promise<void>((r) => server.close(() => r())); });

t.test('parseSource accepts paths, file:// and http(s) only', async (t) => {
  t.same(parseSource('/a/b/../c.img'), { kind: 'file', path: '/a/c.img' });
  t.same(parseSource('file:///srv/x.img'), { kind: 'file', path: '/srv/x.img' });
  t.equal((parseSource('https://h.example/x') as { url: URL }).url.href, 'https://h.example/x');
  for (const bad of ['', 'relative/x.img', 'ftp://h/x', 'file://remote/x', 'http://u:p@h/x', '/a\nb']) {
    t.throws(() => parseSource(bad), { code: 'bad-source' }, JSON.stringify(bad));
  }
});

t.test('a file source lands complete, verified and read-only', async (t) => {
  const a = await area('file');
  const r = await fetchArtifact(srcFile, payloadSha, a.dest, { tmpDir: a.tmpDir });
  t.equal(r.sha256, payloadSha);
  t.equal(r.size, payload.length);
  t.ok((await readFile(a.dest)).equals(payload));
  t.equal((await stat(a.dest)).mode & 0o777, 0o400, 'a cached base is read-only');
  t.same(await readdir(a.tmpDir), [], 'no temp file left');
  const viaUrl = await area('fileurl');
  await fetchArtifact(`file://${srcFile}`, payloadSha.toUpperCase(), viaUrl.dest, { tmpDir: viaUrl.tmpDir });
  t.equal((await hashFile(viaUrl.dest)).sha256, payloadSha, 'file:// URL and an upper-case digest work too');
});

t.test('a digest mismatch raises a specific error and leaves nothing behind', async (t) => {
  const a = await area('mismatch');
  const wrong = 'ab'.repeat(32);
  const err = await fetchArtifact(srcFile, wrong, a.dest, { tmpDir: a.tmpDir }).catch((e) => e);
  t.equal(err.code, 'digest-mismatch');
  t.match(err.message, srcFile);
  t.match(err.message, wrong, 'names what was expected');
  t.match(err.message, payloadSha, 'and what was found');
  t.same(await a.empty(), [], 'neither a temp file nor a final file');
});

t.test('a local source longer than a write-back step: copied whole when its digest matches, rejected leaving nothing when a byte past the step is corrupt', async (t) => {
  // 40 MiB: the copy starts a background write-back (every 32 MiB) before the digest is known
  const big = randomBytes(40 << 20);
  const bigSha = sha(big);
  const bigSrc = join(dir, 'big.img');
  await writeFile(bigSrc, big);
  const good = await area('big');
  const r = await fetchArtifact(bigSrc, bigSha, good.dest, { tmpDir: good.tmpDir });
  t.equal(r.size, big.length);
  t.ok((await readFile(good.dest)).equals(big), 'the cached bytes are the source');
  t.same(await readdir(good.tmpDir), [], 'no temp file left');

  big[(36 << 20) + 7]! ^= 0x01; // a corruption the write-back has already passed over when the copy ends
  await writeFile(bigSrc, big);
  const bad = await area('big-corrupt');
  const err = await fetchArtifact(bigSrc, bigSha, bad.dest, { tmpDir: bad.tmpDir }).catch((e) => e);
  t.equal(err.code, 'digest-mismatch');
  t.same(await bad.empty(), [], 'neither a temp file nor a final file');
});

t.test('an expected size that differs is refused', async (t) => {
  const a = await area('size');
  const err = await fetchArtifact(srcFile, payloadSha, a.dest, { tmpDir: a.tmpDir, size: 5 }).catch((e) => e);
  t.equal(err.code, 'size-mismatch');
  t.same(await a.empty(), []);
});

t.test('unreadable sources raise source-unreadable naming the source', async (t) => {
  const cases = [join(dir, 'missing.img'), dir, `${base}/missing`, `${base}/short`, 'http://127.0.0.1:1/x'];
  for (const source of cases) {
    const a = await area(`unreadable-${cases.indexOf(source)}`);
    const err = await fetchArtifact(source, payloadSha, a.dest, { tmpDir: a.tmpDir }).catch((e) => e);
    t.equal(err.code, 'source-unreadable', source);
    t.match(err.message, source);
    t.same(await a.empty(), [], `nothing left after ${source}`);
  }
  const a = await area('404');
  t.match((await fetchArtifact(`${base}/missing`, payloadSha, a.dest, { tmpDir: a.tmpDir }).catch((e) => e)).message, 'HTTP 404');
});

t.test('http sources: with and without Content-Length, through a redirect', async (t) => {
  for (const path of ['/ok', '/chunked', '/redirect']) {
    const a = await area(`http${path.replace('/', '-')}`);
    const progress: number[] = [];
    await fetchArtifact(`${base}${path}`, payloadSha, a.dest, { tmpDir: a.tmpDir, onProgress: (p) => progress.push(p.bytes) });
    t.ok((await readFile(a.dest)).equals(payload), `${path} content`);
    t.equal(progress.at(-1), payload.length, `${path} progress reaches the end`);
  }
});

t.test('nothing is ever visible under the final name before the file is complete and verified', async (t) => {
  const a = await area('atomic');
  slowDest = a.dest;
  visibleDuringSlow = [];
  await fetchArtifact(`${base}/slow`, payloadSha, a.dest, { tmpDir: a.tmpDir });
  t.ok(visibleDuringSlow.length >= 20, 'observed during the download');
  t.notOk(visibleDuringSlow.some((v) => v), 'the final name never existed while bytes were arriving');
  t.equal((await hashFile(a.dest)).sha256, payloadSha, 'and afterwards it is the whole, verified file');

  const b = await area('atomic-bad');
  slowDest = b.dest;
  visibleDuringSlow = [];
  const err = await fetchArtifact(`${base}/slow`, 'cd'.repeat(32), b.dest, { tmpDir: b.tmpDir }).catch((e) => e);
  t.equal(err.code, 'digest-mismatch');
  t.notOk(visibleDuringSlow.some((v) => v), 'a rejected download was never visible either');
  t.same(await b.empty(), []);
});

t.test('a full disk (tiny tmpfs) raises no-space and leaves nothing behind', async (t) => {
  const mnt = join(dir, 'tiny');
  await mkdir(mnt);
  const m = await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt], { reject: false });
  if (m.exitCode !== 0) {
    t.skip(`cannot mount a tmpfs here (${m.stderr.trim()}): ENOSPC not exercised`, () => {});
    return;
  }
  t.teardown(() => execa('umount', [mnt], { reject: false }).then(() => undefined));
  await mkdir(join(mnt, 'tmp'));
  await mkdir(join(mnt, 'out'));
  const dest = join(mnt, 'out', 'disk');
  const err = await fetchArtifact(srcFile, payloadSha, dest, { tmpDir: join(mnt, 'tmp') }).catch((e) => e);
  t.equal(err.code, 'no-space');
  t.match(err.message, srcFile);
  t.match(err.message, join(mnt, 'out'));
  t.same([...await readdir(join(mnt, 'tmp')), ...await readdir(join(mnt, 'out'))], [], 'temp file removed, nothing under the final name');
  // the space came back: a file that fits goes through
  const small = randomBytes(100_000);
  await writeFile(join(dir, 'small.img'), small);
  await fetchArtifact(join(dir, 'small.img'), sha(small), dest, { tmpDir: join(mnt, 'tmp') });
  t.ok((await readFile(dest)).equals(small), 'next attempt starts clean');
});

t.test('resume: a cut HTTP download keeps its .part and the next fetch continues it with a Range request', async (t) => {
  const a = await area('resume');
  const o = { tmpDir: a.tmpDir, tmpPrefix: 'd.disk', resume: true };
  ranges = [];
  cutNext = true;
  await t.rejects(fetchArtifact(`${base}/ranged`, payloadSha, a.dest, o), { code: 'source-unreadable' });
  const kept = await stat(join(a.tmpDir, 'd.disk.part'));
  t.ok(kept.size > 0 && kept.size < payload.length, `the cut download is kept (${kept.size} bytes)`);
  await fetchArtifact(`${base}/ranged`, payloadSha, a.dest, o);
  t.same(ranges, ['', `bytes=${kept.size}-`], 'the second fetch asked for the rest only');
  t.ok((await readFile(a.dest)).equals(payload), 'the joined file is the source, verified by its digest');
  t.same(await readdir(a.tmpDir), [], 'no .part left');
  // without resume (the default), a cut download leaves nothing
  const b = await area('no-resume');
  cutNext = true;
  await t.rejects(fetchArtifact(`${base}/ranged`, payloadSha, b.dest, { tmpDir: b.tmpDir }), { code: 'source-unreadable' });
  t.same(await b.empty(), []);
});

t.test('resume: a server that ignores Range, a part past the end, or kept bytes that do not add up restart clean', async (t) => {
  const a = await area('resume-restart');
  const o = { tmpDir: a.tmpDir, tmpPrefix: 'd.disk', resume: true };
  await writeFile(join(a.tmpDir, 'd.disk.part'), payload.subarray(0, 5000));
  hits.set('/ok', 0);
  await fetchArtifact(`${base}/ok`, payloadSha, a.dest, o); // /ok answers 200 to any range: the part is dropped
  t.ok((await readFile(a.dest)).equals(payload));
  t.equal(hits.get('/ok'), 1, 'one request');
  const b = await area('resume-past-end');
  await writeFile(join(b.tmpDir, 'd.disk.part'), Buffer.concat([payload, Buffer.from('x')]));
  ranges = [];
  await fetchArtifact(`${base}/ranged`, payloadSha, b.dest, { ...o, tmpDir: b.tmpDir });
  t.same(ranges, [`bytes=${payload.length + 1}-`, ''], '416, then the whole body');
  t.ok((await readFile(b.dest)).equals(payload));
  const c = await area('resume-bad-bytes');
  await writeFile(join(c.tmpDir, 'd.disk.part'), randomBytes(5000)); // not the source's first bytes
  ranges = [];
  await fetchArtifact(`${base}/ranged`, payloadSha, c.dest, { ...o, tmpDir: c.tmpDir });
  t.same(ranges, ['bytes=5000-', ''], 'the digest failed over the resumed bytes: fetched again from zero');
  t.ok((await readFile(c.dest)).equals(payload));
  t.same(await readdir(c.tmpDir), []);
});

t.test('a deadline (AbortSignal) stops a stalled download with fetch-deadline; the part is kept for the next attempt', async (t) => {
  const a = await area('deadline');
  const ac = new AbortController();
  onTrickle = () => ac.abort();
  const err = await fetchArtifact(`${base}/trickle`, payloadSha, a.dest, { tmpDir: a.tmpDir, tmpPrefix: 'd.disk', resume: true, signal: ac.signal }).catch((e) => e);
  onTrickle = undefined;
  t.equal(err.code, 'fetch-deadline');
  const kept = await stat(join(a.tmpDir, 'd.disk.part')).catch(() => undefined);
  t.ok(kept && kept.size <= 100_000, `what arrived is kept (${kept?.size} bytes)`);
  ranges = [];
  await fetchArtifact(`${base}/trickle`, payloadSha, a.dest, { tmpDir: a.tmpDir, tmpPrefix: 'd.disk', resume: true });
  t.same(ranges, [kept!.size > 0 ? `bytes=${kept!.size}-` : ''], 'continued where the cut left it');
  t.ok((await readFile(a.dest)).equals(payload));
});
