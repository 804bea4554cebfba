/** The few virsh calls the libvirt driver makes (argument arrays, timeouts, C locale), and the pure readers of
 * their output. virsh rather than a libvirt binding: no native module to build, and the same tool an admin uses. */
import { run, CommandError } from '../util/run.js';
import { WnodError } from '../util/errors.js';

/** A virsh call failed for a reason other than "no such domain". */
export class VirshError extends WnodError {
  constructor(readonly args: readonly string[], readonly stderr: string, message: string) {
    super('virsh-failed', message);
  }
}

/** libvirt's domain states as `virsh domstate` prints them, plus `absent` (no such domain). */
export type DomainState =
  | 'running' | 'idle' | 'paused' | 'in shutdown' | 'shut off' | 'crashed' | 'pmsuspended' | 'no state' | 'absent';

const STATES: readonly DomainState[] = ['running', 'idle', 'paused', 'in shutdown', 'shut off', 'crashed', 'pmsuspended', 'no state'];

/** Read `virsh domstate NAME` output (one line, e.g. "running\n\n"); throws on anything else. */
export function parseDomState(stdout: string): DomainState {
  const line = stdout.trim();
  const state = STATES.find((s) => s === line);
  if (!state) throw new VirshError(['domstate'], '', `virsh domstate printed an unknown state ${JSON.stringify(line.slice(0, 80))}`);
  return state;
}

/** True when virsh's stderr says the domain does not exist (libvirt 9: "failed to get domain 'x'"; older and
 * API-level messages: "Domain not found"). */
export function isNoDomainError(stderr: string): boolean {
  return /failed to get domain '|Domain not found|no domain with matching (name|uuid)/.test(stderr);
}

/** Read `virsh list --name` output: one domain name per line, blank lines ignored. */
export function parseNameList(stdout: string): string[] {
  return stdout.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
}

/** A connection to one libvirt daemon, e.g. `qemu:///system`. */
export class Virsh {
  constructor(readonly uri: string, readonly timeoutMs = 60_000, readonly bin = 'virsh') {}

  /** Run `virsh -c URI ARGS...`; throws VirshError with virsh's own message. */
  async call(args: readonly string[], timeoutMs = this.timeoutMs): Promise<string> {
    const full = ['-c', this.uri, '--quiet', ...args];
    try {
      // C locale: isNoDomainError reads English messages
      return (await run(this.bin, full, { timeoutMs, env: { LC_ALL: 'C', LANG: 'C' } })).stdout;
    } catch (err) {
      if (err instanceof CommandError) {
        throw new VirshError(args, err.stderr, `virsh ${args.join(' ')} (${this.uri}): ${lastError(err.stderr) || err.message}`);
      }
      throw err;
    }
  }

  /** Start a transient domain from an XML file (gone from libvirt once it stops). */
  async create(xmlPath: string): Promise<void> {
    await this.call(['create', xmlPath]);
  }

  /** The domain's state, `absent` when libvirt does not know it. */
  async domState(name: string): Promise<DomainState> {
    try {
      return parseDomState(await this.call(['domstate', name]));
    } catch (err) {
      if (err instanceof VirshError && isNoDomainError(err.stderr)) return 'absent';
      throw err;
    }
  }

  /** Ask the guest to shut down through ACPI (the agent's POWEROFF is the primary path). Absent = fine. */
  async shutdown(name: string): Promise<void> {
    await this.tolerateAbsent(['shutdown', name, '--mode', 'acpi']);
  }

  /** Force the domain off. Idempotent: an absent or already stopped domain is fine. */
  async destroy(name: string): Promise<void> {
    try {
      await this.tolerateAbsent(['destroy', name]);
    } catch (err) {
      // a domain that stopped between our look and the destroy answers "domain is not running"
      if (err instanceof VirshError && /domain is not running/.test(err.stderr)) return;
      throw err;
    }
  }

  /** Remove a persistent definition if one exists (a transient domain has none). Absent = fine. */
  async undefine(name: string): Promise<void> {
    await this.tolerateAbsent(['undefine', name, '--nvram']).catch((err: unknown) => {
      if (err instanceof VirshError && /transient domain/.test(err.stderr)) return;
      throw err;
    });
  }

  /** Names of the running domains. */
  async listRunning(): Promise<string[]> {
    return parseNameList(await this.call(['list', '--name']));
  }

  private async tolerateAbsent(args: string[]): Promise<void> {
    try {
      await this.call(args);
    } catch (err) {
      if (err instanceof VirshError && isNoDomainError(err.stderr)) return;
      throw err;
    }
  }
}

function lastError(stderr: string): string {
  return stderr.trim().split('\n').filter((l) => l.trim()).slice(-2).join(' / ');
}
