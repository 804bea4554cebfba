// Leases authorised by a VOMS proxy (real proxies from voms-proxy-fake), as on a submit host whose users' group
// may read the ticket key (ticket.key_group): the pilot carries a signed ticket, the worker node (its own config,
// root-only key) verifies it and boots the image the proxy's VO may use — one the user's unix group may not.
// VMs booted here: 1.
import t from 'tap';
import { chmod, chown, copyFile, mkdtemp, readFile, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parse, stringify } from 'yaml';
import { makeTestPki, makeProxy, tamperAcInPlace, type TestPki } from './kit/pki.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { readRecords } from '../src/accounting/store.js';
import { vmHostname } from '../src/vm/qemu.js';
import { vmIdForJob } from '../src/vm/state.js';
import { loadConfig } from '../src/config/load.js';
import { makeLeaseSite, type LeaseSite } from './kit/leaseSite.js';

let s: LeaseSite;
let pki: TestPki;
let pkiDir: string;
let ceConfig: string;

/** A proxy file the lease user owns (0600), as voms-proxy-init leaves it. */
async function userProxy(path: string, name: string): Promise<string> {
  const p = join(s.dir, 'keys', name);
  await copyFile(path, p);
  await chown(p, s.user.uid, s.user.gid);
  await chmod(p, 0o600);
  return p;
}

t.before(async () => {
  pkiDir = await mkdtemp(join(tmpdir(), 'wnod-lease-pki-'));
  pki = await makeTestPki(pkiDir, { vo: 'testvo' });
  // the user reads the trust anchors (never the CA keys: only these two directories and their parents)
  await chmod(pkiDir, 0o711);
  await execa('chmod', ['-R', 'a+rX', pki.vomsdir, pki.certdir]);
  s = await makeLeaseSite({
    userName: 'wnodproxy', vomsdir: pki.vomsdir, certdir: pki.certdir,
    rules: (group) => [{ name: 'leasers', group, images: ['vm_test'], default: 'vm_test' }, { name: 'testvo-leases', vo: 'testvo', images: ['*'], default: 'vm_test' }],
  });
  // the submit host's config: the same site, the key readable by the users' group (key_group); the node keeps 0600
  const ceKey = join(s.dir, 'ce-ticket.key');
  await copyFile(s.site.keyPath, ceKey);
  await chown(ceKey, 0, s.user.gid);
  await chmod(ceKey, 0o640);
  const doc = parse(await readFile(s.site.configPath, 'utf8')) as Record<string, Record<string, unknown>>;
  doc.ticket = { ...doc.ticket, key_file: ceKey, key_group: s.user.group };
  ceConfig = join(s.dir, 'ce.yaml');
  await writeFileAtomic(ceConfig, stringify(doc), 0o644);
});

t.teardown(async () => {
  if (s) {
    await s.close();
    await rm(s.registry, { recursive: true, force: true });
  }
  if (pkiDir) await rm(pkiDir, { recursive: true, force: true });
});

t.test('a verified proxy authorises what the unix group may not; the pilot carries a ticket the node verifies', async (t) => {
  const proxy = await userProxy(await makeProxy(pki, { vo: 'testvo', fqans: ['/testvo'] }), 'proxy.pem');
  const byGroup = await s.lease(['create', '--image', 'vm_other', '--ssh-key', s.pubKey, '--json', '--config', ceConfig]);
  t.equal(byGroup.exitCode, 1, 'without the proxy: the group rule refuses vm_other');
  const r = await s.lease(['create', '--image', 'vm_other', '--ssh-key', s.pubKey, '--proxy', proxy, '--json', '--config', ceConfig]);
  t.equal(r.exitCode, 0, `created (stderr: ${r.stderr.slice(0, 300)})`);
  const l = JSON.parse(r.stdout) as { id: string; state: string; jobId: string; address: string; hostKey: string; ticket: boolean; authorisedBy: string; rule: string; image: string };
  t.match(l, { state: 'ready', image: 'vm_other', ticket: true, authorisedBy: 'proxy', rule: 'testvo-leases' });
  const ssh = await s.ssh(l.address, l.hostKey, 'hostname');
  t.equal(ssh.stdout, vmHostname(vmIdForJob(l.jobId)), 'ssh into the VM');
  const d = JSON.parse((await s.lease(['delete', l.id, '--json'])).stdout) as { state: string };
  t.equal(d.state, 'released');
  await s.lrm.wait(l.jobId);
  // every lease is a job: accounted with the proxy's identity, as grid jobs are
  const cfg = await loadConfig(s.site.configPath);
  const rec = (await readRecords(cfg.accountingFile)).records.find((x) => x.jobId === l.jobId);
  t.match(rec, { image: 'vm_other', vo: 'testvo', fqan: '/testvo/Role=NULL/Capability=NULL', dn: /Alice/, mode: 'vm' });
  t.same(await s.hypervisors(), [], 'no VM left');
});

t.test('refusals before submission: bad proxies, and a proxy-only grant where this host cannot sign', async (t) => {
  const before = await readdir(join(s.lrm.spool, 'jobs'));
  const good = await userProxy(await makeProxy(pki, { vo: 'testvo', fqans: ['/testvo'] }), 'proxy2.pem');
  const tampered = await userProxy(await tamperAcInPlace(good, join(pkiDir, 'tampered.pem')), 'tampered.pem');
  const r1 = await s.lease(['create', '--image', 'vm_other', '--ssh-key', s.pubKey, '--proxy', tampered, '--json', '--config', ceConfig]);
  t.equal(r1.exitCode, 1);
  t.match(JSON.parse(r1.stdout), { error: 'denied', reason: /could not be verified \(bad-ac-signature: / });
  const expired = await userProxy(await makeProxy(pki, { vo: 'testvo', fqans: ['/testvo'], acHours: 1, acPast: '2:00' }), 'expired.pem');
  const r2 = await s.lease(['create', '--image', 'vm_other', '--ssh-key', s.pubKey, '--proxy', expired, '--config', ceConfig]);
  t.match(r2.stderr, /\(expired-ac: /);
  // the node's own config: the key is root-only, so the pilot could only go without a ticket, and then the node
  // would give the group's default image instead of vm_other: refused now, saying what the site would give
  const r3 = await s.lease(['create', '--image', 'vm_other', '--ssh-key', s.pubKey, '--proxy', good]);
  t.equal(r3.exitCode, 1);
  t.match(r3.stderr, /cannot sign a lease ticket for you; without one, the site gives group \S+ only image vm_test/);
  t.same(await readdir(join(s.lrm.spool, 'jobs')), before, 'nothing reached the batch system');
});
