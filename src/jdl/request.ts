// From the parsed temp script to what the policy needs. Pure and forgiving: a bad value costs that value and a
// warning, never the rest of the request.
import type { Assignment, ParsedScript } from './blahScript.js';
import { parseQuotedStrings, parseScriptValue } from './scriptValue.js';

/**
 * What a job asked for and who BLAH says it is. The identity fields are what BLAH wrote, not proof: a user's
 * CeRequirements can write the same variables (blahpd appends them last "so that it takes precedence"), so
 * identity comes from the first assignment only and blahFqans are a hint — trust VOMS-verified FQANs.
 */
export interface JobRequest {
  tags: string[];
  /** Requested tags that are not valid tags (bad characters, too long, undecodable, or a rejected line), shown
   *  printable. Present only when there are some: the job must be refused, never given the default image. */
  badTags?: string[];
  memoryMinMB?: number; memoryMaxMB?: number;
  cpus?: number;
  vo?: string;
  blahFqans: string[];
  proxyPath?: string;
  subject?: string;
  queue?: string; jobId?: string; ceId?: string;
  warnings: string[];
}

export const TAG_PATTERN = /^[A-Za-z0-9._+-]{1,100}$/;
/** Sane ranges: up to 16 TiB of memory, up to 4096 cores for one job. */
export const MAX_MEMORY_MB = 16 * 1024 * 1024;
export const MAX_CPUS = 4096;

const ATTR = {
  tags: 'gluehostapplicationsoftwareruntimeenvironment',
  memMin: 'gluehostmainmemoryramsize_min',
  memMax: 'gluehostmainmemoryramsize_max',
  mpinodes: 'blah_opt_mpinodes',
  smpMin: 'gluehostarchitecturesmpsize_min',
  smp: 'gluehostarchitecturesmpsize',
  cpuNumber: 'cpunumber',
  vo: 'virtualorganisation',
  fqan: 'x509userproxyfqan',
  proxy: 'x509userproxy',
  subject: 'x509userproxysubject',
  queue: 'queue',
  jobId: 'uniquejobid',
  ceId: 'ceid',
} as const;

type Var = NonNullable<ReturnType<ParsedScript['vars']['get']>>;

/** Build the job request from a parsed temp script; every ignored or malformed value becomes a warning. */
export function requestFromScript(parsed: ParsedScript): JobRequest {
  const warnings = [...parsed.warnings];
  const { tags, bad } = readTags(parsed.vars.get(ATTR.tags), warnings);
  for (const r of parsed.rejected ?? []) if (r.name === ATTR.tags) bad.push(`the unreadable value on line ${r.line}`);
  const req: JobRequest = { tags, blahFqans: [], warnings, ...(bad.length > 0 ? { badTags: bad } : {}) };

  const memMin = readCount(parsed.vars.get(ATTR.memMin), 0, MAX_MEMORY_MB, warnings);
  if (memMin !== undefined) req.memoryMinMB = memMin;
  const memMax = readCount(parsed.vars.get(ATTR.memMax), 0, MAX_MEMORY_MB, warnings);
  if (memMax !== undefined) req.memoryMaxMB = memMax;
  if (memMin !== undefined && memMax !== undefined && memMin > memMax) {
    warnings.push(`memory request is empty: minimum ${memMin} MB is above maximum ${memMax} MB`);
  }

  // First source that yields a valid count wins; later ones are only checked.
  for (const key of [ATTR.mpinodes, ATTR.smpMin, ATTR.smp, ATTR.cpuNumber]) {
    const n = readCount(parsed.vars.get(key), 1, MAX_CPUS, warnings);
    if (n !== undefined && req.cpus === undefined) req.cpus = n;
  }

  const vo = readIdentity(parsed.vars.get(ATTR.vo), warnings, (v) =>
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(v) && !/^[0-9]+$/.test(v) ? undefined
      : 'is not a VO name (letters, digits, . _ -, not only digits)');
  if (vo !== undefined) req.vo = vo;
  const proxy = readIdentity(parsed.vars.get(ATTR.proxy), warnings, (v) =>
    /^\/[A-Za-z0-9._\/+@=:-]{1,4095}$/.test(v) && !v.split('/').includes('..') ? undefined
      : 'is not an absolute path of safe characters');
  if (proxy !== undefined) req.proxyPath = proxy;
  const subject = readIdentity(parsed.vars.get(ATTR.subject), warnings, (v) =>
    /^\/[^/]/.test(v) && v.length <= 1024 ? undefined : 'is not a DN in /C=../CN=.. form');
  if (subject !== undefined) req.subject = subject;
  const simple = (v: string) => (/^[A-Za-z0-9._:\/+@=-]{1,512}$/.test(v) ? undefined : 'holds unexpected characters');
  const queue = readIdentity(parsed.vars.get(ATTR.queue), warnings, simple);
  if (queue !== undefined) req.queue = queue;
  const jobId = readIdentity(parsed.vars.get(ATTR.jobId), warnings, simple);
  if (jobId !== undefined) req.jobId = jobId;
  const ceId = readIdentity(parsed.vars.get(ATTR.ceId), warnings, simple);
  if (ceId !== undefined) req.ceId = ceId;

  req.blahFqans = readFqans(parsed.vars.get(ATTR.fqan), warnings);
  return req;
}

function where(v: Var, a?: Assignment): string {
  return a ? `line ${a.line}: ${a.name}${a.index !== undefined ? `[${a.index}]` : ''}` : v.name;
}

