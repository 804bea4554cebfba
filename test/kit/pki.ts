// A throwaway grid PKI for tests and the demo: a CA (openssl), users, a VOMS AA with its .lsc and a legacy .pem
// vomsdir, a hashed CA dir, impostors, and real proxies with real VOMS ACs made by `voms-proxy-fake` (Debian
// voms-clients). Delegated and grafted proxies are signed with openssl. Everything lives in one mkdtemp dir.
import { mkdtemp, mkdir, readFile, writeFile, copyFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run } from '../../src/util/run.js';
import { parseCertificate, findExtension, OID } from '../../src/voms/cert.js';
import { decodeAcExtension } from '../../src/voms/ac.js';
import { contents, parseDer } from '../../src/voms/der.js';
import { parsePem, toPem } from '../../src/voms/pem.js';

/** A certificate and its key on disk. */
export interface Credential {
  cert: string;      // PEM file
  key: string;       // PEM file, unencrypted, mode 0600
  subject: string;   // OpenSSL one-line DN, e.g. /C=XX/O=wnod test/CN=Alice
}

export interface TestPki {
  dir: string;
  certdir: string;          // hashed CA dir: <hash>.0
  vomsdir: string;          // <vo>/<host>.lsc
  legacyVomsdir: string;    // <vo>/<host>.pem
  vo: string;
  aaHost: string;
  aaPort: number;
  ca: Credential;
  user: Credential;         // "Alice", serial 0x1001
  other: Credential;        // "Bob",   serial 0x1002
  aa: Credential;           // the VO's AA, listed in the .lsc
  strangerAa: Credential;   // signed by the trusted CA but not listed in the .lsc
  impostorCa: Credential;   // same DN as `ca`, another key, NOT in the CA dir
  impostorAa: Credential;   // same DN as `aa`, signed by the impostor CA
}

export type ProxyFormat = 'rfc' | 'legacy' | 'gt3';

export interface ProxyOptions {
  holder?: Credential;      // default pki.user
  aa?: Credential;          // default pki.aa
  vo?: string;              // default pki.vo
  uri?: string;             // AA host:port written into the AC, default pki.aaHost:pki.aaPort
  fqans?: string[];         // default ['/<vo>']
  format?: ProxyFormat;     // default 'rfc'
  limited?: boolean;
  hours?: number;           // proxy lifetime, default 12
  acHours?: number;         // AC lifetime (voms-proxy-fake -vomslife)
  acPast?: string;          // start the AC in the past: seconds or H:MM (-pastac)
  acExtensions?: string[];  // raw -acextension specs, e.g. "1.2.3.4/true:x"
  target?: string;          // -target (note: this voms-proxy-fake build writes an empty target list)
  noAc?: boolean;           // a plain grid proxy without VOMS AC
  out?: string;             // default: a fresh file in pki.dir
}

const TIMEOUT = 60_000;

async function openssl(args: string[], cwd: string): Promise<string> {
  return (await run('openssl', args, { cwd, timeoutMs: TIMEOUT })).stdout;
}

function fresh(pki: { dir: string }, stem: string): string {
  return join(pki.dir, `${stem}-${randomBytes(4).toString('hex')}.pem`);
}

async function makeCa(dir: string, stem: string, subject: string): Promise<Credential> {
  const cred = { cert: join(dir, `${stem}.pem`), key: join(dir, `${stem}.key`), subject };
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', cred.key, '-out', cred.cert, '-days', '30',
    '-subj', subject, '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return cred;
}

async function issue(dir: string, stem: string, subject: string, ca: Credential, serial: string, days = 20): Promise<Credential> {
  const cred = { cert: join(dir, `${stem}.pem`), key: join(dir, `${stem}.key`), subject };
  const csr = join(dir, `${stem}.csr`);
  const ext = join(dir, `${stem}.ext`);
  await writeFile(ext, 'basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
    'subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', cred.key, '-out', csr, '-subj', subject], dir);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial, '-days', String(days),
    '-extfile', ext, '-out', cred.cert], dir);
  return cred;
}

/** Install a CA certificate into a CA dir under its OpenSSL subject hash (`<hash>.0`). */
export async function installCa(certdir: string, caCert: string): Promise<string> {
  const hash = (await openssl(['x509', '-hash', '-noout', '-in', caCert], certdir)).trim();
  if (!/^[0-9a-f]{8}$/.test(hash)) throw new Error(`openssl x509 -hash printed '${hash}'`);
  const file = join(certdir, `${hash}.0`);
  await copyFile(caCert, file);
  return file;
}

