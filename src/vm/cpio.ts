/** A writer of cpio "newc" archives, the format Linux unpacks from an initramfs (concatenated archives are
 * unpacked in order, so a small per-job archive appended to a cached base overrides and adds files). */

export interface CpioEntry {
  path: string;            // relative, no leading '/', no '..' components
  type: 'file' | 'dir' | 'symlink' | 'chardev';
  mode: number;            // permission bits (07777)
  data?: Uint8Array | string;   // file content, or the link target
  uid?: number;
  gid?: number;
  mtime?: number;          // seconds; 0 by default for reproducible archives
  rdev?: [number, number]; // chardev: major, minor
}

const TYPE_BITS = { file: 0o100000, dir: 0o040000, symlink: 0o120000, chardev: 0o020000 } as const;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Reject archive paths that could escape the unpack root or are not plain relative names. */
export function checkCpioPath(path: string): void {
  if (path === '' || path.startsWith('/') || path.includes('\0') || path.split('/').some((c) => c === '..' || c === '' || c === '.')) {
    throw new RangeError(`invalid cpio path '${path}'`);
  }
}

/** Render entries (parents before children, in the given order) as one newc archive with its trailer. */
export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (name: string, mode: number, body: Buffer, uid: number, gid: number, mtime: number, nlink: number, rdev = [0, 0]) => {
    const nameBytes = Buffer.from(name + '\0', 'utf8');
    const header = '070701' + [ino++, mode, uid, gid, nlink, mtime, body.length, 0, 0, rdev[0]!, rdev[1]!, nameBytes.length, 0].map(hex8).join('');
    parts.push(Buffer.from(header, 'ascii'), nameBytes, Buffer.alloc(pad4(110 + nameBytes.length)), body, Buffer.alloc(pad4(body.length)));
  };
  for (const e of entries) {
    checkCpioPath(e.path);
    if ((e.mode & ~0o7777) !== 0) throw new RangeError(`cpio mode of '${e.path}' has type bits: ${e.mode.toString(8)}`);
    const body = e.type === 'dir' || e.type === 'chardev' ? Buffer.alloc(0) : Buffer.from(e.data ?? '');
    push(e.path, TYPE_BITS[e.type] | e.mode, body, e.uid ?? 0, e.gid ?? 0, e.mtime ?? 0, e.type === 'dir' ? 2 : 1, e.rdev);
  }
  push('TRAILER!!!', 0, Buffer.alloc(0), 0, 0, 0, 1);
  const out = Buffer.concat(parts);
  return Buffer.concat([out, Buffer.alloc((512 - (out.length % 512)) % 512)]);
}
