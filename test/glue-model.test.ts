import t, { type Test } from 'tap';
import { fileURLToPath } from 'node:url';
import { matchGolden } from './kit/golden.js';
import { buildGlueModel, publishedImages, rteTags, splitAppVersion, bdiiText } from '../src/glue/model.js';
import { printGlue1Plugin } from '../src/glue/print-glue1.js';
import { printGlue2Provider } from '../src/glue/print-glue2.js';
import { checkBdiiReadable } from '../src/glue/info-provider.js';
import { GlueError, escapeRdnValue, checkConfiguredDn } from '../src/glue/dn.js';
import { image, siteConfig } from './glue-fixtures.js';

const NOW = new Date('2025-01-02T03:04:05.678Z');
const GOLDEN = new URL('./golden/glue/', import.meta.url);

const golden = (t: Test, name: string, actual: string): void =>
  matchGolden(t, actual, fileURLToPath(new URL(name, GOLDEN)));

const small = siteConfig([
  image('vm_sl6', { title: 'Scientific Linux 6.10 worker node', os: { family: 'linux', name: 'ScientificSL', version: '6.10' }, cpus: { default: 1, max: 4 } }),
  image('vm_el-9.4', { title: 'AlmaLinux 9', arch: 'aarch64', memoryMB: { default: 1024, max: 16384 } }),
  image('hidden', { published: false }),
], [
  { name: 'atlas-prod', fqan: '/atlas/Role=production', images: ['vm_sl6'] },
  { name: 'dteam', vo: 'dteam', images: ['*'] },
]);

t.test('golden: small catalog, GLUE 1.3 plugin and GLUE 2.0 provider', async (t) => {
  const m = buildGlueModel(small, NOW);
  t.same(m.glue1.tags, ['vm_sl6', 'vm_el-9.4'], 'only published images, catalog order');
  golden(t, 'small.plugin.ldif', printGlue1Plugin(m.glue1));
  golden(t, 'small.provider.ldif', printGlue2Provider(m));
  t.same(m.warnings, []);
});

t.test('golden: per-VO tags from vo and fqan rules', async (t) => {
  const m = buildGlueModel({ ...small, glue: { ...small.glue, perVoTags: true } }, NOW);
  t.same(m.glue1.tags, ['vm_sl6', 'vm_el-9.4', 'VO-atlas-vm_sl6', 'VO-dteam-vm_sl6', 'VO-dteam-vm_el-9.4']);
  golden(t, 'per-vo.plugin.ldif', printGlue1Plugin(m.glue1));
});

t.test('golden: odd characters in titles and OS names are encoded, never break an entry', async (t) => {
  const cfg = siteConfig([
    image('vm_odd', { title: 'Zürich  image: see dn: notes\nsecond line', os: { family: 'Linux', name: ' leading', version: 'v<1' } }),
    image('vm+plus', { title: ':starts with colon' }),
  ]);
  const m = buildGlueModel(cfg, NOW);
  const out = printGlue2Provider(m);
  golden(t, 'odd.provider.ldif', out);
  t.doesNotThrow(() => checkBdiiReadable(out), 'no "dn:" inside values');
  t.match(out, /GLUE2ApplicationEnvironmentID=ce\.test\.org_ComputingElement_app_vm\\\+plus,/, '+ is escaped in the RDN');
  t.match(out, /GLUE2ExecutionEnvironmentOSFamily: linux\n/);
});

t.test('golden: many images (25); 1 000 images keep every line within 76 octets', async (t) => {
  const m = buildGlueModel(siteConfig(Array.from({ length: 25 }, (_, i) => image(`vm_many${i}`))), NOW);
  golden(t, 'many.plugin.ldif', printGlue1Plugin(m.glue1));
  golden(t, 'many.provider.ldif', printGlue2Provider(m));
  const big = buildGlueModel(siteConfig(Array.from({ length: 1000 }, (_, i) => image(`vm_big${i}`))), NOW);
  const plugin = printGlue1Plugin(big.glue1);
  const provider = printGlue2Provider(big);
  t.equal(provider.split('\n\n').filter(Boolean).length, 2000, 'one EE and one AE per image');
  t.equal(plugin.split('\n').filter((l) => l.startsWith('GlueHostApplicationSoftwareRunTimeEnvironment: ')).length, 1000);
  t.ok((plugin + provider).split('\n').every((l) => l.length <= 76));
});

