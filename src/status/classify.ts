/** `wnod status`'s verdict (pure): from the facts gathered on a node (src/status/gather.ts) to its health, the
 * problems behind it, the Nagios first line and exit code, and what the batch system's health hooks do with it.
 *
 *   broken   = this node cannot boot VMs: the batch system must stop sending it wnod jobs (Nagios CRITICAL)
 *   degraded = jobs run, but worse than they should (slow, cold boots, a filling cache): an admin should look (WARNING)
 *   ok       = nothing to do (OK)
 * A status that could not be computed at all is UNKNOWN (exit 3), as is a bad command line. */

export type Health = 'ok' | 'degraded' | 'broken';
export type Severity = 'degraded' | 'broken';

export interface Problem {
  /** stable, machine-matchable */
  code: string;
  message: string;
  severity: Severity;
}

/** A directory wnod writes to, as seen without writing to it. */
export interface DirFacts {
  path: string;
  /** 'missing' is fine for a node that never ran a job: wnod creates it on first use */
  kind: 'dir' | 'missing' | 'symlink' | 'other';
  uid?: number;
  /** access(W_OK): false on a read-only mount (root passes mode checks) */
  writable?: boolean;
  /** the file system holding it (or, when missing, its nearest existing parent) */
  fs?: { totalBytes: number; availBytes: number; totalInodes: number; freeInodes: number };
  /** set when looking at it failed (EACCES, EIO …) */
  error?: string;
}

export interface AccelFacts {
  /** what jobs get; with source 'pending' (no verdict yet for this host kernel, QEMU and probe guest) what the next
   * VM start will try first: KVM when /dev/kvm is usable (its probe boot decides), else TCG */
  kind: 'kvm' | 'tcg';
  /** src/vm/accel.ts AccelStatus.source */
  source: 'config' | 'no-kvm' | 'probe' | 'no-guest' | 'pending';
  reason: string;
  mode: 'auto' | 'kvm' | 'tcg';
  kvmUsable: boolean;
  /** the probe's verdict time (ISO) and how long the probe took */
  probedAt?: string;
  probeMs?: number;
}

export type VmRunState = 'booting' | 'running' | 'stopping' | 'dead';

export interface VmFacts {
  id: string;
  jobId: string | null;
  image: string;
  state: VmRunState;
}

export interface CacheFacts {
  dir: DirFacts;
  /** whose the directory must be (the uid running the hooks: root) */
  wantUid: number;
  bytes: number;
  highWatermarkBytes: number;
  lowWatermarkBytes: number;
  entries: number;
  /** entries a VM holds */
  inUse: number;
  /** entries without a valid record (crash leftovers; `wnod cache gc` or eviction removes them) */
  broken: number;
}

export interface TemplateFacts {
  image: string;
  cpus: number;
  memoryMB: number;
  network: string;
  accel: 'kvm' | 'tcg';
  createdAt: string;
  bytes: number;
  /** undefined = fresh: the next job of this image and shape restores from it */
  stale?: string;
}

export interface TemplatesFacts {
  enabled: boolean;
  ready: TemplateFacts[];
  /** keys whose guest cannot be snapshotted, or whose build is backing off, with why */
  refused: { key: string; reason: string }[];
  /** the configured kernel images with their default shape (what templates are built for) */
  wanted: { image: string; cpus: number; memoryMB: number }[];
}

/** One decision of the hooks, from the root log (src/job/log.ts). */
export interface LogEvent {
  time: string;
  event: string;
  code?: string;
  job?: string;
}

export interface FailureFacts {
  windowS: number;
  /** `<event>:<code>` → count within the window (refusals, requeues, teardown failures) */
  byReason: Record<string, number>;
  /** VM starts within the window that succeeded / failed (requeues with a vm-* code) */
  bootsOk: number;
  bootsFailed: number;
  /** the last VM starts failed, this many in a row (0: the last one worked, or none) */
  failingStreak: number;
  logError?: string;
}

