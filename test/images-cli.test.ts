// `wnod cache list | verify | prefetch | prune` through the built CLI, with a real config file.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { wnod, wnodBin, repoRoot, ensureBuilt } from './kit/cli.js';

const dir = t.testdir({});
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const disk = randomBytes(2 * 1024 * 1024);
const kernel = randomBytes(300_000);
const initrd = randomBytes(100_000);

/** A complete site config whose catalog points at our files and whose cache lives in `cacheDir`. */
function config(cacheDir: string): string {
  const art = (name: string, b: Buffer) => `{ source: ${join(dir, name)}, sha256: ${sha(b)} }`;
  return `site: { name: TEST-SITE, ce_host: ce.test.org }
images:
  - id: vm_sl6
    title: disk image
    os: { family: linux, name: Test, version: "1" }
    arch: x86_64
    kind: disk
    disk: { source: file://${join(dir, 'disk.img')}, sha256: ${sha(disk)}, format: raw }
    cpus: { default: 1, max: 1 }
    memory_mb: { default: 256, max: 256 }
    disk_gb: { default: 1, max: 1 }
  - id: vm_el9
    title: kernel image
    os: { family: linux, name: Test, version: "2" }
    arch: x86_64
    kind: kernel
    kernel: ${art('kernel', kernel)}
    initrd: ${art('initrd', initrd)}
    cpus: { default: 1, max: 1 }
    memory_mb: { default: 256, max: 256 }
    disk_gb: { default: 1, max: 1 }
policy:
  rules:
    - { name: all, vo: dteam, images: ["*"], default: vm_sl6 }
ticket: { key_file: ${join(dir, 'ticket.key')} }
lrm: { type: torque }
cache: { dir: ${cacheDir}, high_watermark_gb: 2, low_watermark_gb: 1 }
glue:
  subcluster_dn: GlueSubClusterUniqueID=ce.test.org,GlueClusterUniqueID=ce.test.org,mds-vo-name=resource,o=grid
  computing_service_id: ce.test.org_ComputingElement
  computing_manager_id: ce.test.org_ComputingElement_Manager
`;
}

const cfg = join(dir, 'wnod.yaml');
const cache = join(dir, 'cache');

t.before(async () => {
  await ensureBuilt();
  await writeFile(join(dir, 'disk.img'), disk);
  await writeFile(join(dir, 'kernel'), kernel);
  await writeFile(join(dir, 'initrd'), initrd);
  await writeFile(cfg, config(cache));
});

t.test('prefetch, list, verify, prune', async (t) => {
  const p1 = await wnod(['cache', 'prefetch', 'vm_sl6', '--config', cfg]);
  t.equal(p1.exitCode, 0, p1.stderr);
  t.match(p1.stdout, /^FETCHED vm_sl6 [0-9a-f]{16} \(2\.0 MiB\)$/m);
  t.match(p1.stderr, /^vm_sl6 disk: 100% 2\.0 MiB of 2\.0 MiB$/m, 'plain progress lines when stderr is not a terminal');
  t.notMatch(p1.stderr, /\r/);

  const p2 = await wnod(['cache', 'prefetch', '--config', cfg]);
  t.equal(p2.exitCode, 0, p2.stderr);
  t.match(p2.stdout, /^CACHED  vm_sl6/m);
  t.match(p2.stdout, /^FETCHED vm_el9/m);

  const l = await wnod(['cache', 'list', '--json', '--config', cfg]);
  t.equal(l.exitCode, 0);
  const entries = JSON.parse(l.stdout);
  t.same(entries.map((e: { imageIds: string[] }) => e.imageIds[0]).sort(), ['vm_el9', 'vm_sl6']);
  t.ok(entries.every((e: { complete: boolean }) => e.complete));
  const table = await wnod(['cache', 'list', '--config', cfg]);
  t.match(table.stdout, /^DIGEST\s+IMAGES\s+SIZE\s+LAST USED\s+HOLDERS\s+STATE$/m);
  t.match(table.stdout, /vm_sl6\s+2\.0 MiB\s+\S+\s+-\s+complete/);

  const v = await wnod(['cache', 'verify', '--config', cfg]);
  t.equal(v.exitCode, 0, v.stdout);
  t.equal(v.stdout.split('\n').filter((x) => x.startsWith('OK ')).length, 3, 'three files verified');

  // corrupt the cached kernel in place
  const el9 = entries.find((e: { imageIds: string[] }) => e.imageIds[0] === 'vm_el9');
  await chmod(el9.files.kernel.path, 0o600);
  await writeFile(el9.files.kernel.path, Buffer.alloc(kernel.length));
  const bad = await wnod(['cache', 'verify', 'vm_el9', 'vm_nope', '--config', cfg]);
  t.equal(bad.exitCode, 1);
  t.match(bad.stdout, /^BAD   [0-9a-f]{16} vm_el9 kernel: sha256 [0-9a-f]{64}, expected [0-9a-f]{64} — removed/m);
  t.match(bad.stdout, /^OK    [0-9a-f]{16} vm_el9 initrd$/m);
  t.match(bad.stdout, /^MISS  vm_nope: not in the cache$/m);
  const again = await wnod(['cache', 'prefetch', 'vm_el9', '--config', cfg]);
  t.match(again.stdout, /^FETCHED vm_el9 [0-9a-f]{16} \(293 KiB\)$/m, 'only the removed file is fetched again');
  t.ok((await readFile(el9.files.kernel.path)).equals(kernel));

  const pr = await wnod(['cache', 'prune', '--json', '--config', cfg]);
  t.equal(pr.exitCode, 0);
  t.same(JSON.parse(pr.stdout).evicted, [], 'under the watermark: nothing evicted');
});

t.test('a failing prefetch exits 1 and names the source', async (t) => {
  const c2 = join(dir, 'broken.yaml');
  await writeFile(c2, config(join(dir, 'cache2')).replace(join(dir, 'initrd'), join(dir, 'no-such-initrd')));
  const r = await wnod(['cache', 'prefetch', 'vm_el9', '--config', c2]);
  t.equal(r.exitCode, 1);
  t.match(r.stdout, /^FAILED  vm_el9: cannot read image source .*no-such-initrd/m);
});

t.test('usage errors exit 2', async (t) => {
  for (const args of [['cache'], ['cache', 'frobnicate'], ['cache', 'list', '--bogus'], ['cache', 'list', 'extra'], ['cache', 'prefetch', 'vm_nope']]) {
    const r = await wnod([...args, '--config', cfg]);
    t.equal(r.exitCode, 2, args.join(' '));
    t.match(r.stderr, /^wnod cache: /);
  }
});

t.test('prefetch draws a progress bar on a terminal', async (t) => {
  const c3 = join(dir, 'tty.yaml');
  await writeFile(c3, config(join(dir, 'cache3')));
  // script(1) gives the command a pseudo-terminal
  const r = await execa('script', ['-qec', `${process.execPath} ${wnodBin} cache prefetch vm_sl6 --config ${c3}`, '/dev/null'], { reject: false, env: { TERM: 'dumb' } });
  if (r.exitCode !== 0 && /not found|No such file/.test(r.stderr)) { t.skip('script(1) missing', () => {}); return; }
  t.equal(r.exitCode, 0, r.stderr);
  t.match(r.stdout, /\rvm_sl6 disk \[#+\] 100% 2\.0 MiB\/2\.0 MiB/, 'a redrawn bar');
  t.match(r.stdout, /FETCHED vm_sl6/);
});
