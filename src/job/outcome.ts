/** The two ways admission can fail, as errors the core raises and maps onto an Outcome (contract.ts), and the one
 * line the user reads about it. */
import { WnodError } from '../util/errors.js';

/** A permanent refusal: the job must not run here, ever. `reason` is the one line the user reads. */
export class Refusal extends WnodError {
  constructor(code: string, readonly reason: string, readonly detail: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, reason, options);
  }
}

/** A fault that may go away by itself (cache busy, VM boot failed, disk full): worth a bounded retry. */
export class TransientFault extends WnodError {
  constructor(code: string, message: string, readonly detail: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** One line for the job's output, free of control characters (it lands in the user's output file). */
export function userLine(text: string): string {
  return `wnod: ${text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim()}`.slice(0, 500);
}

/** The job's exit status when wnod refused it on the node (the reason is the `wnod:` line in its stderr file):
 * the same under every LRM. */
export const REFUSED_EXIT = 77;
/** The job's exit status when the node could not run it (its VM did not come up, the node is misconfigured): the
 * job is not at fault and may be resubmitted. EX_TEMPFAIL. */
export const NODE_FAULT_EXIT = 75;
