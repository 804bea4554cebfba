/** A minimal QMP client (QEMU's JSON monitor on a Unix socket): the greeting, qmp_capabilities, commands, events. */
import { connect, type Socket } from 'node:net';
import { AgentError } from './errors.js';

export interface QmpEvent {
  event: string;
  data?: unknown;
}

export class QmpClient {
  private buf = '';
  private listeners: Array<(e: QmpEvent) => void> = [];
  private pending: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];

  private constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => this.onData(d.toString('utf8')));
    sock.on('error', () => {});
    sock.on('close', () => {
      for (const p of this.pending.splice(0)) p.reject(new AgentError('QMP connection closed'));
    });
  }

  /** Connect, read the greeting and enter command mode, all within timeoutMs. */
  static async connect(path: string, timeoutMs: number): Promise<QmpClient> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path);
      const t = setTimeout(() => { s.destroy(); reject(new AgentError(`QMP ${path}: connect timed out`)); }, timeoutMs);
      s.once('connect', () => { clearTimeout(t); resolve(s); });
      s.once('error', (e) => { clearTimeout(t); reject(e); });
    });
    const c = new QmpClient(sock);
    const greeting = new Promise<unknown>((resolve, reject) => c.pending.push({ resolve, reject }));
    const t = setTimeout(() => sock.destroy(), timeoutMs);
    try {
      await greeting;
      await c.execute('qmp_capabilities');
    } finally {
      clearTimeout(t);
    }
    return c;
  }

  private onData(text: string): void {
    this.buf += text;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (typeof msg.event === 'string') {
        for (const l of this.listeners) l(msg as unknown as QmpEvent);
      } else if ('QMP' in msg || 'return' in msg || 'error' in msg) {
        const p = this.pending.shift();
        if (!p) continue;
        if ('error' in msg) p.reject(new AgentError(`QMP error: ${JSON.stringify(msg.error)}`));
        else p.resolve(msg.return ?? msg.QMP);
      }
    }
  }

  /** Run one QMP command and return its result. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  onEvent(fn: (e: QmpEvent) => void): void {
    this.listeners.push(fn);
  }

  close(): void {
    this.sock.destroy();
  }
}
