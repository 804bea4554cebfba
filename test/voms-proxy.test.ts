// VOMS verification against real proxies made at test time: voms-proxy-fake (Debian voms-clients) for proxies and
// ACs from a throwaway CA and AA; openssl for delegated, grafted and re-signed proxies.
import t from 'tap';
import { rm } from 'node:fs/promises';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run } from '../src/util/run.js';
import { verifyProxyFile, verifyProxyPem, VomsError, type VerifyOptions, type VomsIdentity } from '../src/voms/index.js';
import { parseCertificate } from '../src/voms/cert.js';
import { parsePem } from '../src/voms/pem.js';
import { nameHash, nameToString } from '../src/voms/name.js';
import { decodeAcExtension } from '../src/voms/ac.js';
import { parseDer } from '../src/voms/der.js';
import { checkAcBody } from '../src/voms/verify.js';

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
import {
  type TestPki, makeTestPki, makeProxy, makeDelegatedProxy, graftAc, tamperAcInPlace, tamperAcDer, acExtensionDer,
  signProxy, readProxyParts,
} from './kit/pki.js';

let pki: TestPki;
let opts: VerifyOptions;
t.before(async () => {
  pki = await makeTestPki();
  t.teardown(() => rm(pki.dir, { recursive: true, force: true }));
  opts = { vomsdir: pki.vomsdir, certdir: pki.certdir };
});

/** The VomsError code of a verification, or 'ok'. */
async function outcome(path: string, o: Partial<VerifyOptions> = {}): Promise<string> {
  try {
    await verifyProxyFile(path, { ...opts, ...o });
    return 'ok';
  } catch (err) {
    if (err instanceof VomsError) return err.code;
    throw err;
  }
}

async function reason(path: string, o: Partial<VerifyOptions> = {}): Promise<VomsError> {
  try {
    await verifyProxyFile(path, { ...opts, ...o });
  } catch (err) {
    if (err instanceof VomsError) return err;
    throw err;
  }
  throw new Error(`${path} verified but should not have`);
}

t.test('valid proxies: single FQAN, long and short form', async (t) => {
  const short = await verifyProxyFile(await makeProxy(pki, { fqans: ['/testvo'] }), opts);
  t.same(short.fqans, ['/testvo/Role=NULL/Capability=NULL']);
  t.equal(short.primary, '/testvo/Role=NULL/Capability=NULL');
  t.equal(short.vo, 'testvo');
  t.equal(short.issuer, pki.aa.subject, 'issuer is the AA subject in OpenSSL one-line form');
  t.equal(short.holderSubject, pki.user.subject);
  t.equal(short.holderIssuer, pki.ca.subject);
  t.ok(short.notBefore < short.notAfter);
  const long = await verifyProxyFile(await makeProxy(pki, { fqans: ['/testvo/Role=production/Capability=NULL'] }), opts);
  t.same(long.fqans, ['/testvo/Role=production/Capability=NULL']);
});

t.test('valid proxy: multiple FQANs keep AC order, first is primary', async (t) => {
  const id: VomsIdentity = await verifyProxyFile(await makeProxy(pki, {
    fqans: ['/testvo/Role=production', '/testvo', '/testvo/sub/Role=NULL/Capability=NULL', '/testvo/sub/deep'],
  }), opts);
  t.same(id.fqans, ['/testvo/Role=production/Capability=NULL', '/testvo/Role=NULL/Capability=NULL',
    '/testvo/sub/Role=NULL/Capability=NULL', '/testvo/sub/deep/Role=NULL/Capability=NULL']);
  t.equal(id.primary, '/testvo/Role=production/Capability=NULL');
});

t.test('the three proxy formats met in the wild, and limited proxies', async (t) => {
  for (const format of ['rfc', 'legacy', 'gt3'] as const) {
    const p = await makeProxy(pki, { format, fqans: ['/testvo/Role=pilot'] });
    const leaf = parseCertificate(parsePem(await readFile(p, 'latin1'), p)[0]!.der, p);
    const cn = nameToString(leaf.subject).split('/CN=').pop();
    if (format === 'legacy') t.equal(cn, 'proxy', 'legacy Globus proxy: CN=proxy');
    else t.match(cn, /^\d+$/, `${format}: CN is a number`);
    t.ok(leaf.extensions.some((e) => e.oid === (format === 'gt3' ? '1.3.6.1.4.1.3536.1.222' : '1.3.6.1.5.5.7.1.14')) || format === 'legacy');
    const id = await verifyProxyFile(p, opts);
    t.same(id.fqans, ['/testvo/Role=pilot/Capability=NULL'], `${format} proxy verifies`);
  }
  t.equal(await outcome(await makeProxy(pki, { format: 'legacy', limited: true })), 'ok', 'CN=limited proxy');
  t.equal(await outcome(await makeProxy(pki, { format: 'rfc', limited: true })), 'ok', 'RFC limited proxy');
});

