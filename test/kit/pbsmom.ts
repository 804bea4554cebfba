/** A harness that plays pbs_mom (Torque 6.1.3, DESIGN A2) for fast hook-level tests — the hooks are called exactly
 * as pbs_mom calls them: argv layouts (6.x and 2.5), root vs job user, stdin, env, cwd, sessions, `$prologalarm`,
 * exit-code meaning, the requeue loop, the always-run epilogue, qdel and walltime kills — and as the real pbs_mom
 * showed (test/torque-real.test.ts runs the same hooks under it): every hook and the job run under the job umask
 * (077), the output of a job aborted in its prologue is not delivered (it stays in the node's spool), `$job_starter`
 * runs for every job of the MOM, and the server dispatches one job at a time while a prologue runs.
 * Test support only: never imported by product code. */
import { spawn } from 'node:child_process';
import { mkdir, writeFile, readFile, lstat, chmod, chown, readdir, rm, open } from 'node:fs/promises';
import { constants as osConstants, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { run } from '../../src/util/run.js';

export interface TestUser { name: string; uid: number; gid: number; group: string; home: string }

/** Create (once) an unprivileged user with its own group and home, as the job user of tests. Needs root. */
export async function ensureTestUser(name: string): Promise<TestUser> {
  if (!/^[a-z][a-z0-9_-]{0,30}$/.test(name)) throw new Error(`test user name ${JSON.stringify(name)} is not a safe unix name`);
  const lookup = async (): Promise<TestUser | undefined> => {
    const r = await run('getent', ['passwd', name], { timeoutMs: 10_000 }).catch(() => undefined);
    const f = r?.stdout.trim().split(':');
    if (!f || f.length < 7) return undefined;
    const gid = Number(f[3]);
    const g = (await run('getent', ['group', String(gid)], { timeoutMs: 10_000 })).stdout.trim().split(':')[0] ?? name;
    return { name, uid: Number(f[2]), gid, group: g, home: f[5]! };
  };
  const found = await lookup();
  if (found) return found;
  // Test files run in parallel: useradd fails at once while another holds the /etc/passwd lock, and a racing
  // creation of the same user fails too — retry, and accept whoever created it.
  let why = '';
  for (let i = 0; i < 20; i++) {
    try {
      await run('useradd', ['--create-home', '--user-group', '--shell', '/bin/bash', name], { timeoutMs: 30_000 });
    } catch (err) {
      why = (err as Error).message;
    }
    const made = await lookup();
    if (made) return made;
    await new Promise((r) => setTimeout(r, 100 + 50 * i));
  }
  throw new Error(`could not create test user ${name} with useradd: ${why}`);
}

export type TorqueVersionMode = '6' | '2.5';

export interface MomOptions {
  /** $PBS_HOME/mom_priv; created 0751 root with jobs/ (PBS_HOME's spool/ and aux/ beside it) */
  momPriv: string;
  version?: TorqueVersionMode;
  /** `$prologalarm` in ms (default 300 s); the hook's session is SIGKILLed `alarmMarginMs` before it */
  prologAlarmMs?: number;
  alarmMarginMs?: number;
  /** `$job_starter` path, and `$job_starter_run_privileged` */
  jobStarter?: string;
  jobStarterRunPrivileged?: boolean;
  /** the queue's kill_delay (qdel: SIGTERM, then SIGKILL this much later; Torque default 2 s) */
  killDelayMs?: number;
  /** `$check_poll_time`: walltime → SIGTERM, SIGKILL at the next poll (default 45 s) */
  checkPollMs?: number;
  /** pbs_mom requeues for ever; the harness stops after this many requeues (default 10) */
  requeueLimit?: number;
  /** the job umask every hook and the job run under (Torque's default 077) */
  umask?: number;
  lang?: string;
}

export interface JobSpec {
  id: string;
  user: TestUser;
  name?: string;
  queue?: string;
  account?: string;
  resourceList?: string;
  script: string;
  /** the job's initial dir (cwd of the starter) */
  workdir: string;
  /** qsub -v variables */
  vars?: Record<string, string>;
  /** qsub -T class: prologue.<class>/epilogue.<class> replace the plain hooks when they exist */
  jobClass?: string;
  /** qdel this long after the job started running */
  qdelAfterMs?: number;
  /** qdel when this aborts (at once if it aborted before the job started running) — a fake batch server's qdel */
  qdelSignal?: AbortSignal;
  /** walltime enforcement this long after the job started running */
  walltimeMs?: number;
}

export interface HookRun {
  hook: string;
  path: string;
  argv: string[];
  asUid: number;
  exitCode: number | null;
  signal: string | null;
  /** killed by the `$prologalarm` rule */
  timedOut: boolean;
  /** the file exists but pbs_mom refuses its ownership/mode (a FAILURE, not a skip) */
  badPermissions?: string;
  /** no such hook: pbs_mom goes on as if it succeeded */
  skipped?: boolean;
  sessionId?: number;
}

export interface Attempt {
  prologue?: HookRun;
  prologueUser?: HookRun;
  starter?: HookRun;
  precancel?: HookRun;
  epilogueUser?: HookRun;
  epilogue?: HookRun;
  exitStatus: number;
}

export interface JobResult {
  attempts: Attempt[];
  requeues: number;
  outcome: 'completed' | 'aborted' | 'requeue-limit';
  /** the exit status of the last attempt, as the epilogue saw it */
  exitStatus: number;
  /** contents of the job's .o and .e files as delivered to the user: empty for a job aborted in its prologue */
  stdout: string;
  stderr: string;
  /** false when pbs_mom kept the output in its spool (a prologue abort, the requeue limit) */
  delivered: boolean;
  /** what the node's spool holds (.OU/.ER), delivered or not */
  spool: { stdout: string; stderr: string };
}

/** pbs_mom's JOB_EXEC codes used here. */
export const JOB_EXEC_FAIL2 = -2;
export const JOB_EXEC_OVERLIMIT = -11;
export const JOB_EXEC_RETRY_PROLOGUE = -14;

/** pbs_mom's ownership/mode rule for a hook (pure). Root hooks: uid 0, u+rx, not g/o-writable; user hooks also o+rx. */
export function hookPermissionProblem(st: { uid: number; mode: number; isFile: boolean }, kind: 'root' | 'user'): string | undefined {
  if (!st.isFile) return 'not a regular file';
  if (st.uid !== 0) return `owned by uid ${st.uid}, not root`;
  if ((st.mode & 0o500) !== 0o500) return `mode ${(st.mode & 0o7777).toString(8)} lacks u+rx`;
  if (st.mode & 0o022) return `mode ${(st.mode & 0o7777).toString(8)} is group/other writable`;
  if (kind === 'user' && (st.mode & 0o005) !== 0o005) return `mode ${(st.mode & 0o7777).toString(8)} lacks o+rx (a user hook)`;
  return undefined;
}

/** The prologue's argv as pbs_mom builds it (pure). */
export function prologueArgv(job: JobSpec, scriptPath: string, version: TorqueVersionMode): string[] {
  const a = [job.id, job.user.name, job.user.group, job.name ?? 'STDIN', job.resourceList ?? 'neednodes=1,nodes=1,walltime=01:00:00', job.queue ?? 'batch', job.account ?? ''];
  return version === '6' ? [...a, scriptPath] : a;
}

/** The epilogue's argv as pbs_mom builds it (pure). */
export function epilogueArgv(job: JobSpec, scriptPath: string, version: TorqueVersionMode, sessionId: number, used: string, exitStatus: number): string[] {
  const a = [job.id, job.user.name, job.user.group, job.name ?? 'STDIN', String(sessionId), job.resourceList ?? 'neednodes=1,nodes=1,walltime=01:00:00', used, job.queue ?? 'batch', job.account ?? '', String(exitStatus)];
  return version === '6' ? [...a, scriptPath] : a;
}

function hms(ms: number): string {
  const s = Math.floor(ms / 1000);
  return [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60].map((n) => String(n).padStart(2, '0')).join(':');
}

/** Every process whose session id is `sid` (from /proc/<pid>/stat). */
export async function sessionMembers(sid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // after "pid (comm) ": state ppid pgrp session …
    if (f[3] === String(sid)) out.push(Number(name));
  }
  return out;
}