/** Tags from the RTE attribute. A string that is not a valid tag is kept apart as bad (the job will be refused as
 * asking for an image this CE does not offer); non-string literals (`Member(42, …)`) cannot name an image and are
 * only warned about. */
function readTags(v: Var | undefined, warnings: string[]): { tags: string[]; bad: string[] } {
  const tags: string[] = [];
  const bad: string[] = [];
  if (!v) return { tags, bad };
  const seen = new Set<string>();
  for (const raw of v.values) {
    const val = parseScriptValue(raw);
    if (val.kind === 'invalid' || val.kind === 'bare') {
      warnings.push(`${v.name}: element ${JSON.stringify(raw.slice(0, 120))} is not a valid ClassAd string` +
        `${val.kind === 'invalid' ? ` (${val.reason})` : ''}; refused`);
      bad.push(printable(raw));
      continue;
    }
    if (val.kind !== 'string') {
      warnings.push(`${v.name}: element ${JSON.stringify(raw)} is not a string; ignored`);
      continue;
    }
    if (!TAG_PATTERN.test(val.value)) {
      warnings.push(`${v.name}: tag ${JSON.stringify(val.value.slice(0, 120))} is not 1-100 characters of ` +
        `A-Z a-z 0-9 . _ + -; refused`);
      bad.push(printable(val.value));
      continue;
    }
    const key = val.value.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    tags.push(val.value);
  }
  return { tags, bad };
}

/** User text for a one-line message: quoted, bounded, every character outside printable ASCII escaped. */
export function printable(s: string, max = 60): string {
  const chars = [...s];
  const shown = chars.slice(0, max).map((c) => (/^[\x20-\x7e]$/.test(c) && c !== '"' && c !== '\\' ? c
    : `\\u{${c.codePointAt(0)!.toString(16)}}`)).join('');
  return `"${shown}${chars.length > max ? '...' : ''}"`;
}

/**
 * A count from the last value (bash: the later line wins). Integers arrive unquoted; a quoted number is still
 * accepted, since a pass-through attribute may be written as text.
 */
function readCount(v: Var | undefined, min: number, max: number, warnings: string[]): number | undefined {
  if (!v || v.values.length === 0) return undefined;
  if (new Set(v.values).size > 1) {
    warnings.push(`${v.name}: several values (${v.values.map((x) => JSON.stringify(x)).join(', ')}); using the last`);
  }
  const raw = v.values[v.values.length - 1]!;
  const val = parseScriptValue(raw);
  let n: number | undefined;
  if (val.kind === 'integer') n = val.value;
  else if (val.kind === 'string' && /^(?:0|[1-9][0-9]{0,15})$/.test(val.value)) n = Number(val.value);
  if (n === undefined) {
    warnings.push(`${v.name}: ${JSON.stringify(raw.slice(0, 60))} is not an integer; ignored`);
    return undefined;
  }
  if (n < min || n > max) {
    warnings.push(`${v.name}: ${n} is outside ${min}..${max}; ignored`);
    return undefined;
  }
  return n;
}

/**
 * An identity attribute: BLAH writes pass-through attributes once, before any CeRequirements line, as the raw
 * string. So take the FIRST assignment, refuse ClassAd-quoted values (those come from CeRequirements), and warn
 * when the attribute was written more than once.
 */
function readIdentity(v: Var | undefined, warnings: string[],
  check: (value: string) => string | undefined): string | undefined {
  if (!v) return undefined;
  const first = firstAssignment(v, warnings);
  if (first.raw === undefined) return undefined;
  const raw = first.raw;
  if (raw.startsWith('"')) {
    warnings.push(`${where(v, first.a)}: quoted value ${JSON.stringify(raw.slice(0, 60))} can only come from ` +
      'CeRequirements, not from BLAH; ignored');
    return undefined;
  }
  const why = check(raw);
  if (why) {
    warnings.push(`${where(v, first.a)}: ${JSON.stringify(raw.slice(0, 60))} ${why}; ignored`);
    return undefined;
  }
  return raw;
}

function firstAssignment(v: Var, warnings: string[]): { raw?: string; a?: Assignment } {
  const as = v.assignments;
  if (as && as.length > 0) {
    if (as.length > 1) {
      warnings.push(`${v.name} is assigned ${as.length} times (lines ${as.map((a) => a.line).join(', ')}); ` +
        `a CeRequirements may be overriding it: using line ${as[0]!.line}`);
    }
    return { raw: as[0]!.raw, a: as[0]! };
  }
  if (v.values.length > 1) warnings.push(`${v.name}: several values; using the first`);
  const raw = v.values[0];
  return raw === undefined ? {} : { raw };
}

function readFqans(v: Var | undefined, warnings: string[]): string[] {
  if (!v) return [];
  const first = firstAssignment(v, warnings);
  if (first.raw === undefined) return [];
  const list = parseQuotedStrings(first.raw);
  if ('error' in list) {
    warnings.push(`${where(v, first.a)}: not a list of quoted FQANs (${list.error}); ignored`);
    return [];
  }
  const fqans: string[] = [];
  for (const item of list.values) {
    const m = /^userFQAN=(.*)$/.exec(item);
    const fqan = m ? m[1]! : item;
    // An empty "userFQAN=" is what BLAH writes for a proxy without VOMS attributes: not an error.
    if (fqan === '') continue;
    if (!/^\/[A-Za-z0-9._\/=*-]{1,511}$/.test(fqan)) {
      warnings.push(`${where(v, first.a)}: ${JSON.stringify(fqan.slice(0, 60))} is not an FQAN; ignored`);
      continue;
    }
    fqans.push(fqan);
  }
  return fqans;
}
