/** Gather `wnod status`'s facts on this node — read-only and fast: no VM boots (the KVM probe's cached verdict is
 * reused), no locks taken, nothing created. Every section is looked at on its own, so one broken part does not hide
 * the others. The judgement is classify.ts's. */
import { access, constants, lstat, open, readFile, readdir, stat, statfs } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import type { SiteConfig } from '../config/types.js';
import { ConfigError, imageDigest, loadConfig } from '../config/load.js';
import { accelStatus, kvmUsable } from '../vm/accel.js';
import { listRecords } from '../vm/state.js';
import { isAlive } from '../vm/proc.js';
import { bootSlotCount } from '../job/bootSlots.js';
import { jobStateDir } from '../job/jobstate.js';
import { ImageCache } from '../images/cache.js';
import { lookupTemplate, TEMPLATE_FORMAT } from '../vm/snapshot.js';
import { QEMU_BINARY } from '../vm/qemu.js';
import { describe } from '../util/errors.js';
import type { CacheFacts, DirFacts, FailureFacts, StatusFacts, TemplatesFacts, VmFacts } from './classify.js';
import { failuresOf, lockedInodes, parseLogEvents, templateStaleness, vmRunState, type TemplateContext } from './facts.js';

/** How far back `recent failures` look. */
export const FAILURE_WINDOW_S = 86_400;
/** How much of the root log's end is read (bounded: the log may be large). */
export const LOG_TAIL_BYTES = 1 << 20;
const GiB = 2 ** 30;

/** The first executable `name` in PATH (the same lookup the VM drivers' spawns do). */
export async function whichInPath(name: string, pathVar: string): Promise<string | undefined> {
  for (const d of pathVar.split(delimiter)) {
    if (!d.startsWith('/')) continue;
    const p = join(d, name);
    const ok = await stat(p).then((s) => s.isFile(), () => false) && await access(p, constants.X_OK).then(() => true, () => false);
    if (ok) return p;
  }
  return undefined;
}

/** A directory as wnod will find it when it writes there: kind, owner, writability and its file system's room. */
export async function dirFacts(path: string): Promise<DirFacts> {
  try {
    const st = await lstat(path).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err; });
    // a missing dir is created on first use: judge its nearest existing parent
    let existing = path;
    if (!st) {
      while (existing !== dirname(existing) && !(await stat(existing).then(() => true, () => false))) existing = dirname(existing);
    }
    const kind: DirFacts['kind'] = !st ? 'missing' : st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : 'other';
    const out: DirFacts = { path, kind, ...(st ? { uid: st.uid } : {}) };
    if (kind === 'dir' || kind === 'missing') {
      out.writable = await access(existing, constants.W_OK).then(() => true, () => false);
      const fs = await statfs(existing);
      out.fs = { totalBytes: fs.blocks * fs.bsize, availBytes: fs.bavail * fs.bsize, totalInodes: fs.files, freeInodes: fs.ffree };
    }
    return out;
  } catch (err) {
    return { path, kind: 'other', error: describe(err) };
  }
}

/** The VMs the state dir records, each with what it is doing (its QEMU alive or not). */
async function vmFacts(stateDir: string): Promise<{ vms: VmFacts[]; bad: string[] }> {
  const bad: string[] = [];
  const vms: VmFacts[] = [];
  for (const r of await listRecords(stateDir, (p, e) => bad.push(`${p}: ${describe(e)}`))) {
    const alive = r.pids.qemu ? await isAlive(r.pids.qemu) : undefined;
    vms.push({ id: r.id, jobId: r.jobId ?? null, image: r.spec.image.id, state: vmRunState(r.steps, alive) });
  }
  return { vms, bad };
}

/** Boot slots held right now (bootSlots.ts: one flock'ed file per slot), from /proc/locks: looking takes none. */
async function bootSlotFacts(cfg: SiteConfig): Promise<{ total: number; inUse: number }> {
  const total = bootSlotCount(cfg.vm.maxBooting);
  const held = lockedInodes(await readFile('/proc/locks', 'utf8').catch(() => ''));
  let inUse = 0;
  for (let i = 0; i < total; i++) {
    const st = await stat(join(jobStateDir(cfg.vm.stateDir), `boot-slot-${i}.lock`)).catch(() => undefined);
    if (st && held.has(st.ino)) inUse++;
  }
  return { total, inUse };
}

async function cacheFacts(cfg: SiteConfig): Promise<CacheFacts> {
  const dir = await dirFacts(cfg.cache.dir);
  const facts: CacheFacts = {
    // wantUid 0: the hooks run as root, and the cache refuses a directory that is not theirs
    dir, wantUid: 0, bytes: 0, entries: 0, inUse: 0, broken: 0,
    highWatermarkBytes: Math.floor(cfg.cache.highWatermarkGB * GiB), lowWatermarkBytes: Math.floor(cfg.cache.lowWatermarkGB * GiB),
  };
  if (dir.kind !== 'dir' || dir.error) return facts;
  try {
    for (const e of await new ImageCache(cfg.cache).peek()) {
      facts.entries++;
      facts.bytes += e.size;
      if (e.holders.length) facts.inUse++;
      if (e.metaError) facts.broken++;
    }
  } catch (err) {
    facts.dir = { ...dir, error: describe(err) };
  }
  return facts;
}

