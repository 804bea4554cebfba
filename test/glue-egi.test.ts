// GLUE 2.0 as EGI's glue-validator (EGI profile) reads it: the mandatory ExecutionEnvironment attributes with their
// types on every entry (golden LDIF), the OS/platform lists `wnod check` warns about, and a fallback after a bad
// config that re-stamps the creation time rather than let the entries go obsolete.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGlueModel } from '../src/glue/model.js';
import { printGlue2Provider } from '../src/glue/print-glue2.js';
import { egiProfileWarnings, EGI_OS_FAMILIES, EGI_OS_NAMES, EGI_PLATFORMS } from '../src/glue/egiProfile.js';
import { runInfoProvider, restampCreationTime, type InfoProviderIo } from '../src/glue/info-provider.js';
import { parseConfig } from '../src/config/parse.js';
import { image, siteConfig, siteYaml } from './glue-fixtures.js';
import { matchGolden } from './kit/golden.js';

const GOLDEN = new URL('./golden/glue/', import.meta.url);

/** glue_validator/egi_glue2/data.py: the ExecutionEnvironment attributes the EGI profile marks Mandatory, with the
 * type each must match (types.py), plus GLUE2Resource's ID. */
const DATE = /^-?[0-9]{4}-(0[0-9]|1[0-2])-([0-2][0-9]|3[0-1])T([0-1][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z?$/;
const MANDATORY: Record<string, (v: string) => boolean> = {
  GLUE2ResourceID: (v) => v !== '',
  GLUE2ExecutionEnvironmentPlatform: (v) => EGI_PLATFORMS.includes(v),
  GLUE2ExecutionEnvironmentCPUTimeScalingFactor: (v) => /^-*[0-9]+(.[0-9]+)*$/.test(v),
  GLUE2ExecutionEnvironmentWallTimeScalingFactor: (v) => /^-*[0-9]+(.[0-9]+)*$/.test(v),
  GLUE2ExecutionEnvironmentMainMemorySize: (v) => /^[0-9]+$/.test(v),
  GLUE2ExecutionEnvironmentVirtualMemorySize: (v) => /^[0-9]+$/.test(v),
  GLUE2ExecutionEnvironmentOSFamily: (v) => EGI_OS_FAMILIES.includes(v),
  GLUE2ExecutionEnvironmentOSName: (v) => EGI_OS_NAMES.includes(v),
  GLUE2ExecutionEnvironmentOSVersion: (v) => v !== '',
  GLUE2ExecutionEnvironmentConnectivityIn: (v) => ['true', 'false', 'undefined'].includes(v.toLowerCase()),
  GLUE2ExecutionEnvironmentConnectivityOut: (v) => ['true', 'false', 'undefined'].includes(v.toLowerCase()),
  GLUE2ExecutionEnvironmentComputingManagerForeignKey: (v) => v !== '',
  GLUE2EntityCreationTime: (v) => DATE.test(v), // Recommended, and what the obsolete check reads
};

/** Entries of an LDIF text (unfolded) as attribute → values. */
function entries(ldif: string): Map<string, string[]>[] {
  return ldif.replace(/\n /g, '').split('\n\n').filter((b) => b.trim() !== '').map((b) => {
    const m = new Map<string, string[]>();
    for (const line of b.split('\n')) {
      const i = line.indexOf(': ');
      if (i > 0) m.set(line.slice(0, i), [...(m.get(line.slice(0, i)) ?? []), line.slice(i + 2)]);
    }
    return m;
  });
}

const cfg = siteConfig([
  image('vm_sl6', { os: { family: 'linux', name: 'ScientificSL', version: '6.10' }, virtualMemoryMB: 16384 }),
  image('vm_deb12', { os: { family: 'Linux', name: 'Debian', version: '12' } }),
], [], { cpuTimeScalingFactor: 1.25, wallTimeScalingFactor: 0.8 });

t.test('every ExecutionEnvironment carries the EGI profile\'s mandatory attributes (golden LDIF)', async (t) => {
  const out = printGlue2Provider(buildGlueModel(cfg, new Date('2026-12-03T07:00:00Z')));
  matchGolden(t, out, new URL('egi.provider.ldif', GOLDEN).pathname);
  const ees = entries(out).filter((e) => e.get('objectClass')?.includes('GLUE2ExecutionEnvironment'));
  t.equal(ees.length, 2);
  for (const ee of ees) {
    for (const [attr, ok] of Object.entries(MANDATORY)) {
      const v = ee.get(attr);
      t.equal(v?.length, 1, `${ee.get('GLUE2ResourceID')}: one ${attr}`);
      t.ok(v && ok(v[0]!), `${ee.get('GLUE2ResourceID')}: ${attr}: ${v?.[0]} has the EGI profile's type`);
    }
    t.same(ee.get('GLUE2ExecutionEnvironmentCPUTimeScalingFactor'), ['1.25'], 'glue.cpu_time_scaling_factor');
    t.same(ee.get('GLUE2ExecutionEnvironmentWallTimeScalingFactor'), ['0.8'], 'glue.wall_time_scaling_factor');
  }
  t.same(ees[0]!.get('GLUE2ExecutionEnvironmentVirtualMemorySize'), ['16384'], 'images[].virtual_memory_mb');
  t.same(ees[1]!.get('GLUE2ExecutionEnvironmentVirtualMemorySize'), ['8192'], 'default: memory_mb.max');
});

t.test('wnod check\'s EGI profile warnings: OS names and platforms outside the lists', async (t) => {
  t.same(egiProfileWarnings(cfg), [], 'ScientificSL and Debian on x86_64 pass');
  const w = egiProfileWarnings({ images: [image('vm_el9'), image('vm_arm', { arch: 'aarch64', os: { family: 'linux', name: 'Ubuntu', version: '24.04' } }),
    image('vm_hidden', { published: false, os: { family: 'plan9', name: 'Plan9', version: '4' } })] });
  t.equal(w.length, 2);
  t.match(w[0], /images\[0\] \(vm_el9\)\.os\.name: "AlmaLinux" is not in the EGI profile's OSName list/);
  t.match(w[1], /images\[1\] \(vm_arm\)\.arch: aarch64 is published as Platform "aarch64", which is not in the EGI profile's list/);
});

t.test('a fallback after a bad config re-stamps GLUE2EntityCreationTime (the entries never go obsolete)', async (t) => {
  const d = await mkdtemp(join(tmpdir(), 'wop-glue-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  const config = join(d, 'wnod.yaml');
  const lastGood = join(d, 'lg.ldif');
  await writeFile(config, siteYaml({ host: 'ce.test.org', ids: ['vm_sl6', 'vm_el9'], lastGood }));
  const run = async (now: string) => {
    const io = { out: '', err: [] as string[] };
    const sink: InfoProviderIo = { stdout: async (s) => { io.out += s; }, stderr: (l) => { io.err.push(l); }, now: () => new Date(now) };
    const code = await runInfoProvider('provider', ['--config', config, '--last-good', lastGood], sink);
    return { code, ...io };
  };
  const good = await run('2026-12-01T00:00:00.000Z');
  t.equal(good.code, 0, good.err.join('\n'));
  t.equal(good.out.match(/^GLUE2EntityCreationTime: 2026-12-01T00:00:00Z$/gm)?.length, 4);
  await writeFile(config, 'site:\n  name: [unclosed\n'); // a typo, two days later
  const bad = await run('2026-12-03T00:00:00.000Z');
  t.equal(bad.code, 1);
  t.match(bad.err.join('\n'), /re-emitting the last good output .*\(creation time: now\)/);
  t.notMatch(bad.out, /2026-12-01T00:00:00Z/, 'the old creation time is gone');
  t.equal(bad.out.match(/^GLUE2EntityCreationTime: 2026-12-03T00:00:00Z$/gm)?.length, 4, 'every entry stamped with the time of this run');
  t.equal(bad.out, good.out.replaceAll('2026-12-01T00:00:00Z', '2026-12-03T00:00:00Z'), 'otherwise the last good output, byte for byte');
  matchGolden(t, bad.out, new URL('fallback.provider.ldif', GOLDEN).pathname);
  t.equal(restampCreationTime('GLUE2EntityName: GLUE2EntityCreationTime: x\n', new Date(0)), 'GLUE2EntityName: GLUE2EntityCreationTime: x\n', 'only whole attribute lines');
});

t.test('config: glue.*_scaling_factor and images[].virtual_memory_mb are checked', async (t) => {
  const base = siteYaml({ host: 'ce.test.org', ids: ['vm_a'], lastGood: '/var/cache/wnod/lg.ldif' });
  const parsed = parseConfig(base, 'x.yaml');
  t.equal(parsed.glue.cpuTimeScalingFactor, 1);
  t.equal(parsed.glue.wallTimeScalingFactor, 1);
  t.equal(parsed.images[0]!.virtualMemoryMB, undefined);
  const withKeys = base.replace('  per_vo_tags:', '  cpu_time_scaling_factor: 1.5\n  wall_time_scaling_factor: 2\n  per_vo_tags:')
    .replace('    disk_gb:', '    virtual_memory_mb: 12000\n    disk_gb:');
  const c = parseConfig(withKeys, 'x.yaml');
  t.equal(c.glue.cpuTimeScalingFactor, 1.5);
  t.equal(c.glue.wallTimeScalingFactor, 2);
  t.equal(c.images[0]!.virtualMemoryMB, 12000);
  t.throws(() => parseConfig(base.replace('  per_vo_tags:', '  cpu_time_scaling_factor: 0\n  per_vo_tags:'), 'x.yaml'), /cpu_time_scaling_factor.*must be above 0/);
  t.throws(() => parseConfig(base.replace('  per_vo_tags:', '  wall_time_scaling_factor: fast\n  per_vo_tags:'), 'x.yaml'), /wall_time_scaling_factor.*expected a number/);
  t.throws(() => parseConfig(base.replace('    disk_gb:', '    virtual_memory_mb: 1.5\n    disk_gb:'), 'x.yaml'), /virtual_memory_mb/);
});
