/** The host side of the guest-agent protocol (guest/wnod-agent, guest/README.md) over the three Unix sockets QEMU
 * serves for the named virtio-serial ports. Lines on the control port; raw output on stdout/stderr, each ended
 * by the request's random nonce (the end marker), after which the agent sends `EXIT <nonce> <code>`. */
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import { AgentError, AgentLineTooLong, AgentLostError } from './errors.js';
import { execScript } from './shell.js';

/** Passes bytes through until the marker; holds back a possible marker prefix at the end of each chunk. Pure. */
export class MarkerStripper {
  private held = Buffer.alloc(0);
  done = false;
  constructor(private readonly marker: Buffer, private readonly emit: (b: Buffer) => void) {}

  /** Feed a chunk; returns the bytes after the marker (if any) that belong to nobody. */
  push(chunk: Buffer): Buffer {
    if (this.done) return chunk;
    const buf = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    const at = buf.indexOf(this.marker);
    if (at >= 0) {
      if (at > 0) this.emit(buf.subarray(0, at));
      this.held = Buffer.alloc(0);
      this.done = true;
      return buf.subarray(at + this.marker.length);
    }
    // keep the longest tail that is a prefix of the marker
    let keep = Math.min(this.marker.length - 1, buf.length);
    while (keep > 0 && !this.marker.subarray(0, keep).equals(buf.subarray(buf.length - keep))) keep--;
    if (buf.length - keep > 0) this.emit(buf.subarray(0, buf.length - keep));
    this.held = Buffer.from(buf.subarray(buf.length - keep));
    return Buffer.alloc(0);
  }
}

/** Read one exit status line for `nonce` out of control-port text; other lines are ignored. Pure. */
export function parseExitLine(line: string, nonce: string): number | undefined {
  const m = /^EXIT ([A-Za-z0-9]+) (\d{1,3})$/.exec(line.trim());
  if (!m || m[1] !== nonce) return undefined;
  return Number(m[2]);
}

function connectUnix(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    const t = setTimeout(() => { s.destroy(); reject(new AgentError(`connecting to ${path} timed out`)); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); resolve(s); });
    s.once('error', (err) => { clearTimeout(t); reject(err); });
  });
}

/** The longest control-port line the host accepts (the agent's answers are a few dozen bytes). */
export const MAX_CONTROL_LINE = 4096;

/** Read lines from a socket until `match` accepts one (returns its value) or the socket ends / time runs out;
 * `closed` (optional) makes the error for a socket that ends first. */
export function awaitLine<T>(s: Socket, match: (line: string) => T | undefined, timeoutMs: number | undefined, what: string,
  closed?: () => Error): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let timer: NodeJS.Timeout | undefined;
    const done = (err: Error | undefined, v?: T) => {
      if (timer) clearTimeout(timer);
      s.off('data', onData); s.off('end', onEnd); s.off('error', onErr); s.off('close', onEnd);
      if (err) reject(err); else resolve(v as T);
    };
    const fail = (text: string) => new AgentError(`${what}: ${text}`, what === 'lock' ? 'vm-agent-lock' : 'vm-agent');
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.length > MAX_CONTROL_LINE) return done(new AgentLineTooLong(what, MAX_CONTROL_LINE));
        const v = match(line);
        if (v !== undefined) return done(undefined, v);
      }
      // a guest that never sends a newline must not grow the host's buffer: the protocol's lines are short
      if (buf.length > MAX_CONTROL_LINE) return done(new AgentLineTooLong(what, MAX_CONTROL_LINE));
    };
    const onEnd = () => done(closed ? closed() : fail('the VM closed the agent channel'));
    const onErr = (err: Error) => done(fail(err.message));
    if (timeoutMs !== undefined) timer = setTimeout(() => done(fail(`no answer within ${timeoutMs} ms`)), timeoutMs);
    s.on('data', onData); s.once('end', onEnd); s.once('close', onEnd); s.once('error', onErr);
  });
}

const newNonce = (): string => randomBytes(16).toString('hex');

/** Send PING and wait for the matching PONG: true if the agent answered within timeoutMs. */
export async function ping(control: string, timeoutMs: number): Promise<boolean> {
  let s: Socket | undefined;
  try {
    s = await connectUnix(control, Math.min(timeoutMs, 2000));
    const nonce = newNonce();
    s.write(`PING ${nonce}\n`);
    await awaitLine(s, (l) => (l.trim() === `PONG ${nonce}` ? true : undefined), timeoutMs, 'ping');
    return true;
  } catch {
    return false;
  } finally {
    s?.destroy();
  }
}

/** Ask the agent to power the guest off (best effort). */
export async function requestPoweroff(control: string): Promise<void> {
  try {
    const s = await connectUnix(control, 1000);
    await new Promise<void>((r) => s.end('POWEROFF\n', () => r()));
    s.destroy();
  } catch { /* the VM may be gone already */ }
}

