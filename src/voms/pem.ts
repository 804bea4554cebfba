// PEM armour: split a file into its blocks (certificates, keys) strictly — only whitespace between blocks,
// canonical base64 inside, a bounded number of blocks.
import { VomsError } from './errors.js';
import { printable } from './der.js';

export interface PemBlock {
  type: string;   // e.g. "CERTIFICATE", "RSA PRIVATE KEY"
  der: Buffer;
  line: number;   // 1-based line of the BEGIN line
}

const MAX_BLOCKS = 32;
const BEGIN = /^-----BEGIN ([A-Z0-9 ]{1,40})-----$/;
const B64_LINE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Split PEM text into blocks; `what` names the source (a file path) for messages. */
export function parsePem(text: string, what: string): PemBlock[] {
  const lines = text.split(/\r?\n/);
  const blocks: PemBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const m = BEGIN.exec(line);
    if (!m) throw new VomsError('malformed', `${what} line ${i + 1}: expected '-----BEGIN …-----', found '${printable(line.slice(0, 60))}'`);
    const type = m[1]!;
    const start = i + 1;
    const body: string[] = [];
    for (i++; ; i++) {
      if (i >= lines.length) throw new VomsError('malformed', `${what} line ${start}: '${type}' block has no END line (truncated file?)`);
      const l = lines[i]!.trim();
      if (l === `-----END ${type}-----`) break;
      if (l.startsWith('-----')) throw new VomsError('malformed', `${what} line ${i + 1}: unexpected '${printable(l.slice(0, 60))}' inside '${type}'`);
      if (/^[A-Za-z-]+:/.test(l) || l === '') {
        // RFC 1421 headers (Proc-Type: 4,ENCRYPTED) and the blank line after them: an encrypted key
        if (type.includes('PRIVATE KEY')) continue;
        throw new VomsError('malformed', `${what} line ${i + 1}: unexpected header in '${type}'`);
      }
      if (!B64_LINE.test(l)) throw new VomsError('malformed', `${what} line ${i + 1}: invalid base64 in '${type}'`);
      body.push(l);
    }
    const b64 = body.join('');
    if (b64.length % 4 !== 0 || /=[^=]/.test(b64)) throw new VomsError('malformed', `${what} line ${start}: base64 of '${type}' has a bad length or padding (truncated?)`);
    const der = Buffer.from(b64, 'base64');
    if (der.length === 0) throw new VomsError('malformed', `${what} line ${start}: empty '${type}' block`);
    blocks.push({ type, der, line: start });
    if (blocks.length > MAX_BLOCKS) throw new VomsError('malformed', `${what}: more than ${MAX_BLOCKS} PEM blocks`);
  }
  return blocks;
}

/** PEM-armour DER bytes (for tests and tools). */
export function toPem(type: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${type}-----\n${b64}-----END ${type}-----\n`;
}
