/** Errors of the job network (src/cluster/jobNet*.ts), each with a stable code. */
import { WnodError } from '../util/errors.js';

/** A job network's site settings or request are invalid (bad range, address, job id, node list). */
export class JobNetSpecError extends WnodError {
  constructor(message: string) {
    super('jobnet-spec', message);
  }
}

/** Another job already holds this job's VNI (or its interfaces) on this node: two jobs must never share a segment. */
export class JobNetCollisionError extends WnodError {
  constructor(readonly vni: number, readonly holder: string, message: string) {
    super('jobnet-collision', message);
  }
}

/** A host step (ip, bridge, nft) failed while applying or removing a job network. */
export class JobNetApplyError extends WnodError {
  constructor(message: string, cause?: unknown) {
    super('jobnet-apply', message, { cause });
  }
}
