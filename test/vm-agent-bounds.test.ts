// A hostile guest controls every byte on the agent's control port: the host side must not buffer without bound
// while it waits for an answer line (LOCK, SETUP, CAPS, EXEC status).
import t, { type Test } from 'tap';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentCaps, agentExec, lockAgent, MAX_CONTROL_LINE } from '../src/vm/agent.js';
import { AgentLineTooLong } from '../src/vm/errors.js';
import { collect } from './kit/collect.js';
import { settles } from './kit/settles.js';
import { boundedConsoleChange, qemuArgs, CONSOLE_RING_BYTES } from '../src/vm/qemuArgs.js';

/** A control port whose "guest" answers every request with `bytes` of 'A' and never a newline, then stays open. */
async function floodingGuest(t: Test, bytes: number, newlineAt?: number): Promise<{ path: string; sent: () => number }> {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-agent-'));
  const path = join(dir, 'control.sock');
  let sent = 0;
  const srv: Server = createServer((c) => {
    c.on('error', () => {});
    c.once('data', () => {
      const chunk = Buffer.alloc(64 * 1024, 0x41);
      const pump = () => {
        while (sent < bytes && !c.destroyed) {
          const n = Math.min(chunk.length, bytes - sent);
          const b = Buffer.from(chunk.subarray(0, n));
          if (newlineAt !== undefined && newlineAt >= sent && newlineAt < sent + n) b[newlineAt - sent] = 0x0a;
          sent += n;
          if (!c.write(b)) return void c.once('drain', pump);
        }
      };
      pump();
    });
  });
  await new Promise<void>((r) => srv.listen(path, r));
  t.teardown(async () => { srv.close(); await rm(dir, { recursive: true, force: true }); });
  return { path, sent: () => sent };
}

t.test('LOCK: a guest that sends megabytes without a newline is cut off at the line limit, not waited for', async (t) => {
  const g = await floodingGuest(t, 64 << 20);
  const err = await lockAgent(g.path, 1000, 1000, 600_000).then(() => undefined, (e: Error) => e);
  t.type(err, AgentLineTooLong, `refused as an over-long line (got ${err?.message})`);
  t.equal((err as AgentLineTooLong).code, 'vm-agent-line-too-long');
  t.ok(g.sent() < 64 << 20, 'the host stopped reading long before the guest stopped sending');
});

t.test('CAPS: an over-long line that does end in a newline is refused too', async (t) => {
  const g = await floodingGuest(t, MAX_CONTROL_LINE * 3, MAX_CONTROL_LINE * 2);
  await t.rejects(agentCaps(g.path, 600_000), { code: 'vm-agent-line-too-long' });
});

/** A fake guest behind the agent's three sockets. On EXEC it calls `onExec` with the control connection and the
 * nonce; PING is answered with PONG while `answerPings()` says so. */
async function fakeGuest(t: Test, o: { onExec?: (ctl: Socket, nonce: string, ports: { stdout: Socket; stderr: Socket }) => void;
  answerPings?: () => boolean; onPing?: (ctl: Socket) => void } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-fake-'));
  const conns: Partial<Record<'control' | 'stdout' | 'stderr', Socket>> = {};
  const servers: Server[] = [];
  for (const port of ['control', 'stdout', 'stderr'] as const) {
    const srv = createServer((c) => {
      c.on('error', () => {});
      conns[port] = c;
      if (port !== 'control') return;
      let buf = '';
      c.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const [word, nonce] = buf.slice(0, nl).split(' ');
          buf = buf.slice(nl + 1);
          if (word === 'EXEC') o.onExec?.(c, nonce!, { stdout: conns.stdout!, stderr: conns.stderr! });
          if (word === 'PING' && (o.answerPings?.() ?? true)) { c.write(`PONG ${nonce}\n`); o.onPing?.(c); }
        }
      });
    });
    await new Promise<void>((r) => srv.listen(join(dir, `${port}.sock`), r));
    servers.push(srv);
  }
  t.teardown(async () => { for (const c of Object.values(conns)) c?.destroy(); for (const s of servers) s.close(); await rm(dir, { recursive: true, force: true }); });
  return { control: join(dir, 'control.sock'), stdout: join(dir, 'stdout.sock'), stderr: join(dir, 'stderr.sock') };
}

const execReq = (extra: Partial<Parameters<typeof agentExec>[1]> = {}) => ({ argv: ['/bin/true'], cwd: '/', env: {}, uid: 0, gid: 0,
  stdout: collect(), stderr: collect(), ...extra });

t.test('exec: a control channel that closes while the command runs ends the wait as vm-agent-closed', async (t) => {
  const g = await fakeGuest(t, { onExec: (ctl) => ctl.destroy() });
  await t.rejects(settles(agentExec(g, execReq({ vmAlive: async () => true }))), { code: 'vm-agent-closed', reason: 'channel-closed' });
});

t.test('exec: a closed channel whose hypervisor is gone is reported as the VM\'s exit (vm-gone)', async (t) => {
  let gone = false;
  const g = await fakeGuest(t, { onExec: (ctl) => { gone = true; ctl.destroy(); } });
  await t.rejects(settles(agentExec(g, execReq({ vmAlive: async () => !gone }))), { code: 'vm-gone', reason: 'vm-exited' });
});

