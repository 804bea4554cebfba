// APEL messages from the accounting records: individual job records (v0.3) for batch jobs, cloud records (v0.4) for
// lease pilots, matched against golden files and checked with apel's own rules (field lists, mandatory fields,
// integer fields, record separators) as apel/db/records/{job,cloud}.py define them.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { apelJobMessage, apelCloudMessage, parseFqan, JOB_MSG_HEADER, CLOUD_MSG_HEADER } from '../src/accounting/apel.js';
import { appendRecord } from '../src/accounting/store.js';
import { validateRecord, type AccountingRecord } from '../src/accounting/record.js';
import { accountingRecord } from '../src/job/finish.js';
import { matchGolden } from './kit/golden.js';
import { makeTestSite } from './kit/site.js';
import { wnod, ensureBuilt } from './kit/cli.js';

const GOLDEN = join(import.meta.dirname, 'golden');
const site = { name: 'WNOD-TEST', ceHost: 'ce.wnod.test', lrm: 'torque' };

const rec = (over: Partial<AccountingRecord> = {}): AccountingRecord => ({
  v: 1, jobId: '17.ce.wnod.test', user: 'atlas001', dn: '/DC=org/DC=example/CN=Alice Doe', fqan: '/atlas/Role=production', vo: 'atlas',
  image: 'vm_sl6', digest: 'a'.repeat(64), cpus: 2, memoryMB: 4096, bootS: 3.4, runS: 3600.6, teardownS: 1.2, exitStatus: 0, vmCpuS: 7000.4,
  end: '2026-11-20T10:00:01.200Z', node: 'wn1.wnod.test', mode: 'vm', ...over,
});

const records: AccountingRecord[] = [
  rec(),
  rec({ jobId: '18.ce.wnod.test', user: 'dteam001', dn: '/DC=org/DC=example/CN=Bob', fqan: '/dteam', vo: 'dteam', image: 'vm_el9', cpus: 1,
    memoryMB: 2048, runS: 59.5, vmCpuS: 12, end: '2026-11-20T11:00:00.000Z' }),
  rec({ jobId: '19.ce.wnod.test', user: 'local1', dn: '', fqan: '', vo: '', image: '', digest: '', mode: 'bare', memoryMB: 0, bootS: 0,
    teardownS: 0, runS: 10, vmCpuS: 9.6, end: '2026-11-20T12:00:00.000Z' }),
  rec({ jobId: '20.ce.wnod.test', lease: 'l0123456789', image: 'vm_el9', runS: 7200, bootS: 5, teardownS: 2, vmCpuS: 300, cpus: 4, memoryMB: 8192,
    end: '2026-11-20T14:00:07.000Z' }),
];

/** apel's rules for a message (record.py get_msg/load_from_msg, job.py, cloud.py): header, records ended by %%,
 * `Key: value` lines with known keys, mandatory keys present, integer fields integers, StartTime <= EndTime. */
function checkApel(t: Test, text: string, kind: 'job' | 'cloud'): Record<string, string>[] {
  const spec = kind === 'job' ? {
    header: 'APEL-individual-job-message: v0.3', mandatory: ['Site', 'LocalJobId', 'WallDuration', 'CpuDuration', 'StartTime', 'EndTime'],
    fields: ['Site', 'SubmitHost', 'MachineName', 'Queue', 'LocalJobId', 'LocalUserId', 'GlobalUserName', 'FQAN', 'VO', 'VOGroup', 'VORole',
      'WallDuration', 'CpuDuration', 'Processors', 'NodeCount', 'StartTime', 'EndTime', 'InfrastructureDescription', 'InfrastructureType',
      'MemoryReal', 'MemoryVirtual', 'ServiceLevelType', 'ServiceLevel'],
    ints: ['WallDuration', 'CpuDuration', 'Processors', 'NodeCount', 'MemoryReal', 'MemoryVirtual', 'StartTime', 'EndTime'],
  } : {
    header: 'APEL-cloud-message: v0.4', mandatory: ['VMUUID', 'SiteName'],
    fields: ['RecordCreateTime', 'VMUUID', 'SiteName', 'CloudComputeService', 'MachineName', 'LocalUserId', 'LocalGroupId', 'GlobalUserName',
      'FQAN', 'Status', 'StartTime', 'EndTime', 'SuspendDuration', 'WallDuration', 'CpuDuration', 'CpuCount', 'NetworkType', 'NetworkInbound',
      'NetworkOutbound', 'PublicIPCount', 'Memory', 'Disk', 'BenchmarkType', 'Benchmark', 'StorageRecordId', 'ImageId', 'CloudType'],
    ints: ['SuspendDuration', 'WallDuration', 'CpuDuration', 'NetworkInbound', 'NetworkOutbound', 'PublicIPCount', 'Memory', 'Disk',
      'RecordCreateTime', 'StartTime', 'EndTime'],
  };
  const [header, ...rest] = text.split('\n');
  t.equal(header, spec.header);
  t.ok(text.endsWith('%%\n'), 'the last record ends with %%');
  const out: Record<string, string>[] = [];
  for (const block of rest.join('\n').split('%%\n').slice(0, -1)) {
    const r: Record<string, string> = {};
    const keys: string[] = [];
    for (const line of block.split('\n').filter((l) => l !== '')) {
      const m = /^([A-Za-z]+): (.+)$/.exec(line);
      t.ok(m, `a Key: value line: ${line}`);
      if (!m) continue;
      t.ok(spec.fields.includes(m[1]!), `${m[1]} is an apel ${kind} field`);
      t.notOk(m[1]! in r, `${m[1]} once`);
      r[m[1]!] = m[2]!;
      keys.push(m[1]!);
    }
    t.same(keys, [...keys].sort((a, b) => spec.fields.indexOf(a) - spec.fields.indexOf(b)), 'fields in apel\'s order');
    for (const k of spec.mandatory) t.ok(r[k], `mandatory ${k}`);
    for (const k of spec.ints) if (k in r) t.match(r[k], /^\d+$/, `${k} is an integer`);
    if (r.StartTime && r.EndTime) t.ok(Number(r.StartTime) <= Number(r.EndTime), 'StartTime <= EndTime');
    out.push(r);
  }
  return out;
}