/** Signal every process of a session (pbs_mom kills the whole session, not only its leader). */
export async function killSession(sid: number, sig: NodeJS.Signals): Promise<number> {
  const pids = await sessionMembers(sid);
  for (const pid of pids) {
    try { process.kill(pid, sig); } catch { /* gone already */ }
  }
  return pids.length;
}

interface SpawnSpec {
  file: string;
  argv: string[];
  argv0?: string;
  uid: number;
  gid: number;
  env: Record<string, string>;
  cwd: string;
  stdinLine?: string;
  out: number | 'ignore';
  err: number | 'ignore';
  /** SIGKILL the session after this long */
  killAfterMs?: number;
  umask: number;
  onStart?: (pid: number) => void;
}

function spawnInSession(s: SpawnSpec): Promise<{ exitCode: number | null; signal: string | null; timedOut: boolean; sessionId: number }> {
  return new Promise((resolve) => {
    // detached = setsid(): the hook is a session leader, as under pbs_mom; the child inherits the umask at fork
    const saved = process.umask(s.umask);
    let child;
    try {
      child = spawn(s.file, s.argv, {
        argv0: s.argv0 ?? s.file, uid: s.uid, gid: s.gid, env: s.env, cwd: s.cwd, detached: true,
        stdio: [s.stdinLine === undefined ? 'ignore' : 'pipe', s.out, s.err],
      });
    } finally {
      process.umask(saved);
    }
    const sid = child.pid ?? -1;
    let timedOut = false;
    const timer = s.killAfterMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      void killSession(sid, 'SIGKILL');
    }, s.killAfterMs);
    if (s.stdinLine !== undefined) {
      child.stdin!.on('error', () => {}); // the hook may exit without reading
      child.stdin!.end(s.stdinLine);
    }
    if (child.pid !== undefined) s.onStart?.(child.pid);
    child.on('error', () => { clearTimeout(timer); resolve({ exitCode: 127, signal: null, timedOut, sessionId: sid }); });
    child.on('exit', (code, signal) => { clearTimeout(timer); resolve({ exitCode: code, signal, timedOut, sessionId: sid }); });
  });
}

