/** What a hook's outcome means to pbs_mom (DESIGN A2): prologue 0 = go, 1 = abort the job for good (exit status
 * -2), anything else = requeue at once in a tight loop. We requeue only transient faults and only a bounded number
 * of times (the per-job attempt counter), then abort. */
import { WnodError } from '../../util/errors.js';

export const PROLOGUE_EXIT = { go: 0, abort: 1, requeue: 2 } as const;

/** A permanent refusal: the job must not run here, ever. `reason` is the one line the user reads in the .o file. */
export class Refusal extends WnodError {
  constructor(code: string, readonly reason: string, readonly detail: Record<string, unknown> = {}) {
    super(code, reason);
  }
}

/** A fault that may go away by itself (cache busy, VM boot failed, disk full): worth a bounded retry. */
export class TransientFault extends WnodError {
  constructor(code: string, message: string, readonly detail: Record<string, unknown> = {}) {
    super(code, message);
  }
}

/** The prologue's exit code for a transient fault after `attempts` tries out of `maxRequeues` allowed. */
export function transientExitCode(attempts: number, maxRequeues: number): number {
  return attempts > maxRequeues ? PROLOGUE_EXIT.abort : PROLOGUE_EXIT.requeue;
}

/** One line for the job's output, free of control characters (it lands in the user's .o file). */
export function userLine(text: string): string {
  return `wnod: ${text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim()}`.slice(0, 500);
}
