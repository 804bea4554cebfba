// The vomsdir (/etc/grid-security/vomsdir): per VO, either `<vo>/<aa-host>.lsc` files listing the DN pairs of the
// AA certificate chain, or (legacy) the AA certificates themselves as `<vo>/*.pem`.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Certificate, parseCertificate } from './cert.js';
import { VomsError } from './errors.js';
import { readBounded } from './files.js';
import { parsePem } from './pem.js';
import { printable } from './der.js';

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const MAX_LSC_LINES = 64;
const MAX_LEGACY_PEMS = 100;

/** Parse .lsc text into alternative chains of one-line DNs (subject of the AA first, then its issuers). */
export function parseLsc(text: string, file: string): string[][] {
  const chains: string[][] = [[]];
  const lines = text.split(/\r?\n/);
  if (lines.length > MAX_LSC_LINES) throw new VomsError('malformed', `${file}: more than ${MAX_LSC_LINES} lines`);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (/^-+\s*NEXT CHAIN\s*-+$/.test(line)) { chains.push([]); return; }
    if (!line.startsWith('/')) throw new VomsError('malformed', `${file} line ${i + 1}: '${printable(line.slice(0, 80))}' is not a /-separated DN`);
    chains[chains.length - 1]!.push(line);
  });
  const good = chains.filter((c) => c.length > 0);
  for (const c of good) if (c.length < 2) throw new VomsError('malformed', `${file}: a chain needs at least the AA subject and its issuer`);
  if (good.length === 0) throw new VomsError('malformed', `${file}: no DN in the file`);
  return good;
}

/** Refuse VO or host names that could walk out of the vomsdir (they come from the AC). */
export function checkSafeName(kind: 'VO' | 'host', name: string): void {
  if (!SAFE_NAME.test(name) || /^\.+$/.test(name)) throw new VomsError('malformed', `AC ${kind} name '${printable(name)}' is not a safe file name`);
}

/** The DN chains of `<vomsdir>/<vo>/<host>.lsc`, or null when there is no such file. */
export async function readLsc(vomsdir: string, vo: string, host: string): Promise<{ file: string; chains: string[][] } | null> {
  checkSafeName('VO', vo);
  checkSafeName('host', host);
  const file = join(vomsdir, vo, `${host}.lsc`);
  const buf = await readBounded(file, 64 * 1024);
  return buf ? { file, chains: parseLsc(buf.toString('utf8'), file) } : null;
}

/** Certificates in the legacy `<vomsdir>/<vo>/*.pem` files (unparsable files are skipped, as VOMS does). */
export async function legacyAaCerts(vomsdir: string, vo: string): Promise<Certificate[]> {
  checkSafeName('VO', vo);
  const dir = join(vomsdir, vo);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.pem')).sort().slice(0, MAX_LEGACY_PEMS);
  } catch {
    return [];
  }
  const out: Certificate[] = [];
  for (const n of names) {
    const file = join(dir, n);
    try {
      const buf = await readBounded(file);
      if (!buf) continue;
      parsePem(buf.toString('latin1'), file).filter((b) => b.type === 'CERTIFICATE')
        .forEach((b, i) => out.push(parseCertificate(b.der, `${file} certificate ${i + 1}`)));
    } catch {
      // a stray file must not hide the good ones
    }
  }
  return out;
}