export interface AgentExec {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  uid: number;
  gid: number;
  stdout: Writable;
  stderr: Writable;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** aborting powers the guest off through this exec's own control connection (the port serves one at a time) */
  poweroff?: AbortSignal;
  /** true while the VM's hypervisor runs (e.g. isAlive of its recorded pid): polled during the wait, so that a VM
   * gone without closing the channel ends it, and a closed channel is told apart from a dead VM */
  vmAlive?: () => Promise<boolean>;
  /** the heartbeat's timing (default HEARTBEAT) */
  heartbeat?: { everyMs: number; silenceMs: number };
}

/** How often a running command's wait checks the hypervisor (a /proc read) and whether a heartbeat is due. */
export const LIVENESS_POLL_MS = 1000;

/** The exec's heartbeat: a PING on its own control connection every `everyMs` (the agent answers from its main
 * loop while the command runs in the background); an agent that answers none for `silenceMs` is given up (a wedged
 * guest or hypervisor). Not a bound on the command: a job that runs for days keeps its agent answering. */
export const HEARTBEAT = { everyMs: 15_000, silenceMs: 300_000 } as const;

/** While a command runs: check the hypervisor and send a heartbeat PING when one is due; `lost` rejects with
 * AgentLostError once the VM is gone or its agent has been silent for too long; `pong` records an answer. Silence
 * counts only across two or more unanswered PINGs: a host process that was itself stopped for a while (its timers
 * fire before it reads the answers waiting in the socket) does not give up on a guest that answered. */
function watchVm(ctl: Socket, hb: { everyMs: number; silenceMs: number }, pingNonce: string,
  vmAlive: (() => Promise<boolean>) | undefined): { lost: Promise<never>; stop: () => void; pong: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let lastPing = performance.now();
  let silentSince = lastPing; // the EXEC itself is the first request the agent has not answered yet
  let unanswered = 1;
  const lost = new Promise<never>((_, reject) => {
    let busy = false;
    const tick = async () => {
      if (busy) return;
      busy = true;
      try {
        if (vmAlive && !(await vmAlive().catch(() => true))) {
          return reject(new AgentLostError('vm-exited', 'exec: the VM\'s hypervisor exited while the command ran; its exit status is unknown'));
        }
        const now = performance.now();
        if (unanswered >= 2 && now - silentSince > hb.silenceMs) {
          return reject(new AgentLostError('unresponsive', `exec: the guest agent answered no heartbeat PING for ${Math.round(hb.silenceMs / 1000)} s ` +
            'while the command ran (a wedged guest or hypervisor); its exit status is unknown'));
        }
        if (now - lastPing >= hb.everyMs && ctl.writable) {
          ctl.write(`PING ${pingNonce}\n`);
          lastPing = now;
          unanswered++;
        }
      } finally {
        busy = false;
      }
    };
    timer = setInterval(() => void tick(), Math.min(LIVENESS_POLL_MS, hb.everyMs));
  });
  return { lost, stop: () => clearInterval(timer), pong: () => { silentSince = performance.now(); unanswered = 0; } };
}

/** A channel that closed while the hypervisor's process is gone, or going (a dying process closes its sockets
 * before it is reaped), is the VM's exit; anything else is passed on as it is. */
