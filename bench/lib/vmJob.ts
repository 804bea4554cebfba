/** One bench job: a fresh VM runs /bin/true and is destroyed; the boot path it took must be the one measured. */
import { Writable } from 'node:stream';
import type { QemuDriver } from '../../src/vm/qemu.js';
import { runOnce, type RunOnceResult } from '../../src/vm/session.js';
import type { VmSpec } from '../../src/vm/driver.js';

export const sink = (): Writable => new Writable({ write(_c, _e, cb) { cb(); } });

/** Run `/bin/true` in a VM of `spec`; throws unless it exited 0 after a `want` boot (restore or cold). */
export async function trueJob(driver: QemuDriver, spec: VmSpec, want: 'restore' | 'cold'): Promise<RunOnceResult> {
  let boot: string | undefined;
  const r = await runOnce(driver, spec, { argv: ['/bin/true'], stdout: sink(), stderr: sink(), readyTimeoutMs: 300_000,
    onStep: (step, st) => { if (step === 'ready') boot = st.extra?.boot ?? 'cold'; } });
  if (r.exitCode !== 0) throw new Error(`job ${spec.id}: exit ${r.exitCode}`);
  if (boot !== want) throw new Error(`job ${spec.id}: wanted ${want}, got ${boot}`);
  return r;
}