/** One pbs_mom with its mom_priv. */
export class PbsMom {
  readonly pbsHome: string;
  readonly version: TorqueVersionMode;
  /** pbs_server sends the MOM its next job only once the running prologue returned */
  private dispatch: Promise<unknown> = Promise.resolve();
  constructor(readonly opts: MomOptions) {
    this.pbsHome = dirname(opts.momPriv);
    this.version = opts.version ?? '6';
  }

  private get umask(): number {
    return this.opts.umask ?? 0o077;
  }

  /** Create mom_priv (0751 root), mom_priv/jobs, spool, aux — as a Torque install has them. */
  async setup(): Promise<void> {
    for (const d of [this.pbsHome, this.opts.momPriv, join(this.opts.momPriv, 'jobs'), join(this.pbsHome, 'spool'), join(this.pbsHome, 'aux')]) {
      await mkdir(d, { recursive: true });
      await chown(d, 0, 0);
      await chmod(d, d.endsWith('spool') ? 0o1777 : 0o751);
    }
  }

  /** Install a hook file (`prologue`, `epilogue.precancel`, `prologue.wnod` …) with the given text, owner and mode. */
  async installHook(name: string, text: string, mode = 0o500, uid = 0): Promise<string> {
    if (!/^(prologue|epilogue)(\.[a-z0-9]+)?$/.test(name)) throw new Error(`not a pbs_mom hook name: ${name}`);
    const path = join(this.opts.momPriv, name);
    await rm(path, { force: true });
    await writeFile(path, text, { mode });
    await chown(path, uid, 0);
    await chmod(path, mode);
    return path;
  }

