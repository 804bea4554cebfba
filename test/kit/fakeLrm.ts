/** A fake Torque server for tests and benchmarks: `qsub`, `qdel` and `qstat` are small bash scripts (in `binDir`,
 * for `lrm.bin_dir`) that talk to this process through a spool directory, so `wnod lease` runs its real Torque
 * adapter as the user. This process (root) runs every submitted job at once through the pbs_mom harness —
 * prologue → starter → epilogue, qdel as pbs_mom does it (TERM, kill_delay, KILL), walltime enforced — so the real
 * hooks and VMs run. Spool: jobs/<id>/{args,script,cwd,submitted} from qsub (owned by the submitter), `qdel` from
 * qdel, `state` (Q|R|C) from here. Test support only. */
import { chmod, chown, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { writeFileAtomic } from '../../src/util/atomic.js';
import { run } from '../../src/util/run.js';
import { parseJobId } from '../../src/lrm/torque/argv.js';
import type { JobResult, PbsMom, TestUser } from './pbsmom.js';

// the bash texts write `@{` for bash's `${` (a template literal would interpolate it)
const QSUB = String.raw`#!/bin/bash
# fake qsub (wnod tests): hands the job to the fake batch server's spool and prints its id
set -euo pipefail
spool=@SPOOL@
[ $# -ge 1 ] || { echo "qsub: usage: qsub [options] script" >&2; exit 2; }
script="@{!#}"
[ -f "$script" ] && [ -r "$script" ] || { echo "qsub: script file cannot be loaded - No such file or directory" >&2; exit 1; }
id=
for _ in $(seq 1 50); do
  try="$(( (RANDOM * 32768 + RANDOM) % 900000 + 100000 )).fakepbs"
  if mkdir "$spool/jobs/$try" 2>/dev/null; then id=$try; break; fi
done
[ -n "$id" ] || { echo "qsub: cannot allocate a job id" >&2; exit 1; }
d="$spool/jobs/$id"
printf '%s\0' "@{@:1:$#-1}" >"$d/args"
cp "$script" "$d/script"
pwd >"$d/cwd"
: >"$d/submitted"
echo "$id"
`;

const QDEL = String.raw`#!/bin/bash
# fake qdel (wnod tests)
spool=@SPOOL@
for id in "$@"; do
  case $id in *[!0-9A-Za-z.-]*|'') echo "qdel: illegally formed job identifier: $id" >&2; exit 1;; esac
  [ -d "$spool/jobs/$id" ] || { echo "qdel: Unknown Job Id $id" >&2; exit 153; }
  : >"$spool/jobs/$id/qdel" || exit 1
done
`;

const QSTAT = String.raw`#!/bin/bash
# fake qstat (wnod tests): only 'qstat -f -1 ID'
spool=@SPOOL@
id="@{!#}"
case $id in *[!0-9A-Za-z.-]*|'') echo "qstat: illegally formed job identifier: $id" >&2; exit 1;; esac
[ -d "$spool/jobs/$id" ] || { echo "qstat: Unknown Job Id Error $id" >&2; exit 153; }
s=$(cat "$spool/jobs/$id/state" 2>/dev/null || echo Q)
printf 'Job Id: %s\n    Job_Name = %s\n    job_state = %s\n    queue = batch\n' "$id" "$(basename "$(cat "$spool/jobs/$id/cwd" 2>/dev/null || echo STDIN)")" "$s"
`;

interface Running {
  ctrl: AbortController;
  done: Promise<JobResult | undefined>;
}

/** The parts of qsub's command line the harness needs (pure). */
export function parseFakeQsubArgs(args: string[]): { name?: string; resources?: string; queue?: string; jobClass?: string; out?: string; err?: string } {
  const o: ReturnType<typeof parseFakeQsubArgs> = {};
  for (let i = 0; i < args.length; i++) {
    const v = args[i + 1];
    switch (args[i]) {
      case '-N': o.name = v; i++; break;
      case '-l': o.resources = o.resources ? `${o.resources},${v}` : v; i++; break;
      case '-q': o.queue = v; i++; break;
      case '-T': o.jobClass = v; i++; break;
      case '-o': o.out = v; i++; break;
      case '-e': o.err = v; i++; break;
      default: throw new Error(`fake qsub: unsupported argument ${args[i]}`);
    }
  }
  return o;
}

export class FakeLrm {
  readonly binDir: string;
  readonly spool: string;
  /** every job's result once it ended, by id */
  readonly results = new Map<string, JobResult>();
  private readonly jobs = new Map<string, Running>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(private readonly opts: { dir: string; mom: PbsMom; pollMs?: number; log?: (s: string) => void }) {
    this.binDir = join(opts.dir, 'bin');
    this.spool = join(opts.dir, 'spool');
  }

  async start(): Promise<void> {
    await mkdir(this.binDir, { recursive: true });
    await mkdir(join(this.spool, 'jobs'), { recursive: true });
    await chmod(this.opts.dir, 0o755);
    await chmod(this.spool, 0o755);
    await chmod(join(this.spool, 'jobs'), 0o1777);
    for (const [name, text] of [['qsub', QSUB], ['qdel', QDEL], ['qstat', QSTAT]] as const) {
      const p = join(this.binDir, name);
      await writeFile(p, text.replace(/@\{/g, '$' + '{').replace(/@SPOOL@/g, `'${this.spool}'`), { mode: 0o755 });
      await chmod(p, 0o755);
    }
    this.timer = setInterval(() => { void this.poll(); }, this.opts.pollMs ?? 100);
  }

  /** Ids of jobs this server runs or ran. */
  ids(): string[] {
    return [...this.jobs.keys()];
  }

  /** Wait until job `id` ended; its result. */
  async wait(id: string): Promise<JobResult | undefined> {
    return this.jobs.get(id)?.done;
  }

  /** The server forgets a job, as Torque does once keep_completed passed (or a lost server): qstat says unknown. */
  async forget(id: string): Promise<void> {
    parseJobId(id);
    await rm(join(this.spool, 'jobs', id), { recursive: true, force: true });
  }

  /** qdel every running job, wait for all, stop polling. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const j of this.jobs.values()) j.ctrl.abort();
    await Promise.all([...this.jobs.values()].map((j) => j.done));
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (const id of await readdir(join(this.spool, 'jobs')).catch(() => [] as string[])) {
        const d = join(this.spool, 'jobs', id);
        const known = this.jobs.get(id);
        if (known) {
          if (!known.ctrl.signal.aborted && (await stat(join(d, 'qdel')).then(() => true, () => false))) known.ctrl.abort();
          continue;
        }
        if (!(await stat(join(d, 'submitted')).then(() => true, () => false))) continue;
        const ctrl = new AbortController();
        const done = this.runOne(id, d, ctrl).catch((err: unknown) => {
          this.opts.log?.(`fake LRM: job ${id}: ${(err as Error).message}`);
          return undefined;
        });
        this.jobs.set(id, { ctrl, done });
      }
    } finally {
      this.polling = false;
    }
  }

  private async setState(d: string, s: 'Q' | 'R' | 'C'): Promise<void> {
    if (await stat(d).then(() => true, () => false)) await writeFileAtomic(join(d, 'state'), `${s}\n`, 0o644).catch(() => {});
  }

  private async runOne(id: string, d: string, ctrl: AbortController): Promise<JobResult | undefined> {
    await this.setState(d, 'Q');
    const owner = (await stat(d)).uid;
    const user = await userByUid(owner);
    const args = (await readFile(join(d, 'args'), 'utf8')).split('\0').slice(0, -1);
    const q = parseFakeQsubArgs(args);
    const script = await readFile(join(d, 'script'), 'utf8');
    const workdir = (await readFile(join(d, 'cwd'), 'utf8')).trim();
    if (ctrl.signal.aborted || (await stat(join(d, 'qdel')).then(() => true, () => false))) {
      await this.setState(d, 'C'); // deleted while queued: never runs
      return undefined;
    }
    await this.setState(d, 'R');
    const wall = /(?:^|,)walltime=(\d+):(\d\d):(\d\d)(?:,|$)/.exec(q.resources ?? '');
    const r = await this.opts.mom.runJob({
      id, user, workdir, script, name: q.name ?? 'STDIN', queue: q.queue ?? 'batch',
      ...(q.jobClass ? { jobClass: q.jobClass } : {}), ...(q.resources ? { resourceList: q.resources } : {}),
      ...(wall ? { walltimeMs: (Number(wall[1]) * 3600 + Number(wall[2]) * 60 + Number(wall[3])) * 1000 } : {}),
      qdelSignal: ctrl.signal,
    });
    this.results.set(id, r);
    // Torque copies the .o/.e files to -o/-e as the user
    for (const [path, text] of [[q.out, r.stdout], [q.err, r.stderr]] as const) {
      if (path && isAbsolute(path)) {
        await writeFile(path, text, { mode: 0o600 }).then(() => chown(path, user.uid, user.gid)).catch(() => {});
      }
    }
    await this.setState(d, 'C');
    return r;
  }
}

async function userByUid(uid: number): Promise<TestUser> {
  const f = (await run('getent', ['passwd', String(uid)], { timeoutMs: 10_000 })).stdout.trim().split(':');
  const gid = Number(f[3]);
  const group = (await run('getent', ['group', String(gid)], { timeoutMs: 10_000 })).stdout.trim().split(':')[0] ?? f[0]!;
  return { name: f[0]!, uid, gid, group, home: f[5]! };
}
