/** Node-wide clean-up: `killAll` destroys every VM on the node; `gc` removes only orphans and is safe to run at any
 * time, also while VMs start and run. */
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { VmDriver, VmState } from './driver.js';
import { listRecords, readRecord } from './state.js';
import { isAlive } from './proc.js';

export interface CleanReport {
  destroyed: string[];           // VM ids
  removedRunDirs: string[];      // runtime dirs without a record
  releasedHolders: Array<{ digest: string; holder: string }>;
  errors: string[];
}

/** Something that can drop image-cache references of gone VMs (ImageCache.releaseStale). */
export interface HolderReleaser {
  releaseStale(isAlive: (holder: string) => boolean | Promise<boolean>): Promise<Array<{ digest: string; holder: string }>>;
}

/** Why gc would destroy a VM, or undefined to leave it: a VM whose hypervisor is gone, or one whose creating
 * process died before handing it over (a crashed `wnod vm run` or prologue). Pure over the given facts. */
export function orphanReason(s: Pick<VmState, 'steps' | 'handedOver'>, facts: { qemuAlive: boolean; ownerAlive: boolean; jobAlive?: boolean }): string | undefined {
  if (facts.jobAlive === false) return 'its batch job is gone';
  if (s.steps.started && !facts.qemuAlive) return 'its hypervisor is no longer running';
  if (!facts.ownerAlive && !s.handedOver) return s.steps.started ? 'its creator died before handing it over' : 'its creator died while preparing it';
  return undefined;
}

/** Drivers by name: records say which driver made them. */
export type DriverFor = (state: VmState) => VmDriver;

/** Destroy every VM on the node and delete its disks. */
export async function killAll(stateDir: string, driverFor: DriverFor, cache?: HolderReleaser): Promise<CleanReport> {
  const r: CleanReport = { destroyed: [], removedRunDirs: [], releasedHolders: [], errors: [] };
  for (const s of await listRecords(stateDir, (p, e) => r.errors.push(`${p}: ${(e as Error).message}`))) {
    try {
      await driverFor(s).destroy(s);
      r.destroyed.push(s.id);
    } catch (err) {
      r.errors.push(`${s.id}: ${(err as Error).message}`);
    }
  }
  await sweep(stateDir, r, cache);
  return r;
}

/** Remove orphans: dead VMs with a record, runtime dirs and overlays without a record, stale cache holders. */
export async function gc(stateDir: string, driverFor: DriverFor, opts: { cache?: HolderReleaser; jobAlive?: (jobId: string) => Promise<boolean | undefined> } = {}): Promise<CleanReport> {
  const r: CleanReport = { destroyed: [], removedRunDirs: [], releasedHolders: [], errors: [] };
  for (const s of await listRecords(stateDir, (p, e) => r.errors.push(`${p}: ${(e as Error).message}`))) {
    try {
      const facts = {
        qemuAlive: await isAlive(s.pids.qemu),
        ownerAlive: await isAlive(s.owner),
        jobAlive: s.jobId && opts.jobAlive ? await opts.jobAlive(s.jobId) : undefined,
      };
      const why = orphanReason(s, facts);
      if (!why) continue;
      // re-read: the owner may have moved on (or destroyed it) since we listed
      const now = await readRecord(stateDir, s.id);
      if (!now) continue;
      await driverFor(now).destroy(now);
      r.destroyed.push(`${s.id} (${why})`);
    } catch (err) {
      r.errors.push(`${s.id}: ${(err as Error).message}`);
    }
  }
  await sweep(stateDir, r, opts.cache);
  return r;
}

/** Runtime dirs with no record (a crash between record removal and dir removal cannot happen — destroy removes
 * the dir first — but a record deleted by hand can leave one), and cache holders that name no VM. */
async function sweep(stateDir: string, r: CleanReport, cache?: HolderReleaser): Promise<void> {
  const runRoot = join(stateDir, 'run');
  const names = await readdir(runRoot).catch(() => [] as string[]);
  for (const n of names) {
    // prepare writes the record before it makes the dir, so a dir without a record is never a VM in creation
    if (await readRecord(stateDir, n).catch(() => 'bad')) continue;
    const p = join(runRoot, n);
    if (!(await stat(p).then((s) => s.isDirectory(), () => false))) continue;
    await rm(p, { recursive: true, force: true });
    r.removedRunDirs.push(p);
  }
  if (cache) {
    try {
      r.releasedHolders = await cache.releaseStale(async (holder) => (await readRecord(stateDir, holder).catch(() => undefined)) !== undefined);
    } catch (err) {
      r.errors.push(`image cache: ${(err as Error).message}`);
    }
  }
}
