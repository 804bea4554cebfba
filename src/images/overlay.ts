// Per-job copy-on-write disks: a qcow2 overlay over a cached base. Guest writes land in the overlay; the base
// (read-only in the cache) is never written. Overlays live in the per-VM directory the VM engine owns.
import { chmod, link, lstat, statfs, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { run } from '../util/run.js';
import { WnodError } from '../util/errors.js';

export type BaseFormat = 'raw' | 'qcow2';

/** An overlay could not be created (bad arguments, base missing, qemu-img failed, target exists). */
export class OverlayError extends WnodError {
  constructor(readonly overlayPath: string, message: string, code = 'overlay-failed') {
    super(code, message);
  }
}

/** The overlay's file system has less room than the overlay may grow to: booting would let the guest fill the
 * node's disk. A node-local condition (another node, or this one later, may have room). */
export class OverlaySpaceError extends OverlayError {
  constructor(overlayPath: string, readonly neededBytes: number, readonly freeBytes: number) {
    super(overlayPath, `not enough free disk space for the VM's disk: ${human(freeBytes)} free where its overlay lives ` +
      `(${dirname(overlayPath)}), the image's disk needs up to ${human(neededBytes)}`, 'overlay-no-space');
  }
}

const human = (n: number): string => (n < 2 ** 30 ? `${Math.floor(n / 2 ** 20)} MiB` : `${(n / 2 ** 30).toFixed(n < 10 * 2 ** 30 ? 1 : 0)} GiB`);

/** Bytes an unprivileged writer could still put on the file system holding `dir` (bavail: root's reserve stays). */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return Number(s.bavail) * Number(s.bsize);
}

const QEMU_IMG = 'qemu-img';

/** qemu-img's arguments for an overlay; pure, exported for tests. `sizeGB` grows the virtual disk (GiB). */
export function overlayArgs(basePath: string, baseFormat: BaseFormat, overlayPath: string, sizeGB?: number): string[] {
  const args = ['create', '-q', '-f', 'qcow2', '-F', baseFormat, '-b', basePath, overlayPath];
  if (sizeGB !== undefined) args.push(`${sizeGB}G`);
  return args;
}

function check(basePath: string, baseFormat: string, overlayPath: string, sizeGB?: number): void {
  if (!isAbsolute(basePath)) throw new OverlayError(overlayPath, `overlay base '${basePath}' must be an absolute path`);
  if (!isAbsolute(overlayPath)) throw new OverlayError(overlayPath, `overlay path '${overlayPath}' must be absolute`);
  // qemu-img parses "a:b" in file names as protocol prefixes and commas as options: refuse both
  for (const p of [basePath, overlayPath]) {
    if (/[,:\0\n]/.test(p)) throw new OverlayError(overlayPath, `path '${p}' contains ',', ':' or a control character, which qemu-img would misread`);
  }
  if (baseFormat !== 'raw' && baseFormat !== 'qcow2') throw new OverlayError(overlayPath, `base format '${baseFormat}' is not raw or qcow2`);
  if (sizeGB !== undefined && !(Number.isInteger(sizeGB) && sizeGB > 0 && sizeGB <= 65536)) {
    throw new OverlayError(overlayPath, `overlay size ${sizeGB} GB is not an integer between 1 and 65536`);
  }
}

/** What qemu-img says about a base image; pure parse of `qemu-img info --output=json`, exported for tests. */
export function parseBaseInfo(json: string, basePath: string, overlayPath: string): { virtualSize: number } {
  let info: Record<string, unknown>;
  try {
    info = JSON.parse(json) as Record<string, unknown>;
  } catch {
    throw new OverlayError(overlayPath, `qemu-img info ${basePath}: output is not JSON`);
  }
  const size = info['virtual-size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) throw new OverlayError(overlayPath, `qemu-img info ${basePath}: no virtual-size`);
  // a base that points at other host files would let a guest read them through the overlay chain
  if (info['backing-filename'] !== undefined || info['full-backing-filename'] !== undefined) {
    throw new OverlayError(overlayPath, `overlay base ${basePath} has a backing file of its own (${String(info['backing-filename'])}); refused`);
  }
  const specific = info['format-specific'] as { data?: { 'data-file'?: unknown } } | undefined;
  if (specific?.data?.['data-file'] !== undefined) {
    throw new OverlayError(overlayPath, `overlay base ${basePath} uses an external data file (${String(specific.data['data-file'])}); refused`);
  }
  return { virtualSize: size };
}

/** Create a qcow2 overlay at `overlayPath` backed by `basePath` (never overwrites an existing file). The overlay may
 * grow to the disk's virtual size (or `needGB`, the image's disk_gb, if larger): refused with OverlaySpaceError
 * unless that much is free now. */
export async function createOverlay(basePath: string, baseFormat: BaseFormat, overlayPath: string, sizeGB?: number,
  opts: { needGB?: number | undefined } = {}): Promise<void> {
  check(basePath, baseFormat, overlayPath, sizeGB);
  const base = await lstat(basePath).catch(() => undefined);
  if (!base?.isFile()) throw new OverlayError(overlayPath, `overlay base ${basePath} is not a regular file`);
  const { stdout } = await run(QEMU_IMG, ['info', '--output=json', '-f', baseFormat, basePath], { timeoutMs: 60_000 })
    .catch((err: Error) => { throw new OverlayError(overlayPath, `cannot inspect overlay base ${basePath}: ${err.message}`); });
  const { virtualSize } = parseBaseInfo(stdout, basePath, overlayPath);
  if (sizeGB !== undefined && sizeGB * 2 ** 30 < virtualSize) {
    throw new OverlayError(overlayPath, `overlay size ${sizeGB} GiB is smaller than the base ${basePath} (${virtualSize} bytes): the disk would be cut`);
  }
  const need = Math.max(virtualSize, (sizeGB ?? 0) * 2 ** 30, (opts.needGB ?? 0) * 2 ** 30);
  const free = await freeBytes(dirname(overlayPath));
  if (free < need) throw new OverlaySpaceError(overlayPath, need, free);
  // qemu-img create truncates an existing target; build under a temp name, then link(2), which fails on EEXIST
  const tmp = join(dirname(overlayPath), `.${basename(overlayPath)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await run(QEMU_IMG, overlayArgs(basePath, baseFormat, tmp, sizeGB), { timeoutMs: 60_000 });
    await chmod(tmp, 0o600); // the guest's data
    await link(tmp, overlayPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new OverlayError(overlayPath, `overlay ${overlayPath} already exists`);
    if (err instanceof WnodError) throw new OverlayError(overlayPath, `cannot create overlay ${overlayPath} over ${basePath}: ${err.message}`);
    throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** Delete an overlay; a missing one is not an error (teardown is idempotent). */
export async function removeOverlay(overlayPath: string): Promise<void> {
  if (!isAbsolute(overlayPath)) throw new OverlayError(overlayPath, `overlay path '${overlayPath}' must be absolute`);
  await unlink(overlayPath).catch((err) => { if (err.code !== 'ENOENT') throw err; });
}
