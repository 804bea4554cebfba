/** A bounded decoder of the LZ4 "legacy" frame, the format Linux bzImages compressed with LZ4 carry. Used to get the
 * uncompressed vmlinux (bootable as PVH, faster than the bzImage stub) without an lz4 binary on the node. */
import { WnodError } from '../util/errors.js';

export class Lz4Error extends WnodError {
  constructor(message: string) {
    super('lz4', message);
  }
}

export const LZ4_LEGACY_MAGIC = 0x184c2102;
const LEGACY_BLOCK = 8 << 20;

/** Decode one LZ4 block from src[start, end) into out at outPos; returns the new outPos. */
function decodeBlock(src: Uint8Array, start: number, end: number, out: Uint8Array, outPos: number): number {
  let i = start;
  let o = outPos;
  while (i < end) {
    const token = src[i++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do { if (i >= end) throw new Lz4Error(`literal length runs past the block at byte ${i}`); b = src[i++]!; lit += b; } while (b === 255);
    }
    if (i + lit > end || o + lit > out.length) throw new Lz4Error(`literals overflow at byte ${i}`);
    out.set(src.subarray(i, i + lit), o);
    i += lit; o += lit;
    if (i >= end) break; // the last sequence has literals only
    if (i + 2 > end) throw new Lz4Error(`truncated match offset at byte ${i}`);
    const offset = src[i]! | (src[i + 1]! << 8);
    i += 2;
    if (offset === 0 || offset > o) throw new Lz4Error(`bad match offset ${offset} at byte ${i - 2}`);
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do { if (i >= end) throw new Lz4Error(`match length runs past the block at byte ${i}`); b = src[i++]!; len += b; } while (b === 255);
    }
    len += 4;
    if (o + len > out.length) throw new Lz4Error(`match overflows the output at byte ${i}`);
    if (offset >= len) out.copyWithin(o, o - offset, o - offset + len);
    else for (let k = 0; k < len; k++) out[o + k] = out[o + k - offset]!;
    o += len;
  }
  return o;
}

/** Decode a legacy frame starting at `start` (the magic). Stops at the first word that is not a plausible block
 * size (the kernel appends the uncompressed size after the frame). `maxOut` bounds the output. */
export function lz4LegacyDecode(buf: Uint8Array, start = 0, maxOut = 512 << 20): Buffer {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (start + 4 > buf.length || view.getUint32(start, true) !== LZ4_LEGACY_MAGIC) throw new Lz4Error(`no LZ4 legacy magic at byte ${start}`);
  const blocks: Buffer[] = [];
  let total = 0;
  let i = start + 4;
  const bound = LEGACY_BLOCK + Math.ceil(LEGACY_BLOCK / 255) + 16; // LZ4_compressBound(8 MiB)
  while (i + 4 <= buf.length) {
    const size = view.getUint32(i, true);
    if (size === 0 || size > bound || i + 4 + size > buf.length) break;
    const out = Buffer.allocUnsafe(LEGACY_BLOCK);
    const n = decodeBlock(buf, i + 4, i + 4 + size, out, 0);
    total += n;
    if (total > maxOut) throw new Lz4Error(`output exceeds ${maxOut} bytes`);
    blocks.push(out.subarray(0, n));
    i += 4 + size;
    if (n < LEGACY_BLOCK) break; // only the last block is short
  }
  if (blocks.length === 0) throw new Lz4Error(`empty LZ4 legacy frame at byte ${start}`);
  return Buffer.concat(blocks, total);
}

/** Find the embedded LZ4-compressed vmlinux in a bzImage and return it (an ELF), or undefined if not LZ4. */
export function extractVmlinuxLz4(bzImage: Uint8Array): Buffer | undefined {
  const magic = Buffer.from([0x02, 0x21, 0x4c, 0x18]);
  let at = Buffer.from(bzImage.buffer, bzImage.byteOffset, bzImage.byteLength).indexOf(magic);
  while (at >= 0) {
    try {
      const out = lz4LegacyDecode(bzImage, at);
      if (out.length > 4 && out[0] === 0x7f && out[1] === 0x45 && out[2] === 0x4c && out[3] === 0x46) return out;
    } catch { /* a false match of the magic inside other data: keep looking */ }
    at = Buffer.from(bzImage.buffer, bzImage.byteOffset, bzImage.byteLength).indexOf(magic, at + 1);
  }
  return undefined;
}
