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
  constructor(message: string, code: 'vm-agent' | 'vm-agent-lock' | 'vm-agent-line-too-long' | AgentLostCode = 'vm-agent', options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Why a wait for a command's exit was given up: the hypervisor's process is gone (`vm-exited`), an agent channel
 * closed while the hypervisor runs (`channel-closed`), or the agent answered no heartbeat PING within the bound
 * (`unresponsive`: a wedged guest or hypervisor). */
export type AgentLostReason = 'vm-exited' | 'channel-closed' | 'unresponsive';
type AgentLostCode = 'vm-gone' | 'vm-agent-closed' | 'vm-agent-unresponsive';
const LOST_CODES: Record<AgentLostReason, AgentLostCode> = { 'vm-exited': 'vm-gone', 'channel-closed': 'vm-agent-closed', unresponsive: 'vm-agent-unresponsive' };

/** The VM can no longer report the running command's exit: its result is unknown. `reason` says why. */
export class AgentLostError extends AgentError {
  constructor(readonly reason: AgentLostReason, message: string, options?: { cause?: unknown }) {
    super(message, LOST_CODES[reason], options);
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
  constructor(message: string, options?: { cause?: unknown }) {
    super('vm-state', message, options);
  }
}
