/** What a prologue's exit code means to pbs_mom (DESIGN A2): 0 = go, 1 = abort the job for good (exit status -2,
 * its output never delivered: wnod aborts only when it cannot record a refusal),
 * anything else = requeue at once in a tight loop. The core (src/job/admit.ts) bounds the retries. */
import type { Outcome } from '../../job/contract.js';

export const PROLOGUE_EXIT = { go: 0, abort: 1, requeue: 2 } as const;

/** The prologue's exit code for a transient fault after `attempts` tries out of `maxRequeues` allowed. */
export function transientExitCode(attempts: number, maxRequeues: number): number {
  return attempts > maxRequeues ? PROLOGUE_EXIT.abort : PROLOGUE_EXIT.requeue;
}

/** The core's outcome as pbs_mom's prologue exit code, once a refusal is recorded for the starter to tell (Torque
 * delivers no output of a job aborted in its prologue: the job runs, only to print the reason). */
export function prologueExit(o: Outcome): number {
  return o.kind === 'retry' ? PROLOGUE_EXIT.requeue : PROLOGUE_EXIT.go;
}
