/** Errors of the VM engine, each with a stable code a caller (prologue, CLI) can match on. */
import { WnodError } from '../util/errors.js';

/** Something about a VM spec or state record is invalid (bad id, path, user). */
export class VmSpecError extends WnodError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('vm-spec', message, options);
  }
}

/** The hypervisor could not be started. */
export class VmStartError extends WnodError {
  constructor(message: string, readonly consoleTail = '', options?: { cause?: unknown }) {
    super('vm-start', message, options);
  }
}

/** The guest did not become ready within its bound (or died first). `reason` says which. */
export class VmNotReadyError extends WnodError {
  constructor(readonly reason: 'timeout' | 'exited' | 'no-agent', message: string, readonly consoleTail = '') {
    super(reason === 'no-agent' ? 'vm-no-agent' : 'vm-not-ready', message);
  }
}

/** The agent channel broke or spoke out of protocol. `vm-agent-lock`: locking the agent to the job's user failed
 * (such a VM must never be handed over). */
export class AgentError extends WnodError {
  constructor(message: string, code: 'vm-agent' | 'vm-agent-lock' = 'vm-agent', options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A state record is missing or unreadable. */
export class VmStateError extends WnodError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('vm-state', message, options);
  }
}
