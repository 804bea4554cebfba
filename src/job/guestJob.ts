/** How a job is carried into its VM (pure): the environment it sees in the guest, the command that runs its
 * script there, and the directory it starts in. The job script lives where the LRM keeps it on the host (Torque:
 * mom_priv), which the guest does not see, so its text travels as one argument and is written to a private file
 * inside the guest. */
import { Writable } from 'node:stream';
import { WnodError } from '../util/errors.js';

/** The job cannot be carried into its VM as given (script too large, no shareable workdir …). */
export class GuestJobError extends WnodError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** The PATH jobs get in the guest: the image's own directories, never the host's. */
export const GUEST_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin';

/** The script travels as one argv word of the guest's `env` exec: Linux caps one word at 128 KiB. */
export const MAX_GUEST_SCRIPT_BYTES = 120 * 1024;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Host-only variables: the dynamic loader's and the host's paths and shell state mean nothing (or harm) inside. */
const HOST_ONLY = new Set(['PATH', 'HOME', 'SHELL', 'PWD', 'OLDPWD', 'SHLVL', '_', 'TMPDIR', 'MAIL', 'TERM', 'NODE_OPTIONS', 'NODE_PATH']);

/** The job's environment for the guest: the LRM's variables (PBS_*, SLURM_*) and the user's pass, the host's PATH/LD_* and shell state
 * do not; PATH is the guest's and HOME the shared workdir. Names a shell cannot carry (e.g. exported bash functions)
 * are dropped. */
export function guestJobEnv(hostEnv: Readonly<Record<string, string | undefined>>, home: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(hostEnv)) {
    if (v === undefined || !ENV_NAME.test(k) || HOST_ONLY.has(k) || k.startsWith('LD_') || v.includes('\0')) continue;
    out[k] = v;
  }
  out.PATH = GUEST_PATH;
  out.HOME = home;
  return out;
}

/** The guest command that runs a job script: write it to a fresh private file in the guest and exec it, so its
 * `#!` line chooses the interpreter as it would on the host. An interpreter the image lacks (a minimal image
 * without bash) falls back to /bin/sh, with a note for the admin as the first line of stderr, headed by `noteTag`
 * (a fresh random word per run): guestNoteFilter takes it out of the job's stderr. */
export function guestJobArgv(script: string, args: readonly string[] = [], noteTag = 'wnod:'): string[] {
  if (Buffer.byteLength(script, 'utf8') + args.reduce((n, a) => n + Buffer.byteLength(a, 'utf8') + 1, 0) > MAX_GUEST_SCRIPT_BYTES) {
    throw new GuestJobError('script-too-large', `the job script is larger than ${MAX_GUEST_SCRIPT_BYTES / 1024} KiB, the most wnod can carry into a VM`);
  }
  if (script.includes('\0')) throw new GuestJobError('script-binary', 'the job script contains a NUL byte');
  const wrapper = [
    // mktemp -d makes a 0700 dir; no umask here: the job keeps the guest's own
    'd=$(mktemp -d /tmp/wnod-job.XXXXXX) || exit 125',
    'printf %s "$2" > "$d/job" && chmod 700 "$d/job" || exit 125',
    'tag=$1',
    'shift 2', // the rest are the script's own arguments (sbatch job.sh a b)
    // the shell's own read, not head: under TCG every program a job's wrapper runs costs milliseconds
    'IFS= read -r first < "$d/job" || :',
    'case $first in',
    "  '#!'*) interp=${first#'#!'}; interp=${interp# }; interp=${interp%% *}",
    '         if [ ! -x "$interp" ]; then',
    '           echo "$tag $interp is not in this image; running the job script with /bin/sh" >&2',
    '           exec /bin/sh "$d/job" "$@"',
    '         fi ;;',
    'esac',
    'exec "$d/job" "$@"',
  ].join('\n');
  if (args.some((a) => a.includes('\0'))) throw new GuestJobError('script-binary', 'a job script argument contains a NUL byte');
  return ['/bin/sh', '-c', wrapper, 'wnod-job', noteTag, script, ...args];
}

const MAX_NOTE_BYTES = 1024;

/** The job's stderr without the wrapper's note: a first line headed `<noteTag> ` goes to `onNote` (its text after
 * the tag), everything else to `out` unchanged. Call `flush()` when the job has ended (the sink is never ended). */
export function guestNoteFilter(noteTag: string, out: Writable, onNote: (text: string) => void): Writable & { flush(): void } {
  const prefix = Buffer.from(`${noteTag} `);
  let head: Buffer | undefined = Buffer.alloc(0); // undefined once the first line is decided
  const pass = (b: Buffer, cb: () => void) => { if (b.length === 0 || out.write(b)) cb(); else out.once('drain', cb); };
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (head === undefined) return pass(chunk, cb);
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, prefix.length);
      const nl = head.indexOf(10);
      if (!head.subarray(0, n).equals(prefix.subarray(0, n)) || (nl < 0 && head.length > prefix.length + MAX_NOTE_BYTES)) {
        const all = head;
        head = undefined;
        return pass(all, cb);
      }
      if (nl < 0) return cb();
      onNote(head.subarray(prefix.length, nl).toString('utf8'));
      const rest = head.subarray(nl + 1);
      head = undefined;
      return pass(rest, cb);
    },
  }) as Writable & { flush(): void };
  w.flush = () => { if (head?.length) out.write(head); head = undefined; };
  return w;
}

/** The directory the job starts in inside the guest: the starter's cwd when it lies in the shared workdir (the
 * same path there), else the workdir itself; without a shared workdir, /tmp. */
export function guestCwd(hostCwd: string, workdir: string | undefined): string {
  if (!workdir) return '/tmp';
  const base = workdir.replace(/\/+$/, '') || '/';
  if (hostCwd === base || hostCwd.startsWith(base === '/' ? '/' : `${base}/`)) return hostCwd;
  return base;
}
