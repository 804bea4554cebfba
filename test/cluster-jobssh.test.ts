// The per-job ssh keys (pure derivation, checked against OpenSSH's own ssh-keygen) and the site secret's checks.
import t from 'tap';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { jobSshKeys, knownHosts, readJobSecret } from '../src/cluster/jobSsh.js';

const secret = Buffer.alloc(32, 7);

t.test('every node derives the same keys for a job; another job, user or secret gets others', async (t) => {
  const a = jobSshKeys(secret, '42', 1000);
  t.same(jobSshKeys(Buffer.from(secret), '42', 1000), a, 'deterministic: each node computes it alone');
  t.not(jobSshKeys(secret, '43', 1000).user.publicKey, a.user.publicKey, 'another job');
  t.not(jobSshKeys(secret, '42', 1001).user.publicKey, a.user.publicKey, 'the same job id for another user');
  t.not(jobSshKeys(Buffer.alloc(32, 8), '42', 1000).user.publicKey, a.user.publicKey, 'another site secret');
  t.not(a.host.publicKey, a.user.publicKey, 'host and user keys differ');
  t.throws(() => jobSshKeys(Buffer.alloc(16), '42', 1000), /at least 32 bytes/);
  const hk = a.host.publicKey.split(' ').slice(0, 2).join(' ');
  t.equal(knownHosts(a.host, [{ name: 'vm0', ip: '10.0.0.1' }, { name: 'vm1', ip: '10.0.0.2' }]), `vm0 ${hk}\n10.0.0.1 ${hk}\nvm1 ${hk}\n10.0.0.2 ${hk}\n`);
});

t.test('the private key is a valid OpenSSH key whose public half is the one we publish', async (t) => {
  const keygen = await execa('ssh-keygen', ['-?'], { reject: false });
  if (keygen.code === 'ENOENT') { t.comment('skipped: no ssh-keygen'); return; }
  const dir = await mkdtemp(join(tmpdir(), 'wmn-ssh-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const k = jobSshKeys(secret, '42', 1000);
  for (const [name, pair] of Object.entries(k)) {
    const f = join(dir, name);
    await writeFile(f, pair.privateKey, { mode: 0o600 });
    const r = await execa('ssh-keygen', ['-y', '-f', f]);
    t.equal(r.stdout.trim().split(' ').slice(0, 2).join(' '), pair.publicKey.split(' ').slice(0, 2).join(' '), `${name}: ssh-keygen reads it`);
  }
});

t.test('the site secret must be root-only and long enough', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wmn-sec-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const f = join(dir, 's');
  await writeFile(f, secret, { mode: 0o600 });
  if (process.getuid?.() === 0) t.same(await readJobSecret(f), secret);
  await chmod(f, 0o640);
  await t.rejects(readJobSecret(f), { code: 'jobnet-secret' }, 'group-readable');
  await writeFile(join(dir, 'short'), 'x', { mode: 0o600 });
  await t.rejects(readJobSecret(join(dir, 'short')), { code: 'jobnet-secret', message: /32\.\.4096 bytes/ });
  await t.rejects(readJobSecret(join(dir, 'none')), { code: 'jobnet-secret' });
});