t.test('legacy vomsdir with the AA certificate as <vo>/*.pem', async (t) => {
  const p = await makeProxy(pki, { fqans: ['/testvo/Role=production'] });
  const id = await verifyProxyFile(p, { ...opts, vomsdir: pki.legacyVomsdir });
  t.equal(id.primary, '/testvo/Role=production/Capability=NULL');
  t.equal(await outcome(await makeProxy(pki, { aa: pki.strangerAa }), { vomsdir: pki.legacyVomsdir }), 'unknown-aa',
    'an AA whose certificate is not in the legacy dir');
  t.equal(await outcome(await makeProxy(pki, { aa: pki.impostorAa }), { vomsdir: pki.legacyVomsdir }), 'bad-ac-signature',
    'an impostor with the right DN: its key did not sign it');
});

t.test('AC validity: expired, ±5 min skew', async (t) => {
  const expired = await makeProxy(pki, { acPast: '3:00', acHours: 1 });
  const e = await reason(expired);
  t.equal(e.code, 'expired-ac');
  t.match(e.message, /expired/);
  const p = await makeProxy(pki, { hours: 12, acHours: 2 });
  const id = await verifyProxyFile(p, opts);
  const at = (ms: number) => new Date(id.notAfter.getTime() + ms);
  t.equal(await outcome(p, { now: at(4 * 60_000) }), 'ok', '4 min after notAfter is within the skew');
  t.equal(await outcome(p, { now: at(6 * 60_000) }), 'expired-ac', '6 min after notAfter is not');
  // "not yet valid" on the pure check: through the file, the AA certificate (made seconds ago) fails first
  const ac = decodeAcExtension({ oid: '1.3.6.1.4.1.8005.100.100.5', critical: false, value: parseDer(Buffer.concat([Buffer.from([0x04, 0x82]), u16((await acExtensionDer(p)).length), await acExtensionDer(p)])) }, p)[0]!;
  t.throws(() => checkAcBody(ac, new Date(ac.notBefore.getTime() - 6 * 60_000)), { code: 'expired-ac', message: /not yet valid/ });
  t.doesNotThrow(() => checkAcBody(ac, new Date(ac.notBefore.getTime() - 4 * 60_000)), '4 min early is within the skew');
});

t.test('AA trust', async (t) => {
  const stranger = await reason(await makeProxy(pki, { aa: pki.strangerAa }));
  t.equal(stranger.code, 'unknown-aa', 'AA not in the .lsc');
  t.match(stranger.message, /rogue\.example\.org.*not listed/);
  const impostor = await reason(await makeProxy(pki, { aa: pki.impostorAa }));
  t.equal(impostor.code, 'untrusted-aa-chain', 'right DNs, untrusted CA');
  t.equal(await outcome(await makeProxy(pki, { vo: 'othervo', fqans: ['/othervo'] })), 'unknown-aa', 'VO not in the vomsdir');
  t.equal(await outcome(await makeProxy(pki, { uri: 'other.example.org:15000' })), 'unknown-aa',
    'no .lsc for that AA host and no legacy .pem');
  t.equal(await outcome(await makeProxy(pki, { vo: '..', fqans: ['/testvo'] })), 'malformed', 'a VO name that would walk the vomsdir');
  // an .lsc that lists another chain
  const dir = join(pki.dir, `vomsdir-${randomBytes(3).toString('hex')}`);
  await mkdir(join(dir, pki.vo), { recursive: true });
  await writeFile(join(dir, pki.vo, `${pki.aaHost}.lsc`), `# comment\n/C=XX/O=elsewhere/CN=${pki.aaHost}\n/C=XX/O=elsewhere/CN=CA\n` +
    `------ NEXT CHAIN ------\n${pki.aa.subject}\n${pki.ca.subject}\n`);
  t.equal(await outcome(await makeProxy(pki), { vomsdir: dir }), 'ok', 'second chain of a multi-chain .lsc matches');
  await writeFile(join(dir, pki.vo, `${pki.aaHost}.lsc`), `/C=XX/O=elsewhere/CN=${pki.aaHost}\n/C=XX/O=elsewhere/CN=CA\n`);
  t.equal(await outcome(await makeProxy(pki), { vomsdir: dir }), 'unknown-aa');
});