t.test('exec: a hypervisor that is gone while every channel stays open ends the wait (vm-gone)', async (t) => {
  let gone = false;
  const g = await fakeGuest(t, { onExec: () => { gone = true; } });
  const err = await settles(agentExec(g, execReq({ vmAlive: async () => !gone }))).then(() => undefined, (e: Error & { code?: string }) => e);
  t.equal(err?.code, 'vm-gone', `the wait ended as vm-gone (${err?.message})`);
  t.match(err?.message, /hypervisor exited while the command ran/);
});

t.test('exec: an agent that answers no heartbeat ends the wait (vm-agent-unresponsive); one that answers is waited for', async (t) => {
  const silent = await fakeGuest(t, { answerPings: () => false });
  await t.rejects(settles(agentExec(silent, execReq({ heartbeat: { everyMs: 20, silenceMs: 200 } }))), { code: 'vm-agent-unresponsive', reason: 'unresponsive' });

  // the command "runs" for 20 heartbeats (several silence bounds) and then exits: the answered PINGs keep it waited for
  let nonce = '';
  let pings = 0;
  let ports: { stdout: Socket; stderr: Socket } | undefined;
  const alive = await fakeGuest(t, {
    onExec: (_c, n, p) => { nonce = n; ports = p; },
    onPing: (ctl) => {
      if (++pings !== 20) return;
      ports!.stdout.write(`long-ish${nonce}`);
      ports!.stderr.write(nonce);
      ctl.write(`EXIT ${nonce} 3\n`);
    },
  });
  const out = collect();
  t.equal(await settles(agentExec(alive, execReq({ stdout: out, heartbeat: { everyMs: 20, silenceMs: 200 } }))), 3, 'the exit status came back');
  t.equal(out.text(), 'long-ish');
  t.equal(pings, 20, 'after 20 answered heartbeats');
});

t.test('the serial console: a file while the image boots, a bounded ring once the guest may be the job\'s', async (t) => {
  const base = {
    machine: 'microvm' as const, accel: 'tcg' as const, cpus: 1, memoryMB: 128, console: '/run/x/console.log', pidfile: '/run/x/pid',
    sockets: { control: '/c', stdout: '/o', stderr: '/e', qmp: '/q' }, network: { mode: 'none' as const },
  };
  t.ok(qemuArgs(base).includes('file,id=con0,path=/run/x/console.log'), 'cold boot: the console file');
  t.ok(qemuArgs({ ...base, consoleRing: CONSOLE_RING_BYTES }).includes(`ringbuf,id=con0,size=${CONSOLE_RING_BYTES}`), 'restored clone: a ring');
  t.same(boundedConsoleChange(), { id: 'con0', backend: { type: 'ringbuf', data: { size: CONSOLE_RING_BYTES } } }, 'the QMP swap after boot');
  t.throws(() => qemuArgs({ ...base, consoleRing: 5000 }), /ring size/);
});

t.test('a real VM: guest output to the serial console after boot does not grow console.log (VMs booted here: 1, TCG)', async (t) => {
  const { probeGuest, findBuiltMiniKernel } = await import('../src/vm/probeGuest.js');
  const { QemuDriver } = await import('../src/vm/qemu.js');
  const { stat } = await import('node:fs/promises');
  const { Writable } = await import('node:stream');
  if (!(await findBuiltMiniKernel())) await (await import('../src/kernel/miniKernel.js')).buildMiniKernel();
  const sd = await mkdtemp(join(tmpdir(), 'wnod-con-'));
  t.teardown(() => rm(sd, { recursive: true, force: true }));
  const g = await probeGuest(sd);
  if (!('guest' in g)) return t.fail(g.missing);
  const d = new QemuDriver({ stateDir: sd, accel: 'tcg' });
  const root = { name: 'root', uid: 0, gid: 0 };
  const st = await d.prepare({ id: 'con', image: { id: 'p', digest: 'p', kind: 'kernel', files: { kernel: g.guest.kernel, initrd: g.guest.initrd },
    cmdline: g.guest.cmdline, acpi: false }, cpus: 1, memoryMB: 256, hostname: 'con', user: root, env: {}, network: { mode: 'none' }, accel: 'tcg' });
  t.teardown(() => d.destroy(st));
  await d.start(st);
  await d.waitReady(st, 120_000);
  const con = join(st.runDir, 'console.log');
  const before = (await stat(con)).size;
  let out = '';
  const sink = new Writable({ write(c, _e, cb) { out += String(c); cb(); } });
  const MB = 1 << 20;
  const rc = await d.exec(st, { argv: ['/bin/sh', '-c', `head -c ${MB} /dev/zero | tr '\\000' x >/dev/ttyS0; echo done`], cwd: '/', env: {}, user: root,
    stdout: sink, stderr: sink, timeoutMs: 120_000 });
  t.equal(rc, 0, `the guest wrote 1 MiB to its console (${out.trim()})`);
  const after = (await stat(con)).size;
  t.ok(after - before < 4096, `console.log grew by ${after - before} bytes, not by the guest's 1 MiB`);
});