  private hookEnv(job: JobSpec): Record<string, string> {
    // pbs_mom's own environment plus a few PBS_* — no PBS_JOBID, no -v variables
    return {
      PATH: '/bin:/usr/bin', LANG: this.opts.lang ?? 'C.UTF-8',
      PBS_O_WORKDIR: job.workdir, PBS_NODEFILE: this.nodeFile(job), PBS_NUM_PPN: '1', PBS_NUM_NODES: '1',
      PBS_MSHOST: hostname(), PBS_RESOURCE_NODES: '1',
    };
  }

  /** The job's full environment, as the job (and the starter) sees it. */
  jobEnv(job: JobSpec): Record<string, string> {
    return {
      HOME: job.user.home, USER: job.user.name, LOGNAME: job.user.name, SHELL: '/bin/bash',
      PATH: job.vars?.PATH ?? '/usr/local/bin:/usr/bin:/bin', LANG: this.opts.lang ?? 'C.UTF-8',
      PBS_JOBID: job.id, PBS_JOBNAME: job.name ?? 'STDIN', PBS_QUEUE: job.queue ?? 'batch', PBS_O_QUEUE: job.queue ?? 'batch',
      PBS_O_WORKDIR: job.workdir, PBS_O_HOME: job.user.home, PBS_O_LOGNAME: job.user.name, PBS_O_SHELL: '/bin/bash',
      PBS_O_HOST: hostname(), PBS_O_PATH: '/usr/local/bin:/usr/bin:/bin', PBS_ENVIRONMENT: 'PBS_BATCH',
      PBS_NODEFILE: this.nodeFile(job), PBS_NODENUM: '0', PBS_TASKNUM: '1', PBS_VNODENUM: '0', PBS_MOMPORT: '15003',
      PBS_NP: '1', PBS_NUM_PPN: '1', PBS_NUM_NODES: '1',
      ...job.vars,
    };
  }

  scriptPath(job: JobSpec): string {
    return join(this.opts.momPriv, 'jobs', `${job.id}.SC`);
  }

  private nodeFile(job: JobSpec): string {
    return join(this.pbsHome, 'aux', job.id);
  }

  /** pbs_mom's choice between `prologue.<class>` and the plain hook. */
  private async pickHook(base: 'prologue' | 'epilogue', job: JobSpec): Promise<string> {
    if (job.jobClass) {
      const classed = join(this.opts.momPriv, `${base}.${job.jobClass}`);
      if (await lstat(classed).then(() => true, () => false)) return classed;
    }
    return join(this.opts.momPriv, base);
  }

  private async runHook(hook: string, path: string, argv: string[], kind: 'root' | 'user', job: JobSpec, out: number | 'ignore', err: number | 'ignore'): Promise<HookRun> {
    const asUid = kind === 'root' ? 0 : job.user.uid;
    const base: HookRun = { hook, path, argv, asUid, exitCode: null, signal: null, timedOut: false };
    const st = await lstat(path).catch(() => undefined);
    if (!st) return { ...base, skipped: true, exitCode: 0 };
    const problem = hookPermissionProblem({ uid: st.uid, mode: st.mode, isFile: st.isFile() }, kind);
    if (problem) return { ...base, badPermissions: problem, exitCode: -1 };
    const alarm = this.opts.prologAlarmMs ?? 300_000;
    const r = await spawnInSession({
      file: path, argv, uid: asUid, gid: kind === 'root' ? 0 : job.user.gid, env: this.hookEnv(job),
      cwd: kind === 'root' ? this.opts.momPriv : job.user.home, out, err, umask: this.umask,
      killAfterMs: Math.max(0, alarm - (this.opts.alarmMarginMs ?? 10_000)),
    });
    // root hooks get stdin /dev/null ('ignore' opens /dev/null)
    return { ...base, ...r };
  }

