/** Errors of the VM engine, each with a stable code a caller (prologue, CLI) can match on. */
import { WnodError } from '../util/errors.js';

/** Something about a VM spec or state record is invalid (bad id, path, user). */
export class VmSpecError extends WnodError {
  constructor(message: string) {
    super('vm-spec', message);
  }
}

/** The hypervisor could not be started. */
export class VmStartError extends WnodError {
  constructor(message: string, readonly consoleTail = '') {
    super('vm-start', message);
  }
}

/** The guest did not become ready within its bound (or died first). `reason` says which. */
export class VmNotReadyError extends WnodError {
  constructor(readonly reason: 'timeout' | 'exited' | 'no-agent', message: string, readonly consoleTail = '') {
    super(reason === 'no-agent' ? 'vm-no-agent' : 'vm-not-ready', message);
  }
}

/** The agent channel broke or spoke out of protocol during an exec. */
export class AgentError extends WnodError {
  constructor(message: string, code = 'vm-agent') {
    super(code, message);
  }
}

/** The guest sent a control line longer than the protocol allows (or no newline at all): the wait ends at once. */
export class AgentLineTooLong extends AgentError {
  constructor(what: string, limit: number) {
    super(`${what}: the guest sent a control line longer than ${limit} bytes (a broken or hostile agent)`, 'vm-agent-line-too-long');
  }
}

/** A state record is missing or unreadable. */
export class VmStateError extends WnodError {
  constructor(message: string) {
    super('vm-state', message);
  }
}
