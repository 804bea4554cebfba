// Bounded reads of the small trust files we parse (proxies, CA certificates, .lsc, legacy AA .pem).
import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { VomsError } from './errors.js';

export const MAX_TRUST_FILE = 1024 * 1024;

/** Read a regular file of at most `max` bytes; null when it does not exist. Never follows into FIFOs/devices. */
export async function readBounded(path: string, max = MAX_TRUST_FILE): Promise<Buffer | null> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new VomsError('unreadable', `cannot open ${path}: ${code ?? (err as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new VomsError('unreadable', `${path} is not a regular file`);
    if (st.size > max) throw new VomsError('malformed', `${path} is ${st.size} bytes, more than the ${max} allowed`);
    const buf = Buffer.alloc(Math.min(st.size + 1, max + 1));
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > max) throw new VomsError('malformed', `${path} grew beyond ${max} bytes while being read`);
    return buf.subarray(0, n);
  } catch (err) {
    if (err instanceof VomsError) throw err;
    throw new VomsError('unreadable', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  } finally {
    await fh.close();
  }
}