t.test('case-insensitive de-duplication: VM_SL6 after vm_sl6 is dropped with a warning', async (t) => {
  const warnings: string[] = [];
  const imgs = publishedImages([image('vm_sl6'), image('VM_SL6'), image('vm_el9'), image('Vm_El9')], warnings);
  t.same(imgs.map((i) => i.id), ['vm_sl6', 'vm_el9']);
  t.equal(warnings.length, 2);
  t.match(warnings[0], /VM_SL6.*differs from "vm_sl6" only in case/);
  const m = buildGlueModel(siteConfig([image('vm_sl6'), image('VM_SL6')]), NOW);
  t.same(m.glue1.tags, ['vm_sl6']);
  t.equal(m.glue2.applicationEnvironments.length, 1, 'GLUE2 too: bdii-update compares DNs lower-cased');
  // A VO tag that collides case-insensitively with an image tag is not published twice.
  t.same(rteTags([image('VO-dteam-x'), image('x')], [{ name: 'r', vo: 'DTEAM', images: ['x'] }], true, []), ['VO-dteam-x', 'x']);
});

t.test('an empty catalog prints nothing for the plugin (add without values is invalid)', async (t) => {
  const m = buildGlueModel(siteConfig([image('a', { published: false })]), NOW);
  t.equal(printGlue1Plugin(m.glue1), '');
  t.equal(printGlue2Provider(m), '');
});

t.test('AppName/AppVersion split and bdiiText', async (t) => {
  t.same(splitAppVersion('vm_sl6'), { appName: 'vm_sl6' });
  t.same(splitAppVersion('vm_el-9.4'), { appName: 'vm_el', appVersion: '9.4' });
  t.same(splitAppVersion('cvmfs_app_12'), { appName: 'cvmfs_app', appVersion: '12' });
  t.equal(bdiiText('a\tb\ndn: c'), 'a b dn : c');
});

t.test('configured identities are checked: the message names the key', async (t) => {
  t.throws(() => buildGlueModel(siteConfig([image('a')], [], { subClusterDn: 'GlueSubClusterUniqueID=x,o=glue' }), NOW), { message: /glue\.subcluster_dn.*below o=grid/ });
  t.throws(() => buildGlueModel(siteConfig([image('a')], [], { subClusterDn: 'GlueClusterUniqueID=x,mds-vo-name=resource,o=grid' }), NOW), /must start with GlueSubClusterUniqueID/);
  t.throws(() => buildGlueModel(siteConfig([image('a')], [], { subClusterDn: 'GlueSubClusterUniqueID=zü,o=grid' }), NOW), GlueError);
  t.throws(() => buildGlueModel(siteConfig([image('a')], [], { computingServiceId: 'has space' }), NOW), /computing_service_id/);
  t.throws(() => buildGlueModel(siteConfig([image('a')], [], { computingManagerId: 'xdn:y' }), NOW), /computing_manager_id/);
  t.equal(checkConfiguredDn('o=glue', 'o=glue', 'k', true), 'o=glue');
  t.equal(escapeRdnValue('a,b+c=d'), 'a\\,b\\+c\\=d');
  t.equal(escapeRdnValue('#x '), '\\#x\\ ');
});

t.test('checkBdiiReadable finds "dn:" inside a line', async (t) => {
  t.doesNotThrow(() => checkBdiiReadable('dn: a\nx: b\n\ndn: c\n'));
  t.throws(() => checkBdiiReadable('dn: a\nx: vm_dn: b\n'), /byte 12/);
});