async function vmExitedOr(err: unknown, vmAlive: (() => Promise<boolean>) | undefined): Promise<unknown> {
  if (!(err instanceof AgentLostError) || err.reason !== 'channel-closed' || !vmAlive) return err;
  const end = performance.now() + 2000;
  for (;;) {
    if (!(await vmAlive().catch(() => true))) {
      return new AgentLostError('vm-exited', `exec: the VM's hypervisor exited while the command ran (${err.message.replace(/^exec: /, '')})`);
    }
    if (performance.now() >= end) return err;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Run one command through the agent; resolves to its exit code once its exit status and both streams are in. */
export async function agentExec(sockets: { control: string; stdout: string; stderr: string }, req: AgentExec): Promise<number> {
  const script = execScript(req.argv, req.cwd, req.env);
  const nonce = newNonce();
  const marker = Buffer.from(nonce, 'ascii');
  const hb = req.heartbeat ?? HEARTBEAT;
  if (!(hb.everyMs > 0 && hb.silenceMs > hb.everyMs)) throw new AgentError(`exec: the heartbeat's silence bound (${hb.silenceMs} ms) must exceed its interval (${hb.everyMs} ms)`);
  // the output sockets first: guest writes wait until the host side is connected, so nothing is lost
  const out = await connectUnix(sockets.stdout, 5000);
  const err = await connectUnix(sockets.stderr, 5000).catch((e) => { out.destroy(); throw e; });
  const ctl = await connectUnix(sockets.control, 5000).catch((e) => { out.destroy(); err.destroy(); throw e; });
  const closed = (port: string) => () => new AgentLostError('channel-closed', `exec: the VM closed the agent's ${port} channel while the command ran; its exit status is unknown`);
  const stream = (s: Socket, sink: Writable, port: string) => new Promise<void>((resolve, reject) => {
    const strip = new MarkerStripper(marker, (b) => { if (!sink.write(b)) { s.pause(); sink.once('drain', () => s.resume()); } });
    s.on('data', (d: Buffer) => { strip.push(d); if (strip.done) resolve(); });
    s.once('close', () => (strip.done ? resolve() : reject(closed(port)())));
  });
  const pingNonce = newNonce();
  let watch: ReturnType<typeof watchVm> | undefined;
  const exitOrPong = (l: string): number | undefined => {
    if (l.trim() === `PONG ${pingNonce}`) watch?.pong();
    return parseExitLine(l, nonce);
  };
  const onAbort = () => { ctl.write(`TERM ${nonce}\n`); };
  const onPoweroff = () => { ctl.write('POWEROFF\n'); };
  let timer: NodeJS.Timeout | undefined;
  try {
    const done = Promise.all([
      stream(out, req.stdout, 'stdout'),
      stream(err, req.stderr, 'stderr'),
      awaitLine(ctl, exitOrPong, undefined, 'exec', closed('control')),
    ]);
    ctl.write(`EXEC ${nonce} ${req.uid} ${req.gid} ${Buffer.from(script, 'utf8').toString('base64')}\n`);
    if (req.signal) {
      if (req.signal.aborted) onAbort();
      else req.signal.addEventListener('abort', onAbort, { once: true });
    }
    req.poweroff?.addEventListener('abort', onPoweroff, { once: true });
    const timeout = req.timeoutMs === undefined ? undefined : new Promise<never>((_, reject) => {
      timer = setTimeout(() => { onAbort(); reject(new AgentError(`command did not finish within ${req.timeoutMs} ms (TERM sent)`)); }, req.timeoutMs);
    });
    watch = watchVm(ctl, hb, pingNonce, req.vmAlive);
    const [, , code] = await Promise.race([done, watch.lost, ...(timeout ? [timeout] : [])]);
    return code;
  } catch (e) {
    throw await vmExitedOr(e, req.vmAlive);
  } finally {
    watch?.stop();
    if (timer) clearTimeout(timer);
    req.signal?.removeEventListener('abort', onAbort);
    req.poweroff?.removeEventListener('abort', onPoweroff);
    out.destroy(); err.destroy(); ctl.destroy();
  }
}

/** One request on the control port and its one answer line (`<WORD> <nonce> …`): the words after the nonce, or
 * throws AgentError naming the request. `alive` (optional) aborts the wait when the VM is gone. */
export async function agentRequest(control: string, request: (nonce: string) => string, answers: readonly string[],
  timeoutMs: number, what: string): Promise<{ word: string; rest: string[] }> {
  const nonce = newNonce();
  const s = await connectUnix(control, Math.min(timeoutMs, 5000));
  try {
    const got = awaitLine(s, (l) => {
      const f = l.trim().split(' ');
      return f[1] === nonce && (answers.includes(f[0]!) || f[0] === 'ERR') ? { word: f[0]!, rest: f.slice(2) } : undefined;
    }, timeoutMs, what);
    s.write(request(nonce) + '\n');
    return await got;
  } finally {
    s.destroy();
  }
}

/** What the guest agent can do (`CAPS`): e.g. exec, lock, setup, reseed, 9p. An agent without CAPS times out. */
export async function agentCaps(control: string, timeoutMs: number): Promise<string[]> {
  const r = await agentRequest(control, (n) => `CAPS ${n}`, ['CAPS'], timeoutMs, 'caps');
  if (r.word !== 'CAPS') throw new AgentError(`caps: the agent answered ${r.word} ${r.rest.join(' ')}`);
  return r.rest.filter((w) => /^[a-z0-9]{1,16}$/.test(w));
}

/** Hand a restored clone its per-job context (`SETUP`: entropy + reseed + clock, then user, workdir, network);
 * `context` is built at call time by the caller so that the clock is fresh. Throws AgentError with the agent's code. */
export async function agentSetup(control: string, context: () => string, timeoutMs: number): Promise<void> {
  const r = await agentRequest(control, (n) => `SETUP ${n} ${Buffer.from(context(), 'utf8').toString('base64')}`, ['OK'], timeoutMs, 'setup');
  if (r.word !== 'OK') throw new AgentError(`setup: the agent refused the per-job context (${r.rest.join(' ') || 'no reason'})`);
}

/** The one-way lock (`LOCK`): from now on the agent runs commands only as uid:gid and refuses SETUP/LOCK. Sent
 * before the sockets are handed to the job user, who could otherwise ask for uid 0. */
export async function lockAgent(control: string, uid: number, gid: number, timeoutMs = 10_000): Promise<void> {
  if (!Number.isInteger(uid) || uid < 0 || !Number.isInteger(gid) || gid < 0) throw new AgentError(`lock: invalid uid/gid ${uid}/${gid}`, 'vm-agent-lock');
  const r = await agentRequest(control, (n) => `LOCK ${n} ${uid} ${gid}`, ['LOCKED'], timeoutMs, 'lock');
  if (r.word !== 'LOCKED') throw new AgentError(`lock: the agent refused (${r.rest.join(' ') || 'no reason'})`, 'vm-agent-lock');
}

/** Exit code of an EXEC the locked agent refused (another uid/gid than the lock's). */
export const EXIT_LOCKED = 124;