/** snapshot.ts's record of the QEMU binary its templates were keyed with: did the binary change since? */
async function qemuAgainstTemplates(templates: string, qemuPath: string | undefined): Promise<TemplateContext['qemu']> {
  const cached = await readFile(join(templates, 'qemu-version.json'), 'utf8').then((t) => JSON.parse(t) as { fid?: string; version?: string }, () => undefined);
  if (!cached?.fid || !qemuPath) return { changed: false };
  const st = await stat(qemuPath).catch(() => undefined);
  if (!st) return { changed: false };
  // the same identity as snapshot.ts's qemuIdentity: path, size, whole-ms mtime, inode
  const fid = `${qemuPath}:${st.size}:${Math.floor(st.mtimeMs)}:${st.ino}`;
  return fid === cached.fid ? { changed: false, version: cached.version } : { changed: true };
}

async function templateFacts(cfg: SiteConfig, accel: 'kvm' | 'tcg' | null, qemuPath: string | undefined): Promise<TemplatesFacts> {
  const dir = join(cfg.vm.stateDir, 'templates');
  const kernels = cfg.images.filter((i) => i.kind === 'kernel');
  const out: TemplatesFacts = {
    enabled: cfg.vm.snapshots === true, ready: [], refused: [],
    wanted: cfg.vm.snapshots ? kernels.map((i) => ({ image: i.id, cpus: i.cpus.default, memoryMB: i.memoryMB.default })) : [],
  };
  const names = await readdir(dir).catch(() => [] as string[]);
  const keys = new Set<string>();
  for (const n of names) {
    const m = /^([0-9a-f]{32})(\.refused\.json|\.failed\.json)?$/.exec(n);
    if (m) keys.add(m[1]!);
  }
  const ctx: TemplateContext = {
    images: new Map(kernels.map((i) => [i.id, { digest: imageDigest(i), cpus: i.cpus.default, memoryMB: i.memoryMB.default }])),
    accel, qemu: await qemuAgainstTemplates(dir, qemuPath),
  };
  for (const key of [...keys].sort()) {
    const t = await lookupTemplate(dir, key).catch(() => undefined);
    if (t?.status === 'ready' && t.meta.format === TEMPLATE_FORMAT) {
      const m = t.meta;
      const stale = templateStaleness(m, ctx);
      out.ready.push({ image: m.imageId, cpus: m.cpus, memoryMB: m.memoryMB, network: m.network, accel: m.accel, createdAt: m.createdAt,
        bytes: m.snapshotBytes, ...(stale ? { stale } : {}) });
    } else if (t?.status === 'refused') {
      out.refused.push({ key, reason: t.reason });
    }
  }
  return out;
}

/** The last LOG_TAIL_BYTES of the root log, from its first whole line. */
async function logTail(path: string): Promise<string> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const { size } = await fh.stat();
    const start = Math.max(0, size - LOG_TAIL_BYTES);
    const buf = Buffer.alloc(size - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    return start === 0 ? text : text.slice(text.indexOf('\n') + 1);
  } finally {
    await fh.close();
  }
}

async function failureFacts(cfg: SiteConfig, now: number, windowS: number): Promise<FailureFacts> {
  try {
    return failuresOf(parseLogEvents(await logTail(cfg.logFile)), now, windowS);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // no log yet: no job has run here, so nothing failed
    return { ...failuresOf([], now, windowS), ...(e.code === 'ENOENT' ? {} : { logError: `${cfg.logFile}: ${describe(err)}` }) };
  }
}

export interface GatherOptions {
  now?: number;
  windowS?: number;
  /** PATH the VM drivers would search (default: this process's, as the hooks inherit it) */
  pathVar?: string;
}

/** Everything `wnod status` reports, looked at without changing anything. */
export async function gatherFacts(configPath: string, o: GatherOptions = {}): Promise<StatusFacts> {
  const now = o.now ?? Date.now();
  let cfg: SiteConfig;
  try {
    cfg = await loadConfig(configPath);
  } catch (err) {
    if (err instanceof ConfigError) return { now, configPath, configError: err.message };
    throw err;
  }
  const pathVar = o.pathVar ?? process.env.PATH ?? '/usr/bin:/bin';
  const name = cfg.vm.driver === 'libvirt' ? 'virsh' : QEMU_BINARY;
  const found = await whichInPath(name, pathVar);
  const qemuPath = cfg.vm.driver === 'libvirt' ? await whichInPath(QEMU_BINARY, pathVar) : found;
  const a = await accelStatus({ stateDir: cfg.vm.stateDir, mode: cfg.vm.accel, ...(qemuPath ? { qemu: qemuPath } : {}) });
  const usable = await kvmUsable();
  const accel = {
    kind: a.accel === 'unknown' ? (usable ? 'kvm' as const : 'tcg' as const) : a.accel, source: a.source, reason: a.reason, mode: cfg.vm.accel, kvmUsable: usable,
    ...(a.at ? { probedAt: a.at } : {}), ...(a.probeMs !== undefined ? { probeMs: a.probeMs } : {}),
  };
  const stateDir = await dirFacts(cfg.vm.stateDir);
  const { vms, bad } = stateDir.kind === 'dir' && !stateDir.error
    ? await vmFacts(cfg.vm.stateDir).catch((err: unknown) => { stateDir.error = describe(err); return { vms: [], bad: [] }; })
    : { vms: [], bad: [] };
  return {
    now, configPath, driver: cfg.vm.driver, binary: { name, ...(found ? { path: found } : {}), pathVar }, accel, stateDir, vms, badRecords: bad,
    bootSlots: await bootSlotFacts(cfg), cache: await cacheFacts(cfg), templates: await templateFacts(cfg, accel.kind, qemuPath),
    failures: await failureFacts(cfg, now, o.windowS ?? FAILURE_WINDOW_S),
  };
}
