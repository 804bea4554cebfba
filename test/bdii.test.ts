// Integration against a REAL BDII (Debian slapd + bdii-update, patched copy) started by the test: our shims installed
// by `wnod install bdii`, the data checked with ldapts, `wnod find` run against it.
import t from 'tap';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBdii, staticCeLdif, type RunningBdii } from './kit/bdii.js';
import { siteYaml } from './glue-fixtures.js';
import { ensureBuilt } from './kit/cli.js';

const ROOT = new URL('..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const HOST = 'ce.test.org';
const CE = `${HOST}:8443/cream-pbs-wnod`;
const RTE = 'GlueHostApplicationSoftwareRunTimeEnvironment';

let bdii: RunningBdii;
let dir: string;

t.before(async () => {
  await ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wnod-bdii-test-'));
  bdii = await startBdii({ staticLdif: staticCeLdif({ host: HOST, queue: 'wnod', vos: ['dteam', 'atlas'] }), breatheS: 2 });
});
t.teardown(async () => {
  await bdii?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const asList = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)]);

t.test('the RTE tags and the GLUE2 entries reach the real BDII, with no rejected entry', async (t) => {
  const cfg = join(dir, 'wnod.yaml');
  await writeFile(cfg, siteYaml({ host: HOST, ids: ['vm_sl6', 'vm_el-9.4'], lastGood: join(dir, 'lg', 'glue.ldif'), perVoTags: true, vos: ['dteam'] }));
  const inst = await execa('node', [CLI, 'install', 'bdii', '--gip-dir', bdii.gipDir, '--config', cfg, '--prefix', ROOT], { reject: false });
  t.equal(inst.exitCode, 0, inst.stderr);

  const tags = await bdii.waitFor(async (c) => {
    const r = await c.search('o=grid', { filter: '(objectClass=GlueSubCluster)', attributes: [RTE] });
    const v = asList(r.searchEntries[0]?.[RTE]);
    return v.includes('vm_sl6') ? v : undefined;
  }, 60_000, 'the image tags on the SubCluster');
  t.same(tags, ['GLITE-3_2_0', 'vm_sl6', 'vm_el-9.4', 'VO-dteam-vm_sl6', 'VO-dteam-vm_el-9.4'], 'static tag kept, ours appended');

  const glue2 = await bdii.waitFor(async (c) => {
    const ae = await c.search('o=glue', { filter: '(objectClass=GLUE2ApplicationEnvironment)' });
    const ee = await c.search('o=glue', { filter: '(objectClass=GLUE2ExecutionEnvironment)' });
    return ae.searchEntries.length === 2 && ee.searchEntries.length === 2 ? { ae: ae.searchEntries, ee: ee.searchEntries } : undefined;
  }, 30_000, 'the GLUE2 entries');
  const ae = glue2.ae.find((e) => e['GLUE2EntityName'] === 'vm_el-9.4')!;
  t.ok(ae, 'the versioned image has its AE');
  t.equal(ae['GLUE2ApplicationEnvironmentAppName'], 'vm_el');
  t.equal(ae['GLUE2ApplicationEnvironmentAppVersion'], '9.4');
  t.equal(ae['GLUE2ApplicationEnvironmentComputingManagerForeignKey'], `${HOST}_ComputingElement_Manager`);
  t.match(String(ae['GLUE2EntityCreationTime']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const ee = glue2.ee.find((e) => e['GLUE2ResourceID'] === ae['GLUE2ApplicationEnvironmentExecutionEnvironmentForeignKey'])!;
  t.ok(ee, 'the AE points at its EE');
  t.equal(ee['GLUE2ExecutionEnvironmentVirtualMachine'], 'true');
  t.equal(ee['GLUE2ExecutionEnvironmentPlatform'], 'amd64');
  // what EGI's glue-validator requires of every EE (issue 15), accepted by the real schema
  t.equal(ee['GLUE2ExecutionEnvironmentCPUTimeScalingFactor'], '1');
  t.equal(ee['GLUE2ExecutionEnvironmentWallTimeScalingFactor'], '1');
  t.equal(ee['GLUE2ExecutionEnvironmentVirtualMemorySize'], '8192');
  t.match(ee.dn, new RegExp(`,GLUE2ServiceID=${HOST}_ComputingElement,GLUE2GroupID=resource,o=glue$`, 'i'));

  // The data is visible before bdii-update logs the end of its cycle: wait for that line (bounded).
  let log = await bdii.log();
  for (let i = 0; i < 80 && !/FailedModifies: /.test(log); i++) {
    await new Promise((r) => setTimeout(r, 250));
    log = await bdii.log();
  }
  t.notMatch(log, /WARNING/, 'no entry or modify was rejected');
  t.notMatch(log, /\[ERROR\]/);
  t.match(log, /FailedModifies: 0/);
});

t.test('wnod find returns the CE from both GLUE versions; VO and image filters apply', async (t) => {
  const r = await execa('node', [CLI, 'find', '--bdii', bdii.url, '--image', 'VM_SL6', '--json'], { reject: false });
  t.equal(r.exitCode, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ces: { ce: string; images: string[]; source: string; vos: string[]; endpoints: string[] }[] };
  t.equal(out.ces.length, 1);
  t.same(out.ces[0], {
    ce: CE, host: HOST, images: ['vm_sl6'], vos: ['dteam', 'atlas'], source: 'both',
    glue2Service: `${HOST}_ComputingElement`, endpoints: [`https://${HOST}:8443/ce-cream/services`],
  });
  const all = JSON.parse((await execa('node', [CLI, 'find', '--bdii', bdii.url, '--vo', 'atlas', '--json'])).stdout);
  t.same(all.ces[0].images, ['vm_sl6', 'vm_el-9.4'], 'without --image: the VM images');
  t.same(JSON.parse((await execa('node', [CLI, 'find', '--bdii', bdii.url, '--vo', 'cms', '--json'])).stdout).ces, []);
  t.same(JSON.parse((await execa('node', [CLI, 'find', '--bdii', bdii.url, '--image', 'vm_none', '--json'])).stdout).ces, []);
  const text = await execa('node', [CLI, 'find', '--bdii', bdii.url, '--image', 'vm_sl6']);
  t.match(text.stdout, new RegExp(`^${CE.replace(/\./g, '\\.')}  images=vm_sl6  vos=dteam,atlas  \\(GLUE 1\\.3\\+2\\.0\\)$`, 'm'));
});

t.test('the log check can fail: an entry slapd rejects shows up as a WARNING', async (t) => {
  const bad = join(bdii.gipDir, 'provider', 'zz-bad');
  // A GLUE2ApplicationEnvironment without its MUST AppName: schema-invalid.
  await writeFile(bad, `#!/bin/sh\nprintf 'dn: GLUE2ApplicationEnvironmentID=bad,GLUE2ManagerID=${HOST}_ComputingElement_Manager,GLUE2ServiceID=${HOST}_ComputingElement,GLUE2GroupID=resource,o=glue\\nobjectClass: GLUE2ApplicationEnvironment\\nGLUE2ApplicationEnvironmentID: bad\\nGLUE2ApplicationEnvironmentComputingManagerForeignKey: x\\n\\n'\n`);
  await chmod(bad, 0o755);
  t.teardown(() => rm(bad, { force: true }));
  const deadline = Date.now() + 30_000;
  let log = '';
  while (Date.now() < deadline && !/\[WARNING\] ldap_add/.test(log)) {
    await new Promise((r) => setTimeout(r, 500));
    log = await bdii.log();
  }
  t.match(log, /\[WARNING\] ldap_add: Object class violation/);
});

t.test('an unreachable or silent BDII gives a clear error within the timeout (exit 1)', async (t) => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  const refused = await execa('node', [CLI, 'find', '--bdii', `ldap://127.0.0.1:${port}`, '--timeout', '5'], { reject: false });
  t.equal(refused.exitCode, 1);
  t.match(refused.stderr, new RegExp(`wnod find: cannot query BDII ldap://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));

  // A server that accepts and never answers (a hung slapd).
  const sockets: Socket[] = [];
  const silent = createServer((s) => { sockets.push(s); });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => { sockets.forEach((s) => s.destroy()); silent.close(); });
  const hung = await execa('node', [CLI, 'find', '--bdii', `ldap://127.0.0.1:${(silent.address() as { port: number }).port}`, '--timeout', '1'],
    { reject: false, timeout: 30_000 });
  t.equal(hung.exitCode, 1);
  t.match(hung.stderr, /did not answer within 1 s/);
  t.equal(hung.stdout, '');
});