export interface StatusFacts {
  /** ms since the epoch, when the facts were gathered */
  now: number;
  configPath: string;
  /** the config could not be loaded: nothing else was gathered */
  configError?: string;
  driver?: 'qemu' | 'libvirt';
  /** the program the driver needs (qemu-system-x86_64, or virsh for libvirt), and where PATH found it */
  binary?: { name: string; path?: string; pathVar: string };
  accel?: AccelFacts;
  stateDir?: DirFacts;
  vms?: VmFacts[];
  badRecords?: string[];
  bootSlots?: { total: number; inUse: number };
  cache?: CacheFacts;
  templates?: TemplatesFacts;
  failures?: FailureFacts;
}

/** Below this much free space a file system counts as full (capped at 1% of a small one, e.g. a test tmpfs). */
export const FULL_FREE_BYTES = 64 * 2 ** 20;
/** This many failed VM starts in a row (and none since) make the node degraded. */
export const FAILING_STREAK = 3;

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** Human size: 1.2 GiB, 340 MiB, 12 KiB. */
export function size(bytes: number): string {
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(1)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(0)} MiB`;
  return `${Math.ceil(bytes / 1024)} KiB`;
}

/** Human age: 45 s, 12 min, 3 h, 2 d. */
export function age(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

/** Is this file system full: too little space, or no inode left? */
export function fsFull(fs: NonNullable<DirFacts['fs']>): boolean {
  const floor = Math.min(FULL_FREE_BYTES, Math.floor(fs.totalBytes / 100));
  return fs.availBytes <= floor || (fs.totalInodes > 0 && fs.freeInodes === 0);
}

/** What is wrong with a directory wnod must write to (undefined: nothing). */
function dirProblem(d: DirFacts, what: string, wantUid?: number): string | undefined {
  if (d.error) return `${what} ${d.path} cannot be read: ${d.error}`;
  if (d.kind === 'symlink') return `${what} ${d.path} is a symbolic link (wnod refuses it)`;
  if (d.kind === 'other') return `${what} ${d.path} is not a directory`;
  if (d.writable === false) return `${what} ${d.path} ${d.kind === 'missing' ? 'cannot be created (its parent is' : 'is not writable (it is'} on a read-only file system or not ours)`;
  if (wantUid !== undefined && d.kind === 'dir' && d.uid !== undefined && d.uid !== wantUid) return `${what} ${d.path} is owned by uid ${d.uid}, not ${wantUid} (wnod refuses it)`;
  return undefined;
}

/** Every problem of the node, worst first. Pure. */
export function problemsOf(f: StatusFacts): Problem[] {
  const out: Problem[] = [];
  const broken = (code: string, message: string) => out.push({ code, message, severity: 'broken' });
  const degraded = (code: string, message: string) => out.push({ code, message, severity: 'degraded' });
  if (f.configError !== undefined) {
    broken('config-invalid', `the site config ${f.configPath} cannot be used: ${f.configError.split('\n')[0]}`);
    return out;
  }
  if (f.binary && !f.binary.path) {
    broken(f.driver === 'libvirt' ? 'no-virsh' : 'no-qemu', `${f.binary.name} is not in PATH (${f.binary.pathVar}): no VM can start` +
      ` (install ${f.driver === 'libvirt' ? 'libvirt-clients' : 'qemu-system-x86'})`);
  }
  if (f.accel) {
    const a = f.accel;
    if (a.mode === 'kvm' && !a.kvmUsable) broken('kvm-unusable', 'vm.accel is kvm but /dev/kvm is not usable here: every VM start fails (set vm.accel: auto or fix /dev/kvm)');
    if (a.source === 'probe' && a.kind === 'tcg') degraded('kvm-probe-failed', `the KVM probe boot failed, so jobs run under TCG (much slower): ${a.reason}`);
    if (a.source === 'no-guest' && a.kvmUsable) degraded('no-probe-guest', `KVM was not probed (so jobs run under TCG): ${a.reason}`);
  }
  if (f.stateDir) {
    const p = dirProblem(f.stateDir, 'the state directory (vm.state_dir)');
    if (p) broken('state-dir', `${p}: VMs cannot be recorded`);
    else if (f.stateDir.fs && fsFull(f.stateDir.fs)) broken('state-dir-full', `the file system of the state directory ${f.stateDir.path} is full (${size(f.stateDir.fs.availBytes)} free): VM overlays and records cannot be written`);
  }
  if (f.cache) {
    const c = f.cache;
    const p = dirProblem(c.dir, 'the image cache (cache.dir)', c.wantUid);
    if (p) broken('cache-dir', `${p}: images cannot be fetched`);
    else if (c.dir.fs && fsFull(c.dir.fs)) broken('cache-full', `the file system of the image cache ${c.dir.path} is full (${size(c.dir.fs.availBytes)} free): images cannot be fetched`);
    else {
      if (c.bytes > c.highWatermarkBytes) degraded('cache-over-watermark', `the image cache holds ${size(c.bytes)}, above its high watermark ${size(c.highWatermarkBytes)}: what is above is in use by VMs`);
      if (c.dir.fs && c.dir.fs.availBytes + c.bytes < c.highWatermarkBytes) {
        degraded('cache-fs-small', `the image cache may grow to ${size(c.highWatermarkBytes)} but its file system has room for ${size(c.dir.fs.availBytes + c.bytes)}: lower cache.high_watermark_gb or free space`);
      }
    }
    if (c.broken > 0) degraded('cache-entries-broken', `${c.broken} image cache entr${c.broken === 1 ? 'y has' : 'ies have'} no valid record (run \`wnod cache gc\`)`);
  }
  if (f.badRecords?.length) degraded('vm-records-bad', `${f.badRecords.length} VM record${f.badRecords.length === 1 ? ' is' : 's are'} unreadable: ${f.badRecords[0]}`);
  const dead = (f.vms ?? []).filter((v) => v.state === 'dead');
  if (dead.length) degraded('vms-dead', `${dead.length} VM${dead.length === 1 ? '' : 's'} recorded but not running (${dead.map((v) => v.id).slice(0, 3).join(', ')}): run \`wnod gc\``);
  for (const s of staleWithoutFresh(f.templates)) {
    degraded('template-stale', `the snapshot template of ${s.image} (${s.cpus} cpu, ${s.memoryMB} MB) is stale (${s.stale}): its jobs cold boot until a new one is built`);
  }
  if (f.failures && f.failures.failingStreak >= FAILING_STREAK) {
    degraded('boots-failing', `the last ${f.failures.failingStreak} VM starts on this node failed (see the root log)`);
  }
  return out.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'broken' ? -1 : 1));
}

