// A cheap fingerprint of a cached image file, checked on every acquire: the sha256 over 16 evenly spaced 64 KiB
// samples (1 MiB read, whatever the image's size) together with the size. It catches a file truncated or
// rewritten in place and much damage at rest; a full re-hash (`wnod cache verify`, scheduled) catches the rest.
import { open } from 'node:fs/promises';
import { createHash } from 'node:crypto';

export const SAMPLE_COUNT = 16;
export const SAMPLE_BYTES = 64 * 1024;

/** Offsets of the samples of a file of `size` bytes: the first and last block and evenly between. Pure. */
export function sampleOffsets(size: number): number[] {
  if (size <= SAMPLE_COUNT * SAMPLE_BYTES) return [0];
  const last = size - SAMPLE_BYTES;
  return Array.from({ length: SAMPLE_COUNT }, (_, i) => Math.floor((last * i) / (SAMPLE_COUNT - 1)));
}

/** The sample digest of the file at `path` (the whole file when it is small). */
export async function sampleDigest(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const h = createHash('sha256').update(`${size}\n`);
    const small = size <= SAMPLE_COUNT * SAMPLE_BYTES;
    const buf = Buffer.alloc(small ? size : SAMPLE_BYTES);
    for (const off of sampleOffsets(size)) {
      let got = 0;
      while (got < buf.length) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, off + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      h.update(buf.subarray(0, got));
    }
    return h.digest('hex');
  } finally {
    await fh.close();
  }
}
