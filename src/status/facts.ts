/** The pure steps of gathering `wnod status`'s facts: reading /proc/locks, the root log's lines, a VM record's
 * steps and a template's metadata into the shapes classify.ts judges. No I/O here (gather.ts does it). */
import type { FailureFacts, LogEvent, VmRunState } from './classify.js';

/** Inode numbers of files someone holds a flock(2) or POSIX lock on, from /proc/locks ("1: FLOCK ADVISORY WRITE
 * 123 fd:01:4567 0 EOF"; "1: -> FLOCK …" lines are waiters, not holders). By inode only: /proc/locks names the
 * superblock's device, which stat's st_dev does not always match (btrfs, overlayfs). Pure. */
export function lockedInodes(procLocks: string): Set<number> {
  const out = new Set<number>();
  for (const line of procLocks.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words[1] === '->') continue;
    const m = /^[0-9a-f]+:[0-9a-f]+:(\d+)$/.exec(words[5] ?? '');
    if (m) out.add(Number(m[1]));
  }
  return out;
}

/** What a VM record says it is doing: alive is undefined when no process was recorded (libvirt, not started). Pure. */
export function vmRunState(steps: Partial<Record<'prepared' | 'started' | 'ready' | 'stopping' | 'destroyed', string>>, alive: boolean | undefined): VmRunState {
  if (alive === false) return 'dead';
  if (steps.stopping || steps.destroyed) return 'stopping';
  if (steps.ready) return 'running';
  return 'booting';
}

/** The root log's JSON lines (src/job/log.ts) as events; lines that are not wnod's are skipped. Pure. */
export function parseLogEvents(text: string): LogEvent[] {
  const out: LogEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const v = JSON.parse(line) as Record<string, unknown>;
      if (typeof v.time !== 'string' || typeof v.event !== 'string') continue;
      out.push({ time: v.time, event: v.event, ...(typeof v.code === 'string' ? { code: v.code } : {}), ...(typeof v.job === 'string' ? { job: v.job } : {}) });
    } catch {
      // a line cut by the tail read, or not JSON: not ours to judge
    }
  }
  return out;
}

/** Events of a job that went well, or details of one told by another event; every other event in the root log is a
 * failure of some kind. */
const GOOD = new Set(['accepted', 'vm-ready', 'done', 'marked', 'sized-by-holds', 'boot-started', 'already-admitted', 'refusal-recorded', 'guest-note']);
/** Requeue codes that mean the VM did not come up (src/job/vmEngine.ts vmFault, image staging). */
const BOOT_CODES = new Set(['vm-start', 'vm-not-ready', 'vm-failed', 'image-staging']);

/** Failures within the last `windowS` by `<event>:<code>`, VM starts that worked and failed, and how many of the
 * last starts failed in a row. Pure. */
export function failuresOf(events: readonly LogEvent[], nowMs: number, windowS: number): FailureFacts {
  const from = nowMs - windowS * 1000;
  const byReason: Record<string, number> = {};
  let bootsOk = 0;
  let bootsFailed = 0;
  let streak = 0;
  const recent = events.filter((e) => { const t = Date.parse(e.time); return Number.isFinite(t) && t >= from && t <= nowMs + 60_000; })
    .sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  for (const e of recent) {
    if (e.event === 'vm-ready') {
      bootsOk++;
      streak = 0;
      continue;
    }
    if (GOOD.has(e.event)) continue;
    const key = e.code ? `${e.event}:${e.code}` : e.event;
    byReason[key] = (byReason[key] ?? 0) + 1;
    // Torque's detached boot reports its fault itself (boot-failed); the others requeue on it
    if (e.event === 'boot-failed' || ((e.event === 'requeue' || e.event === 'requeue-exhausted') && e.code && BOOT_CODES.has(e.code))) {
      bootsFailed++;
      streak++;
    }
  }
  return { windowS, byReason, bootsOk, bootsFailed, failingStreak: streak };
}

/** What a template was built for (its meta.json, src/vm/snapshot.ts TemplateMeta). */
export interface TemplateOrigin {
  imageId: string;
  digest: string;
  cpus: number;
  memoryMB: number;
  accel: 'kvm' | 'tcg';
  qemuVersion: string;
}

/** What jobs on this node would restore from now. */
export interface TemplateContext {
  /** the configured kernel images: id → digest and default shape */
  images: Map<string, { digest: string; cpus: number; memoryMB: number }>;
  /** the accelerator jobs get (null: not decided yet) */
  accel: 'kvm' | 'tcg' | null;
  /** the QEMU binary: whether it changed since templates last looked at it (snapshot.ts's qemu-version.json), and
   * the version recorded for the current one (undefined: unknown) */
  qemu: { changed: boolean; version?: string | undefined };
}

/** Why no job would restore from this template any more (undefined: it is fresh). Pure. Each reason is a part of
 * the template key (snapshot.ts templateKey) that changed: the image, its default shape, the accelerator, QEMU. */
export function templateStaleness(m: TemplateOrigin, now: TemplateContext): string | undefined {
  const img = now.images.get(m.imageId);
  if (!img) return 'the image is no longer in the site config';
  if (img.digest !== m.digest) return 'the image changed';
  if (img.cpus !== m.cpus || img.memoryMB !== m.memoryMB) return `the image's default shape is now ${img.cpus} cpu, ${img.memoryMB} MB`;
  if (now.accel !== null && now.accel !== m.accel) return `it was built under ${m.accel.toUpperCase()}, jobs now get ${now.accel.toUpperCase()}`;
  if (now.qemu.changed) return 'the QEMU binary changed';
  if (now.qemu.version !== undefined && now.qemu.version !== m.qemuVersion) return `it was built by ${m.qemuVersion}, QEMU is now ${now.qemu.version}`;
  return undefined;
}