/** Stale templates of an image and shape that has no fresh one (their jobs cold boot). Pure. */
export function staleWithoutFresh(t: TemplatesFacts | undefined): TemplateFacts[] {
  if (!t) return [];
  const shape = (x: TemplateFacts) => `${x.image}|${x.cpus}|${x.memoryMB}|${x.network}`;
  const fresh = new Set(t.ready.filter((x) => !x.stale).map(shape));
  const seen = new Set<string>();
  return t.ready.filter((x) => x.stale && !fresh.has(shape(x)) && !seen.has(shape(x)) && seen.add(shape(x)));
}

/** The health the problems add up to. Pure. */
export function healthOf(problems: readonly Problem[]): Health {
  if (problems.some((p) => p.severity === 'broken')) return 'broken';
  return problems.length ? 'degraded' : 'ok';
}

/** Nagios: 0 OK, 1 WARNING, 2 CRITICAL (3 UNKNOWN is for a status that could not be computed). */
export function exitCodeOf(h: Health): 0 | 1 | 2 {
  return h === 'ok' ? 0 : h === 'degraded' ? 1 : 2;
}

export const NAGIOS_WORD: Record<Health | 'unknown', string> = { ok: 'OK', degraded: 'WARNING', broken: 'CRITICAL', unknown: 'UNKNOWN' };