  /** Run one job through the pbs_mom life cycle, requeue loop included. */
  async runJob(job: JobSpec): Promise<JobResult> {
    const outPath = join(this.pbsHome, 'spool', `${job.id}.OU`);
    const errPath = join(this.pbsHome, 'spool', `${job.id}.ER`);
    const script = this.scriptPath(job);
    const attempts: Attempt[] = [];
    let outcome: JobResult['outcome'] = 'completed';
    for (;;) {
      await this.stageJob(job, script, outPath, errPath);
      const out = await open(outPath, 'a');
      const err = await open(errPath, 'a');
      try {
        const a = await this.attempt(job, script, out.fd, err.fd);
        attempts.push(a);
        if (a.exitStatus === JOB_EXEC_RETRY_PROLOGUE) {
          if (attempts.length > (this.opts.requeueLimit ?? 10)) { outcome = 'requeue-limit'; break; }
          continue;
        }
        if (a.exitStatus === JOB_EXEC_FAIL2) outcome = 'aborted';
        break;
      } finally {
        await out.close();
        await err.close();
        await rm(script, { force: true });
        await rm(this.nodeFile(job), { force: true });
      }
    }
    const spool = { stdout: await readFile(outPath, 'utf8').catch(() => ''), stderr: await readFile(errPath, 'utf8').catch(() => '') };
    // pbs_mom delivers the output of a job that ran; an abort in the prologue leaves it in the spool for good
    const delivered = attempts.at(-1)!.starter !== undefined;
    return {
      attempts, requeues: attempts.length - 1, outcome, exitStatus: attempts.at(-1)!.exitStatus,
      stdout: delivered ? spool.stdout : '', stderr: delivered ? spool.stderr : '', delivered, spool,
    };
  }

  private async stageJob(job: JobSpec, script: string, outPath: string, errPath: string): Promise<void> {
    await writeFile(script, job.script, { mode: 0o500 });
    await chown(script, job.user.uid, job.user.gid);
    await writeFile(this.nodeFile(job), `${hostname()}\n`, { mode: 0o644 });
    for (const p of [outPath, errPath]) {
      await writeFile(p, '', { flag: 'a', mode: 0o600 });
      await chown(p, job.user.uid, job.user.gid);
    }
  }

  private async attempt(job: JobSpec, script: string, out: number, err: number): Promise<Attempt> {
    const a: Attempt = { exitStatus: 0 };
    const pro = await this.pickHook('prologue', job);
    // one job at a time while a prologue runs (pbs_server waits for the MOM's answer before the next job)
    const turn = this.dispatch.then(() => this.runHook('prologue', pro, prologueArgv(job, script, this.version), 'root', job, out, err));
    this.dispatch = turn.catch(() => undefined);
    a.prologue = await turn;
    const p = a.prologue;
    let sessionId = 0;
    let t0 = Date.now();
    if (p.exitCode === 0 && !p.timedOut && !p.badPermissions) {
      a.prologueUser = await this.runHook('prologue.user', join(this.opts.momPriv, 'prologue.user'), prologueArgv(job, script, this.version), 'user', job, out, err);
      t0 = Date.now();
      const r = await this.runStarter(job, script, out, err, a);
      sessionId = r.sessionId;
      a.exitStatus = r.exitStatus;
    } else if (p.exitCode === 1 && !p.timedOut) {
      a.exitStatus = JOB_EXEC_FAIL2;        // 1 = abort the job, permanently
    } else {
      a.exitStatus = JOB_EXEC_RETRY_PROLOGUE; // any other code, a timeout or bad permissions = requeue
    }
    // the epilogue always runs once the job reached the node
    const used = `cput=00:00:00,vmem=0kb,walltime=${hms(Date.now() - t0)},mem=0kb,energy_used=0`;
    const eArgv = epilogueArgv(job, script, this.version, sessionId, used, a.exitStatus);
    a.epilogueUser = await this.runHook('epilogue.user', join(this.opts.momPriv, 'epilogue.user'), eArgv, 'user', job, out, err);
    a.epilogue = await this.runHook('epilogue', await this.pickHook('epilogue', job), eArgv, 'root', job, out, err);
    return a;
  }