t.test('tampered AC: one byte flipped inside acinfo', async (t) => {
  const p = await makeProxy(pki, { fqans: ['/testvo/Role=production'] });
  const out = await tamperAcInPlace(p, join(pki.dir, 'tampered.pem'));
  t.not(await readFile(out, 'latin1'), await readFile(p, 'latin1'));
  t.equal(await outcome(out), 'bad-ac-signature', 're-PEMed as is (the proxy signature is broken too)');
  // the attacker re-signs a proxy with her own key around the tampered AC: the AA signature still catches it
  const resigned = await signProxy(pki, pki.user, { extensions: [{ oid: '1.3.6.1.4.1.8005.100.100.5', der: tamperAcDer(await acExtensionDer(p)) }] });
  t.equal(await outcome(resigned), 'bad-ac-signature', 're-signed proxy around a tampered AC');
});

t.test('an AC grafted from another user\'s proxy', async (t) => {
  const bobs = await makeProxy(pki, { holder: pki.other, fqans: ['/testvo/Role=production'] });
  t.equal(await outcome(bobs), 'ok', "Bob's own proxy is fine");
  const grafted = await graftAc(pki, bobs, pki.user);
  const e = await reason(grafted);
  t.equal(e.code, 'ac-holder-mismatch');
  t.match(e.message, /serial 1002.*serial 1001/);
});

t.test('FQAN outside the VO', async (t) => {
  t.equal(await outcome(await makeProxy(pki, { fqans: ['/testvo', '/othervo/Role=production'] })), 'fqan-outside-vo');
  t.equal(await outcome(await makeProxy(pki, { fqans: ['/testvoX'] })), 'fqan-outside-vo', 'a VO name prefix is not the VO');
});

t.test('no AC: a plain grid proxy', async (t) => {
  t.equal(await outcome(await makeProxy(pki, { noAc: true })), 'no-ac');
  t.equal(await outcome(pki.user.cert), 'no-ac', 'a bare user certificate');
});

t.test('delegated proxies: the AC sits in the parent', async (t) => {
  for (const format of ['rfc', 'legacy', 'gt3'] as const) {
    const parent = await makeProxy(pki, { format, fqans: ['/testvo/Role=production'] });
    const child = await makeDelegatedProxy(pki, parent, { format });
    const parts = await readProxyParts(child);
    t.equal(parts.certs.length, 3, `${format}: child, parent, EEC`);
    const id = await verifyProxyFile(child, opts);
    t.equal(id.primary, '/testvo/Role=production/Capability=NULL', `${format}: AC found in the parent`);
  }
  const parent = await makeProxy(pki);
  t.equal(await outcome(await makeDelegatedProxy(pki, parent, { format: 'legacy' })), 'broken-proxy-chain', 'mixed proxy types');
  const child = await makeDelegatedProxy(pki, parent);
  t.equal(await outcome(await makeDelegatedProxy(pki, child)), 'broken-proxy-chain',
    "voms-proxy-fake sets path length 1: a third level breaks the parent's constraint");
});

t.test('broken proxy chains', async (t) => {
  const p = await makeProxy(pki);
  const parts = await readProxyParts(p);
  // the EEC replaced by another user's certificate
  const swapped = join(pki.dir, 'swapped.pem');
  await writeFile(swapped, parts.certs[0]! + parts.key + (await readFile(pki.other.cert, 'latin1')));
  t.equal(await outcome(swapped), 'broken-proxy-chain');
  // the EEC left out
  const lone = join(pki.dir, 'lone.pem');
  await writeFile(lone, parts.certs[0]! + parts.key);
  t.equal(await outcome(lone), 'broken-proxy-chain');
  // the proxy expired while its AC is still valid
  const short = await makeProxy(pki, { hours: 1, acHours: 24 });
  const e = await reason(short, { now: new Date(Date.now() + 2 * 3600_000) });
  t.equal(e.code, 'broken-proxy-chain');
  t.match(e.message, /not valid at/);
  // a proxy signed by the user's key but whose EEC is not trusted (empty CA dir; AA via legacy pem+CA dir fails first)
  const plain = await makeProxy(pki, { noAc: true });
  t.equal(await outcome(plain), 'no-ac');
  // Bob's valid proxy chain followed by Alice's EEC: names do not link
  const bobs = await readProxyParts(await makeProxy(pki, { holder: pki.other }));
  const mixed = join(pki.dir, 'mixed.pem');
  await writeFile(mixed, bobs.certs[0]! + bobs.key + (await readFile(pki.user.cert, 'latin1')));
  t.equal(await outcome(mixed), 'broken-proxy-chain');
});

