import t from 'tap';
import { mkdtemp, writeFile, chmod, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkAndRecordNonce, loadTicketKey, newNonce, signTicket, ticketImage, verifyTicket,
  type TicketClaims,
} from '../src/ticket/index.js';
import { findTicketLine } from '../src/header/scriptHeader.js';
import type { Image } from '../src/config/types.js';

const key = Buffer.from('k'.repeat(64));
const now = new Date('2026-11-22T12:00:00Z');
const t0 = Math.floor(now.getTime() / 1000);

function claims(over: Partial<TicketClaims> = {}): TicketClaims {
  return { v: 1, image: 'vm_sl6', digest: 'd'.repeat(64), account: 'dteam001', dn: '/DC=org/CN=Alice', fqan: '/dteam/Role=NULL/Capability=NULL',
    vo: 'dteam', cpus: 1, memoryMB: 2048, rule: 'dteam', ce: 'ce.example.org', iat: t0, exp: t0 + 3600, nonce: newNonce(), ...over };
}

t.test('a signed ticket verifies and round-trips its claims', async (t) => {
  const c = claims();
  t.same(verifyTicket(signTicket(c, key), key, now), c);
});

t.test('any change to payload or signature, or another key, is a bad signature', async (t) => {
  const tok = signTicket(claims(), key);
  const [p, s] = tok.split('.') as [string, string];
  const other = signTicket(claims({ image: 'vm_el9' }), key).split('.')[0]!;
  t.throws(() => verifyTicket(`${other}.${s}`, key, now), { code: 'bad-signature' }, 'claims swapped under an old MAC');
  const flipped = s.slice(0, 5) + (s[5] === 'A' ? 'B' : 'A') + s.slice(6);
  t.throws(() => verifyTicket(`${p}.${flipped}`, key, now), { code: 'bad-signature' });
  t.throws(() => verifyTicket(tok, Buffer.from('x'.repeat(64)), now), { code: 'bad-signature' });
  t.throws(() => verifyTicket('garbage', key, now), { code: 'malformed' });
  t.throws(() => verifyTicket(`${p}.${s}.x`, key, now), { code: 'malformed' });
});

t.test('expiry and issue time are enforced with a 5 minute skew', async (t) => {
  t.throws(() => verifyTicket(signTicket(claims({ exp: t0 - 1 }), key), key, now), { code: 'expired' });
  t.throws(() => verifyTicket(signTicket(claims({ iat: t0 + 301 }), key), key, now), { code: 'not-yet-valid' });
  t.ok(verifyTicket(signTicket(claims({ iat: t0 + 299 }), key), key, now));
});

t.test('a correctly signed ticket with a wrong shape is still refused', async (t) => {
  const bad = { ...claims(), extra: 1 } as unknown as TicketClaims;
  t.throws(() => verifyTicket(signTicket(bad, key), key, now), { code: 'malformed' });
  const noNum = { ...claims(), cpus: '1' } as unknown as TicketClaims;
  t.throws(() => verifyTicket(signTicket(noNum, key), key, now), { code: 'malformed' });
  t.throws(() => verifyTicket(signTicket(claims({ nonce: '../../etc/passwd' }), key), key, now), { code: 'malformed' });
});

t.test('findTicketLine reads only the leading header block, first wnod line wins', async (t) => {
  t.same(findTicketLine('#!/bin/bash\n#PBS -q wnod\n# wnod-ticket: abc.def\n# wnod-deny: x\n'), { ticket: 'abc.def' });
  t.same(findTicketLine('#!/bin/bash\n\n# wnod-deny: not allowed\r\n'), { deny: 'not allowed' });
  t.same(findTicketLine('#!/bin/bash\necho hi\n# wnod-ticket: abc.def\n'), {}, 'a line after the first command belongs to the job');
  t.same(findTicketLine(''), {});
});

t.test('ticketImage refuses an image that left the catalog or changed digest', async (t) => {
  const img = { id: 'vm_sl6', digest: 'd'.repeat(64) } as Image;
  t.equal(ticketImage(claims(), [img]), img);
  t.throws(() => ticketImage(claims(), [{ ...img, digest: 'e'.repeat(64) }]), { code: 'stale-image' });
  t.throws(() => ticketImage(claims(), []), { code: 'stale-image' });
});

t.test('loadTicketKey refuses keys others or foreign groups can read', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-key-'));
  const f = join(dir, 'key');
  await writeFile(f, 'z'.repeat(64));
  await chmod(f, 0o600);
  t.equal((await loadTicketKey(f)).length, 64);
  await chmod(f, 0o644);
  await t.rejects(loadTicketKey(f), { code: 'bad-key', message: /accessible by others/ });
  await chmod(f, 0o640);
  await t.rejects(loadTicketKey(f), { code: 'bad-key', message: /group-accessible/ });
  await t.resolves(loadTicketKey(f, { allowGroup: 'root' }), 'group-readable by the named group (root here) is accepted on a CE');
  await chmod(f, 0o660);
  await t.rejects(loadTicketKey(f, { allowGroup: 'root' }), { code: 'bad-key' }, 'never group-writable');
  await writeFile(join(dir, 'short'), 'abc');
  await chmod(join(dir, 'short'), 0o600);
  await t.rejects(loadTicketKey(join(dir, 'short')), { message: /shorter than 32 bytes/ });
  await t.rejects(loadTicketKey(join(dir, 'missing')), { message: /does not exist/ });
});

t.test('a nonce is accepted once per node, also under a race', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-nonce-'));
  const c = claims();
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => checkAndRecordNonce(dir, c, now)));
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one of 8 racing uses passes');
  await t.rejects(checkAndRecordNonce(dir, c, now), { code: 'replayed' });
  t.same(await readdir(dir), [c.nonce]);
});
