/** One job in one fresh VM, in one process: prepare → start → waitReady → exec → destroy (always). Used by
 * `wnod vm run`, the benchmark and the tests; the Torque hooks call the same driver steps from three processes. */
import type { Writable } from 'node:stream';
import type { VmDriver, VmSpec, VmState } from './driver.js';

export interface RunOnceOptions {
  argv: string[];
  cwd?: string;                 // default: the workdir, else '/'
  env?: Record<string, string>;
  stdout: Writable;
  stderr: Writable;
  readyTimeoutMs: number;
  stopGraceMs?: number;         // 0 (default): the job is over, nothing in the guest needs a clean shutdown
  signal?: AbortSignal;
  /** called with each step's state (e.g. to record it or for a test that kills the process at a step) */
  onStep?: (step: 'prepared' | 'started' | 'ready' | 'exited', state: VmState) => void | Promise<void>;
}

export interface RunOnceResult {
  exitCode: number;
  /** milliseconds spent in each step */
  timings: { prepare: number; start: number; ready: number; exec: number; destroy: number; total: number };
}

/** Run one command in a fresh VM and destroy it, whatever happens. */
export async function runOnce(driver: VmDriver, spec: VmSpec, o: RunOnceOptions): Promise<RunOnceResult> {
  const t: RunOnceResult['timings'] = { prepare: 0, start: 0, ready: 0, exec: 0, destroy: 0, total: 0 };
  const t0 = performance.now();
  let mark = t0;
  const lap = (k: keyof RunOnceResult['timings']) => { const n = performance.now(); t[k] = n - mark; mark = n; };
  let state: VmState | undefined;
  try {
    state = await driver.prepare(spec);
    lap('prepare');
    await o.onStep?.('prepared', state);
    await driver.start(state);
    lap('start');
    await o.onStep?.('started', state);
    await driver.waitReady(state, o.readyTimeoutMs);
    lap('ready');
    await o.onStep?.('ready', state);
    const exitCode = await driver.exec(state, {
      argv: o.argv, cwd: o.cwd ?? spec.workdir?.hostPath ?? '/', env: o.env ?? {}, user: spec.user,
      stdout: o.stdout, stderr: o.stderr, signal: o.signal,
    });
    lap('exec');
    await o.onStep?.('exited', state);
    return { exitCode, timings: t };
  } finally {
    if (state) {
      mark = performance.now();
      if (o.stopGraceMs) await driver.stop(state, o.stopGraceMs).catch(() => {});
      await driver.destroy(state);
      lap('destroy');
    }
    t.total = performance.now() - t0;
  }
}
