// The test image's package versions are resolved once per state of apt's lists (src/guest/aptRecord.ts), and a
// machine without apt lists uses the image built before without asking apt. The apt lists here are fake directories;
// apt itself is replaced by shims on PATH that only record being called. No VM is booted.
import t from 'tap';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aptListsState, resolvedOnce } from '../src/guest/aptRecord.js';
import { buildTestImage, validInputs } from '../src/guest/testImage.js';

const isText = (v: unknown): v is string => typeof v === 'string';

async function scratch(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'wti-apt-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

async function fakeLists(root: string): Promise<{ lists: string; etc: string; pkgs: string }> {
  const lists = join(root, 'lists');
  const etc = join(root, 'etc');
  await mkdir(lists);
  await mkdir(join(etc, 'sources.list.d'), { recursive: true });
  const pkgs = join(lists, 'deb.example_dists_x_main_binary-amd64_Packages.lz4');
  await writeFile(pkgs, 'v1');
  await writeFile(join(lists, 'deb.example_dists_x_InRelease'), 'r');
  return { lists, etc, pkgs };
}

t.test('aptListsState: none without a Packages list; changes with a list\'s mtime, not with other files', async (t) => {
  const root = await scratch();
  const { lists, etc, pkgs } = await fakeLists(root);
  t.equal(await aptListsState({ lists: join(root, 'missing'), etc }), undefined);
  const a = await aptListsState({ lists, etc });
  t.ok(a);
  await writeFile(join(lists, 'lock'), '');
  t.equal(await aptListsState({ lists, etc }), a, 'the lock file is not a list');
  await utimes(pkgs, new Date(), new Date(Date.now() + 5000));
  t.not(await aptListsState({ lists, etc }), a, 'apt-get update rewrote a list');
  const b = await aptListsState({ lists, etc });
  await writeFile(join(etc, 'sources.list.d', 'extra.list'), 'deb http://x y main\n');
  t.not(await aptListsState({ lists, etc }), b, 'a new source');
});

t.test('resolvedOnce: resolved once per lists state; without lists the record stands; a record others could write is ignored', async (t) => {
  const root = await scratch();
  const { lists, etc, pkgs } = await fakeLists(root);
  const record = join(root, 'resolved.json');
  let calls = 0;
  const resolve = async () => `1.${++calls}`;
  t.equal(await resolvedOnce(record, resolve, isText, { lists, etc }), '1.1');
  t.equal((await stat(record)).mode & 0o777, 0o644, 'the record: 0644');
  t.equal(await resolvedOnce(record, resolve, isText, { lists, etc }), '1.1', 'same lists: the record');
  t.equal(calls, 1);
  await utimes(pkgs, new Date(), new Date(Date.now() + 5000));
  t.equal(await resolvedOnce(record, resolve, isText, { lists, etc }), '1.2', 'after apt-get update: resolved again');
  const logs: string[] = [];
  await rm(lists, { recursive: true });
  t.equal(await resolvedOnce(record, resolve, isText, { lists, etc, log: (s) => logs.push(s) }), '1.2', 'no lists: the record as it stands');
  t.equal(calls, 2);
  t.match(logs.join('\n'), /no apt package lists/);
  await fakeLists(root);
  await chmod(record, 0o666);
  t.equal(await resolvedOnce(record, resolve, isText, { lists, etc }), '1.3', 'a world-writable record is not trusted');
  await writeFile(record, JSON.stringify({ v: 1, apt: await aptListsState({ lists, etc }), at: 'x', value: 42 }), { mode: 0o644 });
  t.equal(await resolvedOnce(record, resolve, isText, { lists, etc }), '1.4', 'a value that fails the check is resolved again');
  t.equal(JSON.parse(await readFile(record, 'utf8')).value, '1.4');
});

t.test('validInputs: only names and versions apt could print', async (t) => {
  const ok = { kernelPkg: 'linux-image-6.1.0-57-cloud-amd64', kernelVer: '6.1.192-3', busyboxVer: '1:1.35.0-4+deb12u1+b1',
    bash: [['bash', '5.2.15-2+b13'], ['libc6', '2.36-9+deb12u14']] };
  t.ok(validInputs(ok));
  t.notOk(validInputs({ ...ok, kernelVer: '1; rm -rf /' }));
  t.notOk(validInputs({ ...ok, bash: [['bash', '5'], ['-oDebug::pkgDPkgPm=1', '1']] }), 'an option is not a package name');
  t.notOk(validInputs({ ...ok, bash: [['libc6', '2.36']] }), 'bash comes first');
  t.notOk(validInputs({ ...ok, bash: [] }));
});

t.test('no apt lists: the test image built before is used, and apt is never asked', async (t) => {
  const built = await buildTestImage(); // the shared cache (built on first use, with apt)
  const root = await scratch();
  const shims = join(root, 'bin');
  const calls = join(root, 'calls');
  await mkdir(shims);
  for (const tool of ['apt-cache', 'apt-get']) {
    await writeFile(join(shims, tool), `#!/bin/sh\necho "${tool} $*" >> ${calls}\nexit 1\n`, { mode: 0o755 });
  }
  const emptyLists = join(root, 'lists');
  await mkdir(emptyLists);
  // a cache holding the built image (its files linked, its manifest copied) and an image of an old builder (skipped)
  const cache = join(root, 'cache');
  await mkdir(join(cache, built.key), { recursive: true });
  await copyFile(join(built.dir, 'manifest.json'), join(cache, built.key, 'manifest.json'));
  for (const f of ['vmlinux', 'initrd.img', 'root.ext4']) await symlink(join(built.dir, f), join(cache, built.key, f));
  await mkdir(join(cache, '0123456789abcdef0123'));
  await writeFile(join(cache, '0123456789abcdef0123', 'manifest.json'), JSON.stringify({ key: '0123456789abcdef0123', builtAt: new Date().toISOString() }));
  const path = process.env.PATH;
  process.env.PATH = `${shims}:${path}`;
  t.teardown(() => { process.env.PATH = path; });

  const logs: string[] = [];
  const got = await buildTestImage({ cacheDir: cache, aptLists: emptyLists, log: (s) => logs.push(s) });
  t.equal(got.key, built.key, 'the image built before');
  t.equal(got.dir, join(cache, built.key));
  t.match(logs.join('\n'), /no apt package lists: using the test image built before/);
  t.notOk(await readFile(calls, 'utf8').catch(() => ''), 'apt-cache and apt-get were not run');

  // with a record and still no lists: the record's versions, again without apt
  await copyFile(join(built.dir, '..', 'resolved.json'), join(cache, 'resolved.json'));
  const again = await buildTestImage({ cacheDir: cache, aptLists: emptyLists });
  t.equal(again.key, built.key);
  t.notOk(await readFile(calls, 'utf8').catch(() => ''), 'apt was not run');
});