/** Create the whole throwaway PKI under `dir` (default: a new mkdtemp dir). */
export async function makeTestPki(dir?: string, opts: { vo?: string; aaHost?: string; aaPort?: number } = {}): Promise<TestPki> {
  const base = dir ?? await mkdtemp(join(tmpdir(), 'wnod-pki-'));
  await mkdir(base, { recursive: true });
  const vo = opts.vo ?? 'testvo';
  const aaHost = opts.aaHost ?? 'voms.example.org';
  const aaPort = opts.aaPort ?? 15000;
  const o = '/C=XX/O=wnod test';
  const ca = await makeCa(base, 'ca', `${o}/CN=wnod Test CA`);
  const impostorCa = await makeCa(base, 'impostor-ca', `${o}/CN=wnod Test CA`);
  const [user, other, aa, strangerAa, impostorAa] = await Promise.all([
    issue(base, 'user', `${o}/OU=users/CN=Alice`, ca, '0x1001'),
    issue(base, 'other', `${o}/OU=users/CN=Bob`, ca, '0x1002'),
    issue(base, 'aa', `${o}/OU=services/CN=${aaHost}`, ca, '0x2001'),
    issue(base, 'stranger-aa', `${o}/OU=services/CN=rogue.example.org`, ca, '0x2002'),
    issue(base, 'impostor-aa', `${o}/OU=services/CN=${aaHost}`, impostorCa, '0x2001'),
  ]);
  const certdir = join(base, 'certificates');
  const vomsdir = join(base, 'vomsdir');
  const legacyVomsdir = join(base, 'vomsdir-legacy');
  await mkdir(certdir, { recursive: true });
  await mkdir(join(vomsdir, vo), { recursive: true });
  await mkdir(join(legacyVomsdir, vo), { recursive: true });
  await installCa(certdir, ca.cert);
  await writeFile(join(vomsdir, vo, `${aaHost}.lsc`), `${aa.subject}\n${ca.subject}\n`);
  await copyFile(aa.cert, join(legacyVomsdir, vo, `${aaHost}.pem`));
  return { dir: base, certdir, vomsdir, legacyVomsdir, vo, aaHost, aaPort, ca, user, other, aa, strangerAa, impostorCa, impostorAa };
}

/** Make a real proxy with voms-proxy-fake; returns its path. */
export async function makeProxy(pki: TestPki, opts: ProxyOptions = {}): Promise<string> {
  const holder = opts.holder ?? pki.user;
  const aa = opts.aa ?? pki.aa;
  const vo = opts.vo ?? pki.vo;
  const out = opts.out ?? fresh(pki, 'proxy');
  const ver = { rfc: '4', gt3: '3', legacy: '2' }[opts.format ?? 'rfc'];
  const args = ['-q', '-certdir', pki.certdir, '-cert', holder.cert, '-key', holder.key, '-out', out, '-proxyver', ver,
    '-bits', '1024', '-hours', String(opts.hours ?? 12)];
  if (opts.limited) args.push('-limited');
  if (!opts.noAc) {
    args.push('-hostcert', aa.cert, '-hostkey', aa.key, '-voms', vo, '-uri', opts.uri ?? `${pki.aaHost}:${pki.aaPort}`, '-newformat');
    for (const f of opts.fqans ?? [`/${vo}`]) args.push('-fqan', f);
    if (opts.acHours !== undefined) args.push('-vomslife', String(opts.acHours));
    if (opts.acPast !== undefined) args.push('-pastac', opts.acPast);
    if (opts.target !== undefined) args.push('-target', opts.target);
    for (const e of opts.acExtensions ?? []) args.push('-acextension', e);
  }
  // HOME: voms-proxy-fake looks for ~/.rnd and ~/.globus; keep it inside the throwaway dir
  await run('voms-proxy-fake', args, { cwd: pki.dir, timeoutMs: TIMEOUT, env: { HOME: pki.dir }, input: '' });
  return out;
}

/** Split a proxy file into its certificates (PEM, file order) and its key (PEM). */
export async function readProxyParts(path: string): Promise<{ certs: string[]; key: string }> {
  const blocks = parsePem(await readFile(path, 'latin1'), path);
  const key = blocks.find((b) => b.type.endsWith('PRIVATE KEY'));
  if (!key) throw new Error(`${path} has no private key`);
  return { certs: blocks.filter((b) => b.type === 'CERTIFICATE').map((b) => toPem('CERTIFICATE', b.der)), key: toPem(key.type, key.der) };
}

export interface SignProxyOptions {
  format?: ProxyFormat;                        // default 'rfc'
  extensions?: { oid: string; der: Buffer }[]; // extra non-critical extensions (value = the DER inside the OCTET STRING)
  out?: string;
}

/** Sign a new proxy with openssl: issuer = the leaf of `issuerFile` (a proxy) or a Credential (an EEC).
 * The new file holds: new proxy, its key, then every certificate of the issuer's chain. */
