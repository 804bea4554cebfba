// The plugin and provider as BDII runs them (processes of the built dist), and `wnod install bdii`.
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, stat, writeFile, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { siteYaml } from './glue-fixtures.js';
import { renderShim, DEFAULT_SHIM_PARAMS, SHIM_NAMES } from '../src/glue/install-bdii.js';
import { ensureBuilt } from './kit/cli.js';

const ROOT = new URL('..', import.meta.url).pathname;
const dist = (p: string) => join(ROOT, 'dist', p);

t.before(async () => {
  await ensureBuilt();
});

async function tmp(t: Tap): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'wnod-glue-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}
type Tap = Test;

const runKind = (kind: 'plugin' | 'provider', args: string[]) =>
  execa('node', [dist(`glue/${kind}.js`), ...args], { reject: false, stripFinalNewline: false });

t.test('fresh output, kept as last good; a broken config re-emits it and logs why', async (t) => {
  const d = await tmp(t);
  const cfg = join(d, 'wnod.yaml');
  const lastGood = join(d, 'cache', 'lg.ldif');
  await writeFile(cfg, siteYaml({ host: 'ce.test.org', ids: ['vm_sl6', 'vm_el9'], lastGood }));
  const args = ['--config', cfg, '--last-good', lastGood];
  const p1 = await runKind('plugin', args);
  t.equal(p1.exitCode, 0);
  t.equal(p1.stderr, '');
  t.match(p1.stdout, /^dn: GlueSubClusterUniqueID=ce\.test\.org,/);
  t.match(p1.stdout, /GlueHostApplicationSoftwareRunTimeEnvironment: vm_sl6\nGlueHostApplicationSoftwareRunTimeEnvironment: vm_el9\n-\n\n$/);
  const p2 = await runKind('provider', args);
  t.equal(p2.exitCode, 0);
  t.equal((p2.stdout.match(/^dn: /gm) ?? []).length, 4);
  t.equal(await readFile(join(d, 'cache', 'lg.plugin.ldif'), 'utf8'), p1.stdout, 'plugin output kept');
  t.equal(await readFile(lastGood, 'utf8'), p2.stdout, 'provider output kept');
  t.same((await readdir(join(d, 'cache'))).sort(), ['lg.ldif', 'lg.ldif.model.json', 'lg.plugin.ldif'], 'no temp files left');

  // The config changes: the cached model must not be served.
  await writeFile(cfg, siteYaml({ host: 'ce.test.org', ids: ['vm_sl6', 'vm_el9', 'vm_new'], lastGood }));
  const p3 = await runKind('plugin', args);
  t.match(p3.stdout, /RunTimeEnvironment: vm_new\n/, 'an edited config is read again');

  // A broken config: exactly the last good output, the error on stderr with file and line.
  await writeFile(cfg, 'site:\n  name: [unclosed\n');
  const p4 = await runKind('plugin', args);
  t.equal(p4.exitCode, 1);
  t.equal(p4.stdout, p3.stdout, 'the last good output, byte for byte');
  t.match(p4.stderr, /wnod-glue-plugin: error: .*wnod\.yaml:\d+.*re-emitting the last good output/);
  const p5 = await runKind('provider', args);
  const stamp = /^GLUE2EntityCreationTime: .*$/gm; // re-stamped with the time of the run (test/glue-egi.test.ts)
  t.equal(p5.stdout.replace(stamp, ''), (await readFile(lastGood, 'utf8')).replace(stamp, ''), 'the last good output but for its creation time');
});

t.test('no last good output yet: nothing on stdout, the error on stderr', async (t) => {
  const d = await tmp(t);
  const cfg = join(d, 'wnod.yaml');
  await writeFile(cfg, 'images: 3\n');
  const r = await runKind('provider', ['--config', cfg, '--last-good', join(d, 'lg.ldif')]);
  t.equal(r.stdout, '');
  t.match(r.stderr, /error: .*nothing printed/);
  const u = await runKind('provider', ['--config', cfg, '--bogus']);
  t.equal(u.stdout, '');
  t.match(u.stderr, /bogus/);
});

t.test('a config whose identity cannot be published falls back too', async (t) => {
  const d = await tmp(t);
  const cfg = join(d, 'wnod.yaml');
  const lastGood = join(d, 'lg.ldif');
  await writeFile(cfg, siteYaml({ host: 'ce.test.org', ids: ['vm_a'], lastGood }));
  const good = await runKind('provider', ['--config', cfg, '--last-good', lastGood]);
  await writeFile(cfg, siteYaml({ host: 'ce.test.org', ids: ['vm_a'], lastGood }).replace(/computing_manager_id: .*/, 'computing_manager_id: "bad id"'));
  const r = await runKind('provider', ['--config', cfg, '--last-good', lastGood]);
  const stamp = /^GLUE2EntityCreationTime: .*$/gm; // the fallback re-stamps the creation time
  t.equal(r.stdout.replace(stamp, ''), good.stdout.replace(stamp, ''));
  t.match(r.stderr, /computing_manager_id/);
});

t.test('wnod install bdii: two shims, mode 0755, nothing else in plugin/ and provider/, and BDII can run them', async (t) => {
  const d = await tmp(t);
  const gip = join(d, 'gip');
  await mkdir(join(gip, 'plugin'), { recursive: true });
  const cfg = join(d, 'wnod.yaml');
  const lastGood = join(d, 'lg', 'glue.ldif');
  await writeFile(cfg, siteYaml({ host: 'ce.test.org', ids: ['vm_sl6'], lastGood }));
  const r = await execa('node', [dist('cli/main.js'), 'install', 'bdii', '--gip-dir', gip, '--config', cfg, '--prefix', ROOT], { reject: false });
  t.equal(r.exitCode, 0, r.stderr);
  t.same(await readdir(join(gip, 'plugin')), [SHIM_NAMES.plugin]);
  t.same(await readdir(join(gip, 'provider')), [SHIM_NAMES.provider]);
  t.same((await readdir(gip)).sort(), ['plugin', 'provider'], 'no temp file left in the gip dir');
  for (const [kind, sub] of [['plugin', 'plugin'], ['provider', 'provider']] as const) {
    const f = join(gip, sub, SHIM_NAMES[kind]);
    t.equal((await stat(f)).mode & 0o7777, 0o755);
    const text = await readFile(f, 'utf8');
    t.equal(text, renderShim(kind, { node: process.execPath, prefix: ROOT, config: cfg, lastGood }), 'last good taken from the config');
    // bdii-update runs each file through /bin/sh -c with the path as the command.
    const out = await execa('/bin/sh', ['-c', f], { reject: false });
    t.equal(out.exitCode, 0, out.stderr);
    t.match(out.stdout, kind === 'plugin' ? /RunTimeEnvironment: vm_sl6/ : /GLUE2ApplicationEnvironmentID: /);
  }
  const bad = await execa('node', [dist('cli/main.js'), 'install', 'bdii', '--gip-dir', gip, '--config', "/etc/it's"], { reject: false });
  t.equal(bad.exitCode, 1);
  t.match(bad.stderr, /--config: .*must be an absolute path/);
  const usage = await execa('node', [dist('cli/main.js'), 'install', 'bdii'], { reject: false });
  t.equal(usage.exitCode, 2);
});

t.test('the shims shipped in info-provider/ are the rendering of the defaults', async (t) => {
  for (const kind of ['plugin', 'provider'] as const) {
    t.equal(readFileSync(join(ROOT, 'info-provider', SHIM_NAMES[kind]), 'utf8'), renderShim(kind, DEFAULT_SHIM_PARAMS));
  }
});
