// The pure parts of the image cache: eviction planning, the metadata record, artifact/holder checks, qemu-img
// argument building and info parsing, and the CLI's renderers. No processes, no files.
import t from 'tap';
import { planEviction } from '../src/images/evict-plan.js';
import { newMeta, parseMeta, renderMeta, isComplete, metaSize } from '../src/images/meta.js';
import { checkHolder, imageArtifacts } from '../src/images/artifacts.js';
import { overlayArgs, parseBaseInfo } from '../src/images/overlay.js';
import { formatBytes, renderProgressBar } from '../src/cli/cache.js';
import type { Image } from '../src/config/types.js';

const d = (c: string) => c.repeat(64);

t.test('planEviction', async (t) => {
  const e = (c: string, size: number, lastUsedMs: number, inUse = false) => ({ digest: d(c), size, lastUsedMs, inUse });
  const entries = [e('a', 10, 1), e('b', 10, 3), e('c', 10, 2), e('d', 10, 0, true)];
  t.same(planEviction(entries, 40, 20).evict, [], 'at the high watermark: nothing');
  const p = planEviction(entries, 35, 20);
  t.same(p.evict, [d('a'), d('c')], 'LRU first, stop at or below low');
  t.equal(p.totalBefore, 40);
  t.equal(p.totalAfter, 20);
  t.equal(p.blockedByInUse, false);
  const q = planEviction(entries, 35, 5);
  t.same(q.evict, [d('a'), d('c'), d('b')], 'every unheld entry, the held one skipped');
  t.equal(q.totalAfter, 10);
  t.equal(q.blockedByInUse, true, 'the held entry keeps it above low');
  t.same(planEviction([e('x', 100, 0, true)], 10, 5).evict, [], 'never an entry in use, even when far over');
  t.same(planEviction([e('b', 5, 7), e('a', 5, 7)], 5, 0).evict, [d('a'), d('b')], 'ties broken by digest: deterministic');
});

t.test('metadata record: round trip and strict parsing naming the key', async (t) => {
  const m = newMeta(d('1'), ['kernel', 'initrd'], new Date('2026-01-02T03:04:05Z'));
  t.equal(isComplete(m), false);
  m.files.kernel = { sha256: d('2'), size: 10, mtimeMs: 1.5, source: '/k' };
  m.files.initrd = { sha256: d('3'), size: 5, mtimeMs: 2, source: '/i' };
  m.holders['vm-1'] = '2026-01-02T03:04:05.000Z';
  t.equal(isComplete(m), true);
  t.equal(metaSize(m), 15);
  t.same(parseMeta(renderMeta(m), '/x/meta.json'), m);
  const bad = (mut: (o: Record<string, any>) => void) => { const o = JSON.parse(renderMeta(m)); mut(o); return JSON.stringify(o); };
  t.throws(() => parseMeta('{', '/x/meta.json'), { code: 'cache-meta-invalid', message: /\/x\/meta.json: not JSON/ });
  t.throws(() => parseMeta(bad((o) => { o.version = 2; }), '/m'), { message: /key 'version'/ });
  t.throws(() => parseMeta(bad((o) => { o.digest = 'XYZ'; }), '/m'), { message: /key 'digest'/ });
  t.throws(() => parseMeta(bad((o) => { o.files.kernel.size = -1; }), '/m'), { message: /key 'files.kernel.size'/ });
  t.throws(() => parseMeta(bad((o) => { o.files.rootfs = o.files.kernel; }), '/m'), { message: /key 'files.rootfs': unknown role/ });
  t.throws(() => parseMeta(bad((o) => { o.holders['../x'] = o.lastUsed; }), '/m'), { message: /holders/ });
  t.throws(() => parseMeta(bad((o) => { o.lastUsed = 'yesterday'; }), '/m'), { message: /key 'lastUsed'/ });
});

t.test('holders and artifacts are validated before they reach a path', async (t) => {
  t.equal(checkHolder('vm-12.a_b'), 'vm-12.a_b');
  for (const h of ['', '/', 'a b', 'ü', 'x'.repeat(65)]) t.throws(() => checkHolder(h), { code: 'cache-bad-input' });
  const base = { id: 'i', kind: 'kernel', digest: d('a') } as Image;
  t.same(imageArtifacts({ ...base, kernel: { source: '/k', sha256: d('B') }, initrd: { source: '/i', sha256: d('c') } }).map((a) => [a.role, a.sha256]),
    [['kernel', d('b')], ['initrd', d('c')]], 'roles in a fixed order, digests lower-cased');
  t.throws(() => imageArtifacts({ ...base, kind: 'disk', kernel: { source: '/k', sha256: d('b') } }), { message: /kind 'disk' but has no disk/ });
  t.throws(() => imageArtifacts({ ...base, kernel: { source: '/k', sha256: 'nothex' } }), { message: /kernel.sha256/ });
});

t.test('overlay: qemu-img arguments and base inspection', async (t) => {
  t.same(overlayArgs('/c/disk', 'raw', '/vm/1/disk.qcow2'), ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', '/c/disk', '/vm/1/disk.qcow2']);
  t.same(overlayArgs('/c/disk', 'qcow2', '/o', 20).slice(-1), ['20G']);
  t.same(parseBaseInfo('{"virtual-size": 1048576, "format": "raw"}', '/b', '/o'), { virtualSize: 1048576 });
  t.throws(() => parseBaseInfo('{"virtual-size": 1, "backing-filename": "/etc/shadow"}', '/b', '/o'), { code: 'overlay-failed', message: /backing file of its own/ });
  t.throws(() => parseBaseInfo('{"virtual-size": 1, "format-specific": {"data": {"data-file": "/dev/sda"}}}', '/b', '/o'), { message: /external data file/ });
  t.throws(() => parseBaseInfo('nope', '/b', '/o'), { message: /not JSON/ });
});

t.test('CLI renderers', async (t) => {
  t.equal(formatBytes(512), '512 B');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(3 * 2 ** 30), '3.0 GiB');
  const bar = renderProgressBar({ imageId: 'vm_sl6', role: 'disk', bytes: 2 ** 29, total: 2 ** 30 }, 60);
  t.ok(bar.length <= 60);
  t.match(bar, /^vm_sl6 disk \[#+\.+\]  50% 512 MiB\/1\.0 GiB$/);
  t.equal(renderProgressBar({ imageId: 'x', role: 'kernel', bytes: 2048 }, 80), 'x kernel 2.0 KiB', 'no total: no bar');
});