  private async runStarter(job: JobSpec, script: string, out: number, err: number, a: Attempt): Promise<{ exitStatus: number; sessionId: number }> {
    const privileged = this.opts.jobStarterRunPrivileged === true;
    const shell = '/bin/bash';
    const [file, argv, argv0] = this.opts.jobStarter ? [this.opts.jobStarter, [shell], this.opts.jobStarter] : [shell, [], '-bash'];
    const timers: NodeJS.Timeout[] = [];
    let sid = -1;
    let killedFor: 'qdel' | 'walltime' | undefined;
    let pendingQdel: Promise<void> | undefined;
    let pendingWall: Promise<void> | undefined;
    let onQdel: (() => void) | undefined;
    const r = await spawnInSession({
      file, argv, argv0, uid: privileged ? 0 : job.user.uid, gid: privileged ? 0 : job.user.gid,
      env: this.jobEnv(job), cwd: job.workdir, stdinLine: `${script}\n`, out, err, umask: this.umask,
      onStart: (pid) => {
        sid = pid;
        if (job.qdelAfterMs !== undefined) timers.push(setTimeout(() => { killedFor ??= 'qdel'; pendingQdel = this.qdel(job, script, sid, a); }, job.qdelAfterMs));
        onQdel = () => { killedFor ??= 'qdel'; pendingQdel ??= this.qdel(job, script, sid, a); };
        if (job.qdelSignal?.aborted) onQdel();
        else job.qdelSignal?.addEventListener('abort', onQdel, { once: true });
        if (job.walltimeMs !== undefined) {
          timers.push(setTimeout(() => {
            killedFor ??= 'walltime';
            pendingWall = (async () => {
              await killSession(sid, 'SIGTERM');
              await new Promise((res) => setTimeout(res, this.opts.checkPollMs ?? 45_000));
              await killSession(sid, 'SIGKILL');
            })();
          }, job.walltimeMs));
        }
      },
    });
    // a qdel in progress finishes (precancel result, the SIGKILL of what is left of the session) before the epilogue
    for (const t of timers) clearTimeout(t);
    if (onQdel) job.qdelSignal?.removeEventListener('abort', onQdel);
    if (pendingQdel) await pendingQdel;
    if (pendingWall) await pendingWall;
    // the job is over when its top process ends: pbs_mom kills what is left of the job's session
    await killSession(r.sessionId, 'SIGKILL');
    a.starter = { hook: 'starter', path: file, argv, asUid: privileged ? 0 : job.user.uid, exitCode: r.exitCode, signal: r.signal, timedOut: false, sessionId: r.sessionId };
    if (killedFor === 'walltime') return { exitStatus: JOB_EXEC_OVERLIMIT, sessionId: r.sessionId };
    const status = r.exitCode ?? 256 + (r.signal ? (osConstants.signals as Record<string, number>)[r.signal] ?? 0 : 0);
    return { exitStatus: status, sessionId: r.sessionId };
  }

  /** qdel: epilogue.precancel (as the user, output discarded, blocks), SIGTERM to the session, SIGKILL after kill_delay. */
  private async qdel(job: JobSpec, script: string, sid: number, a: Attempt): Promise<void> {
    a.precancel = await this.runHook('epilogue.precancel', join(this.opts.momPriv, 'epilogue.precancel'),
      epilogueArgv(job, script, this.version, sid, 'cput=00:00:00', 0), 'user', job, 'ignore', 'ignore');
    await killSession(sid, 'SIGTERM');
    await new Promise((r) => setTimeout(r, this.opts.killDelayMs ?? 2000));
    await killSession(sid, 'SIGKILL');
  }
}