export async function signProxy(pki: TestPki, issuer: string | Credential, opts: SignProxyOptions = {}): Promise<string> {
  const work = await mkdtemp(join(pki.dir, 'sign-'));
  try {
    let issuerCert: string;
    let issuerKey: string;
    let chain: string[];
    if (typeof issuer === 'string') {
      const parts = await readProxyParts(issuer);
      issuerCert = join(work, 'issuer.pem');
      issuerKey = join(work, 'issuer.key');
      await writeFile(issuerCert, parts.certs[0]!);
      await writeFile(issuerKey, parts.key, { mode: 0o600 });
      chain = parts.certs;
    } else {
      issuerCert = issuer.cert;
      issuerKey = issuer.key;
      chain = [await readFile(issuer.cert, 'latin1')];
    }
    const issuerSubject = (await openssl(['x509', '-noout', '-subject', '-nameopt', 'compat', '-in', issuerCert], work))
      .trim().replace(/^subject=/, '');
    const format = opts.format ?? 'rfc';
    const serial = String(1_000_000 + (randomBytes(3).readUIntBE(0, 3)));
    const cn = format === 'legacy' ? 'proxy' : serial;
    const lines = ['keyUsage=critical,digitalSignature,keyEncipherment'];
    if (format === 'rfc') lines.push('proxyCertInfo=critical,language:id-ppl-inheritAll');
    // GT3 draft ProxyCertInfo: SEQUENCE { SEQUENCE { OID id-ppl-inheritAll } }
    if (format === 'gt3') lines.push('1.3.6.1.4.1.3536.1.222=critical,DER:300C300A06082B06010505071501');
    for (const e of opts.extensions ?? []) lines.push(`${e.oid}=DER:${e.der.toString('hex')}`);
    const ext = join(work, 'ext.cnf');
    await writeFile(ext, lines.join('\n') + '\n');
    const key = join(work, 'proxy.key');
    const csr = join(work, 'proxy.csr');
    const cert = join(work, 'proxy.pem');
    await openssl(['req', '-newkey', 'rsa:1024', '-nodes', '-keyout', key, '-out', csr, '-subj', `${issuerSubject}/CN=${cn}`], work);
    await openssl(['x509', '-req', '-in', csr, '-CA', issuerCert, '-CAkey', issuerKey, '-set_serial', serial, '-days', '1',
      '-extfile', ext, '-out', cert], work);
    const out = opts.out ?? fresh(pki, 'signed-proxy');
    await writeFile(out, (await readFile(cert, 'latin1')) + (await readFile(key, 'latin1')) + chain.join(''), { mode: 0o600 });
    return out;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** A second-level proxy signed (with openssl) by the leaf of `parentProxy`: its AC stays in the parent. */
export async function makeDelegatedProxy(pki: TestPki, parentProxy: string, opts: SignProxyOptions = {}): Promise<string> {
  return signProxy(pki, parentProxy, opts);
}

/** The DER inside the VOMS AC extension of a proxy's leaf certificate. */
export async function acExtensionDer(proxyFile: string): Promise<Buffer> {
  const blocks = parsePem(await readFile(proxyFile, 'latin1'), proxyFile).filter((b) => b.type === 'CERTIFICATE');
  const cert = parseCertificate(blocks[0]!.der, proxyFile);
  const ext = findExtension(cert, OID.vomsAcSeq);
  if (!ext) throw new Error(`${proxyFile}: no VOMS AC in the leaf`);
  return Buffer.from(contents(ext.value));
}

/** A proxy of `holder`, correctly signed by the holder's own key, carrying the AC taken from `donorProxy`. */
export async function graftAc(pki: TestPki, donorProxy: string, holder: Credential = pki.user): Promise<string> {
  const der = await acExtensionDer(donorProxy);
  return signProxy(pki, holder, { extensions: [{ oid: OID.vomsAcSeq, der }] });
}

/** Flip one byte inside the acinfo of an AC extension value (in the last character of the first FQAN; DER stays valid). */
export function tamperAcDer(extDer: Buffer): Buffer {
  const wrapped = parseDer(Buffer.concat([octetHeader(extDer.length), extDer]), { label: 'tamper' });
  const buf = wrapped.buf;
  const ac = decodeAcExtension({ oid: OID.vomsAcSeq, critical: false, value: wrapped }, 'tamper')[0]!;
  const fqan = Buffer.from(ac.fqans[0]!, 'latin1');
  const start = ac.acinfo.byteOffset - buf.byteOffset;
  const at = buf.indexOf(fqan, start);
  if (at < 0 || at + fqan.length > start + ac.acinfo.length) throw new Error('FQAN not found inside acinfo');
  buf[at + fqan.length - 1] = buf[at + fqan.length - 1]! ^ 0x01;
  return Buffer.from(buf.subarray(wrapped.headerLength));
}

function octetHeader(n: number): Buffer {
  if (n < 0x80) return Buffer.from([0x04, n]);
  if (n < 0x100) return Buffer.from([0x04, 0x81, n]);
  return Buffer.from([0x04, 0x82, n >> 8, n & 0xff]);
}

/** Flip one byte inside the acinfo of the leaf's AC and re-PEM the file (the proxy signature breaks too). */
export async function tamperAcInPlace(proxyFile: string, out: string): Promise<string> {
  const text = await readFile(proxyFile, 'latin1');
  const blocks = parsePem(text, proxyFile);
  const leaf = blocks[0]!;
  const ext = await acExtensionDer(proxyFile);
  const tampered = tamperAcDer(ext);
  const at = leaf.der.indexOf(ext);
  if (at < 0) throw new Error('AC extension bytes not found in the leaf');
  const der = Buffer.from(leaf.der);
  tampered.copy(der, at);
  const pem = blocks.map((b, i) => toPem(b.type, i === 0 ? der : b.der)).join('');
  await writeFile(out, pem, { mode: 0o600 });
  return out;
}

