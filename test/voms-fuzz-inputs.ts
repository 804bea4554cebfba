// Shared by test/voms-fuzz.test.ts (CI-sized) and bench/fuzz-der.ts (≥ 100 000 inputs): mutations of real DER
// (a voms-proxy-fake proxy made at run time) and the property every decoder must keep — it returns or throws
// VomsError('malformed'), never anything else (no TypeError, RangeError, stack overflow, other code).
import { readFile, rm } from 'node:fs/promises';
import { parseCertificate, basicConstraints, keyUsage, findExtension, OID } from '../src/voms/cert.js';
import { decodeAcExtension } from '../src/voms/ac.js';
import { parseDer, contents } from '../src/voms/der.js';
import { parsePem } from '../src/voms/pem.js';
import { nameToString, nameHash } from '../src/voms/name.js';
import { VomsError } from '../src/voms/errors.js';
import { makeProxy, makeTestPki, acExtensionDer } from './kit/pki.js';
import { prng } from './kit/prng.js';
export { prng };


export interface FuzzCounts { inputs: number; accepted: number; malformed: number }

export interface Target {
  name: string;
  seed: Buffer;
  decode(b: Buffer): void;
}

/** Apply 1–4 random structural mutations (bit flips, special bytes, length bumps, cuts, splices). */
export function mutate(r: () => number, src: Buffer): Buffer {
  let b = Buffer.from(src);
  const n = 1 + Math.floor(r() * 4);
  const at = () => Math.floor(r() * Math.max(1, b.length));
  for (let k = 0; k < n; k++) {
    const op = Math.floor(r() * 9);
    const i = at();
    switch (op) {
      case 0: b[i] = b[i]! ^ (1 << Math.floor(r() * 8)); break;
      case 1: b[i] = [0x00, 0xff, 0x80, 0x81, 0x82, 0x84, 0x7f, 0x1f, 0x30, 0xa0][Math.floor(r() * 10)]!; break;
      case 2: b = b.subarray(0, i); break;                                   // truncate
      case 3: b = Buffer.concat([b.subarray(0, i), b.subarray(Math.min(b.length, i + 1 + Math.floor(r() * 16)))]); break;
      case 4: b = Buffer.concat([b.subarray(0, i), Buffer.from([Math.floor(r() * 256)]), b.subarray(i)]); break;
      case 5: { // duplicate a slice (nested structures, repeated fields)
        const len = Math.floor(r() * 64);
        b = Buffer.concat([b.subarray(0, i), b.subarray(i, i + len), b.subarray(i)]);
        break;
      }
      case 6: { // bump a long-form length: 0x82 HH LL → bigger or smaller
        const j = b.indexOf(0x82, i);
        if (j >= 0 && j + 2 < b.length) b[j + 1 + Math.floor(r() * 2)] = Math.floor(r() * 256);
        break;
      }
      case 7: b[i] = (b[i]! + 1) & 0xff; break;
      default: b = Buffer.concat([b, b.subarray(0, Math.floor(r() * 8))]); // trailing garbage
    }
  }
  return b;
}

/** Run one input through a decoder: count it, and throw a plain Error naming the input on a property violation. */
export function check(target: Target, input: Buffer, counts: FuzzCounts): void {
  counts.inputs++;
  try {
    target.decode(input);
    counts.accepted++;
  } catch (err) {
    if (err instanceof VomsError && err.code === 'malformed') { counts.malformed++; return; }
    const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    throw new Error(`${target.name}: unexpected ${what} for input ${input.toString('base64')}`);
  }
}

function decodeCertificate(b: Buffer): void {
  const c = parseCertificate(b, 'fuzz');
  nameToString(c.subject); nameToString(c.issuer); nameHash(c.subject);
  basicConstraints(c); keyUsage(c);
  const ext = findExtension(c, OID.vomsAcSeq);
  if (ext) decodeAc(ext.value);
}

function decodeAc(value: Parameters<typeof decodeAcExtension>[0]['value']): void {
  for (const ac of decodeAcExtension({ oid: OID.vomsAcSeq, critical: false, value }, 'fuzz')) {
    nameToString(ac.issuer);
    ac.holderNames.forEach(nameToString);
    for (const c of ac.aaCerts) nameToString(c.subject);
  }
}

function decodeAcValue(b: Buffer): void {
  // the extension's OCTET STRING wrapper, then the AC sequence inside
  const hdr = b.length < 0x80 ? [0x04, b.length] : b.length < 0x100 ? [0x04, 0x81, b.length] : [0x04, 0x82, b.length >> 8, b.length & 0xff];
  decodeAc(parseDer(Buffer.concat([Buffer.from(hdr), b]), { label: 'fuzz' }));
}

/** Build the fuzz targets from a fresh throwaway PKI and a real VOMS proxy (two FQANs). */
export async function makeTargets(): Promise<Target[]> {
  const pki = await makeTestPki();
  const proxy = await makeProxy(pki, { fqans: ['/testvo/Role=production', '/testvo/sub'] });
  const blocks = parsePem(await readFile(proxy, 'latin1'), proxy).filter((b) => b.type === 'CERTIFICATE');
  const acValue = await acExtensionDer(proxy);
  // sanity: the seeds decode cleanly, so mutations start from valid input
  decodeCertificate(blocks[0]!.der);
  decodeAcValue(acValue);
  contents(parseDer(blocks[1]!.der));
  await rm(pki.dir, { recursive: true, force: true }); // only the bytes are needed from here on
  return [
    { name: 'proxy certificate (with AC)', seed: blocks[0]!.der, decode: decodeCertificate },
    { name: 'user certificate', seed: blocks[1]!.der, decode: decodeCertificate },
    { name: 'VOMS AC extension value', seed: acValue, decode: decodeAcValue },
  ];
}