t.test('parseFqan is apel\'s parse_fqan', async (t) => {
  t.same(parseFqan('/atlas/Role=production/Capability=NULL'), { vo: 'atlas', group: '/atlas', role: 'Role=production' });
  t.same(parseFqan('/atlas/higgs/Role=NULL'), { vo: 'atlas', group: '/atlas/higgs', role: 'Role=NULL' });
  t.same(parseFqan('/dteam'), { vo: 'dteam', group: '/dteam' });
  t.same(parseFqan('dteam'), { vo: 'dteam' });
  t.same(parseFqan('/cms/Role=pilot;/cms'), { vo: 'cms', group: '/cms', role: 'Role=pilot' });
});

t.test('job records: golden message, apel\'s rules, leases left out', async (t) => {
  const m = apelJobMessage(records, site);
  t.equal(m.records, 3);
  t.same(m.skipped, []);
  matchGolden(t, m.text, join(GOLDEN, 'apel-jobs.txt'));
  const recs = checkApel(t, m.text, 'job');
  t.equal(recs[0]!.VO, 'atlas');
  t.equal(recs[0]!.VOGroup, '/atlas');
  t.equal(recs[0]!.VORole, 'Role=production');
  t.equal(recs[0]!.WallDuration, '3601', 'seconds, rounded');
  t.equal(recs[0]!.MemoryReal, String(4096 * 1024), 'kB');
  t.equal(recs[0]!.EndTime, String(Date.parse('2026-11-20T10:00:00.000Z') / 1000), 'the run ended before the teardown');
  t.equal(recs[2]!.InfrastructureType, 'local', 'a job without a grid identity');
  t.notOk('GlobalUserName' in recs[2]!, 'empty fields are left out, as apel does');
  t.notOk(m.text.includes('l0123456789'), 'the lease pilot is a cloud record, not a job record');
});

t.test('cloud records for leases: golden message, apel\'s rules', async (t) => {
  const m = apelCloudMessage(records, site, new Date('2026-11-21T00:00:00.000Z'));
  t.equal(m.records, 1);
  matchGolden(t, m.text, join(GOLDEN, 'apel-cloud.txt'));
  const [r] = checkApel(t, m.text, 'cloud');
  t.equal(r!.WallDuration, '7207', 'boot + run + teardown');
  t.equal(Number(r!.EndTime) - Number(r!.StartTime), 7207);
  t.equal(r!.Memory, '8192', 'MB');
  t.equal(r!.CpuCount, '4');
  t.equal(r!.ImageId, 'vm_el9');
  t.equal(r!.Status, 'completed');
  t.equal(apelCloudMessage(records.slice(0, 3), site, new Date()).text, '', 'no lease: no message');
});

t.test('a value with a line break is left out with the reason, never forging fields', async (t) => {
  const m = apelJobMessage([rec({ dn: '/CN=x\nSite: EVIL' }), rec({ jobId: '2.ce' })], site);
  t.equal(m.records, 1);
  t.equal(m.skipped.length, 1);
  t.match(m.skipped[0]!.message, /17\.ce\.wnod\.test: GlobalUserName contains a control character/);
  t.notOk(m.text.includes('EVIL'));
});

t.test('the epilogue\'s record carries the lease of a pilot (admission records it)', async (t) => {
  const r = accountingRecord({ jobId: '20.ce', user: 'u', group: 'g', exitStatus: 0, holds: {}, used: { wallS: 5 } } as never,
    { v: 1, jobId: '20.ce', user: 'u', attempts: 0, mode: 'vm', lease: 'l0123456789' }, 1, 2, new Date('2026-11-20T00:00:00Z'), 'wn1');
  t.equal(r?.lease, 'l0123456789');
  t.ok(validateRecord(r));
  t.throws(() => validateRecord({ ...r, lease: '../x' }), /field lease/);
});

t.test('wnod accounting --format apel|apel-cloud from the site config', async (t) => {
  await ensureBuilt();
  const dir = await mkdtemp(join(tmpdir(), 'wop-apel-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const s = await makeTestSite(dir);
  for (const r of records) await appendRecord(join(dir, 'accounting.jsonl'), r);
  const jobs = await wnod(['accounting', '--format', 'apel', '--config', s.configPath]);
  t.equal(jobs.exitCode, 0, jobs.stderr);
  t.equal(`${jobs.stdout}\n`, apelJobMessage(records, site).text);
  const cloud = await wnod(['accounting', '--format', 'apel-cloud', '--config', s.configPath]);
  t.equal(cloud.exitCode, 0, cloud.stderr);
  checkApel(t, `${cloud.stdout}\n`, 'cloud');
  t.match(cloud.stdout, new RegExp(`^${CLOUD_MSG_HEADER}\n`));
  t.match(jobs.stdout, new RegExp(`^${JOB_MSG_HEADER}\n`));
  const bad = await wnod(['accounting', '--format', 'car', '--config', s.configPath]);
  t.equal(bad.exitCode, 2);
});