/** One short line of what the node is doing (for the OK line). Pure. */
export function summaryOf(f: StatusFacts): string {
  const parts: string[] = [];
  const vms = f.vms ?? [];
  const running = vms.filter((v) => v.state === 'running').length;
  const booting = vms.filter((v) => v.state === 'booting').length;
  parts.push(`${running} VM${running === 1 ? '' : 's'} running${booting ? `, ${booting} booting` : ''}`);
  if (f.accel) {
    const a = f.accel;
    parts.push(a.source === 'pending' ? `${a.kind.toUpperCase()} (not probed yet)` : `${a.kind.toUpperCase()}${a.probedAt ? ` (probed ${age((f.now - Date.parse(a.probedAt)) / 1000)} ago)` : ''}`);
  }
  if (f.cache) parts.push(`cache ${size(f.cache.bytes)} of ${size(f.cache.highWatermarkBytes)}`);
  if (f.failures) {
    const n = Object.values(f.failures.byReason).reduce((a, b) => a + b, 0);
    parts.push(`${n} failure${n === 1 ? '' : 's'} in ${age(f.failures.windowS)}`);
  }
  return parts.join(', ');
}

/** Keep one line short and printable (a Torque node message, a Slurm reason, a Nagios line). Pure. */
export function oneLine(text: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const s = text.replace(/[\u0000-\u001f\u007f"]+/g, ' ').replace(/\s+/g, ' ').trim();
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** The Nagios plugin's first line: `WNOD OK - <summary>`, or the problems for WARNING/CRITICAL. Pure. */
export function nagiosLine(health: Health, problems: readonly Problem[], summary: string): string {
  const text = health === 'ok' ? summary : problems.map((p) => p.message).join('; ');
  return `WNOD ${NAGIOS_WORD[health]} - ${oneLine(text, 1000)}`;
}

/** What pbs_mom's $node_check_script must print: a line starting `ERROR` marks the node down with it as the node's
 * message; anything else (here: nothing) leaves it up and clears an earlier message. Only a broken node goes down:
 * a degraded one still runs jobs. Pure. */
export function torqueCheckOutput(health: Health | 'unknown', problems: readonly Problem[]): string {
  if (health !== 'broken') return '';
  // pbs_mom keeps at most ~1 KiB of it (PBSNodeMsgBuf, MAXLINE)
  return `ERROR ${oneLine(`wnod: ${problems.filter((p) => p.severity === 'broken').map((p) => p.message).join('; ')}`, 900)}\n`;
}

/** Prefix of every Slurm drain reason wnod sets: how it recognises its own drains (and never resumes others'). */
export const SLURM_REASON_PREFIX = 'wnod:';

export type SlurmAction = { kind: 'drain'; reason: string } | { kind: 'resume' } | { kind: 'none'; why: string };

/** What the Slurm HealthCheckProgram does: drain a broken node with wnod's reason (unless someone else drained
 * it: their reason stays), resume a node wnod drained once it is fixed, leave everything else alone. Pure. */
export function slurmAction(health: Health | 'unknown', problems: readonly Problem[], node: { state: string; reason: string }): SlurmAction {
  const flags = node.state.toLowerCase();
  const drained = /drain/.test(flags);
  const ours = node.reason.startsWith(SLURM_REASON_PREFIX);
  if (health === 'broken') {
    const reason = oneLine(`${SLURM_REASON_PREFIX} ${problems.filter((p) => p.severity === 'broken').map((p) => p.message).join('; ')}`, 200);
    if (drained && !ours) return { kind: 'none', why: `already drained by someone else (${node.reason || 'no reason'}): left as it is` };
    if (drained && node.reason === reason) return { kind: 'none', why: 'already drained by wnod for this reason' };
    return { kind: 'drain', reason };
  }
  if (health === 'unknown') return { kind: 'none', why: 'the status could not be computed: the node is left as it is' };
  if (drained && ours) return { kind: 'resume' };
  return { kind: 'none', why: drained ? `drained by someone else (${node.reason || 'no reason'}): not wnod's to resume` : 'healthy' };
}