t.test('AC extensions: unknown critical, targets', async (t) => {
  t.equal(await outcome(await makeProxy(pki, { acExtensions: ['1.2.3.4/true:hello'] })), 'unknown-critical-extension');
  t.equal(await outcome(await makeProxy(pki, { acExtensions: ['1.2.3.4/false:hello'] })), 'ok', 'non-critical unknown is fine');
  // this voms-proxy-fake build writes an EMPTY target list whatever -target says: valid for no host
  const targeted = await makeProxy(pki, { target: 'ce.example.org' });
  t.equal(await outcome(targeted, { host: 'ce.example.org' }), 'ac-target-mismatch');
});

t.test('garbage and truncated files', async (t) => {
  const p = await makeProxy(pki);
  const text = await readFile(p, 'latin1');
  const cases: [string, string | Buffer][] = [
    ['empty', ''],
    ['random bytes', randomBytes(3000)],
    ['text', 'hello world\n'],
    ['truncated in the middle', text.slice(0, Math.floor(text.length / 2))],
    ['truncated in the first base64 line', text.slice(0, 100)],
    ['PEM header only', '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n'],
    ['valid base64, garbage DER', `-----BEGIN CERTIFICATE-----\n${randomBytes(600).toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`],
    ['key only', (await readProxyParts(p)).key],
    ['a CSR block', '-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n'],
  ];
  // the leaf's DER cut short but re-armoured (valid PEM around truncated DER)
  const leaf = parsePem(text, p)[0]!.der;
  cases.push(['truncated DER re-armoured', `-----BEGIN CERTIFICATE-----\n${leaf.subarray(0, leaf.length - 40).toString('base64')}\n-----END CERTIFICATE-----\n`]);
  for (const [name, content] of cases) {
    const f = join(pki.dir, `garbage-${randomBytes(3).toString('hex')}`);
    await writeFile(f, content);
    t.equal(await outcome(f), 'malformed', name);
  }
  t.equal(await outcome(join(pki.dir, 'does-not-exist')), 'unreadable', 'missing file');
  t.equal(await outcome(pki.dir), 'unreadable', 'a directory');
  const big = join(pki.dir, 'big.pem');
  await writeFile(big, Buffer.alloc(1024 * 1024 + 1, 0x41));
  t.equal(await outcome(big), 'malformed', 'more than 1 MiB');
  await t.rejects(verifyProxyPem(Buffer.alloc(10, 0), opts), { code: 'malformed' }, 'verifyProxyPem on bytes');
});

t.test('names: OpenSSL one-line form and subject hash agree with openssl', async (t) => {
  const odd = join(pki.dir, 'odd');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:1024', '-nodes', '-keyout', `${odd}.key`, '-out', `${odd}.pem`, '-days', '1',
    '-subj', '/DC=org/DC=Example/O=  Mixed   CASE  Org /OU=Unit one/emailAddress=Alice@Example.ORG/CN=Alice Q. User']);
  for (const f of [pki.ca.cert, pki.user.cert, pki.aa.cert, `${odd}.pem`]) {
    const c = parseCertificate(parsePem(await readFile(f, 'latin1'), f)[0]!.der, f);
    const hash = (await run('openssl', ['x509', '-hash', '-noout', '-in', f])).stdout.trim();
    t.equal(nameHash(c.subject), hash, `subject hash of ${f}`);
    const subj = (await run('openssl', ['x509', '-noout', '-subject', '-nameopt', 'compat', '-in', f])).stdout.trim().replace(/^subject=/, '');
    t.equal(nameToString(c.subject), subj, `one-line subject of ${f}`);
  }
});
