/** A lease's state is the replay of its notifications (pure): one timestamped event per file, written by the CLI
 * (requested, queued, failed, terminating on delete), by the pilot inside the VM (running, ready, terminating,
 * released, failed) and by recovery (failed). The life cycle only moves forward, so the state is the furthest
 * event reached. Which terminal event came first is judged by the files' mtimes (one clock), not the writers'. */
import { WnodError } from '../util/errors.js';

export const LEASE_EVENTS = ['requested', 'queued', 'running', 'ready', 'terminating', 'released', 'failed'] as const;
export type LeaseEventName = (typeof LEASE_EVENTS)[number];
export type LeaseState = LeaseEventName;
export const TERMINAL: ReadonlySet<LeaseState> = new Set(['released', 'failed']);

/** Who wrote an event. */
export type EventWriter = 'cli' | 'pilot' | 'recovery';

export interface LeaseEvent {
  event: LeaseEventName;
  /** epoch milliseconds by the writer's clock (the pilot's: the guest's, whole seconds) */
  t: number;
  /** epoch milliseconds when the event file was written by the registry's file system (its mtime): one clock for
   * every writer, so the order of a guest's and the host's events is the order they happened in */
  seen?: number;
  by: EventWriter;
  jobId?: string;
  address?: string;   // ready: host:port to ssh to
  hostKey?: string;   // ready: the VM's ssh host public key (`ssh-ed25519 AAAA… comment`)
  node?: string;      // running: the VM's host name
  reason?: string;    // failed, terminating, released
  nodes?: LeaseNode[]; // ready, a lease group's: every VM, vm0 first
}

/** One VM of a lease group, as the pilot reported it ready. */
export interface LeaseNode {
  name: string;            // its host name on the group's private network (vm0, vm1, …)
  address: string;         // host:port at which the CE reaches its ssh (its node's underlay address)
  hostKey: string;         // its ssh host key, made in that VM
  privateAddress: string;  // its address on the group's private network
}

export interface LeaseView {
  state: LeaseState;
  jobId?: string;
  address?: string;
  hostKey?: string;
  reason?: string;
  /** a lease group's VMs (while ready) */
  nodes?: LeaseNode[];
  /** the events in replay order */
  history: LeaseEvent[];
}

export class LeaseEventError extends WnodError {
  constructor(message: string) {
    super('bad-lease-event', message);
  }
}

const RANK = new Map<LeaseEventName, number>(LEASE_EVENTS.map((e, i) => [e, i]));
const TEXT = /^[\x20-\x7e]{0,600}$/;
const ADDRESS = /^[A-Za-z0-9.:[\]-]{1,100}:\d{1,5}$/;
const HOST_KEY = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+=*( [\x21-\x7e]{0,200})?$/;
const JOB_ID = /^[0-9]+(\[[0-9]*\])?(\.[A-Za-z0-9_.-]+)?$/;

/** Parse one event file's text strictly; `file` names it in errors. */
export function parseEvent(text: string, file: string): LeaseEvent {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new LeaseEventError(`${file}: not JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new LeaseEventError(`${file}: not a JSON object`);
  const o = v as Record<string, unknown>;
  const bad = (k: string, why: string) => new LeaseEventError(`${file}: ${k} ${why}`);
  if (typeof o.event !== 'string' || !RANK.has(o.event as LeaseEventName)) throw bad('event', `must be one of ${LEASE_EVENTS.join(', ')}`);
  if (typeof o.t !== 'number' || !Number.isFinite(o.t) || o.t < 0) throw bad('t', 'must be epoch milliseconds');
  if (o.by !== 'cli' && o.by !== 'pilot' && o.by !== 'recovery') throw bad('by', 'must be cli, pilot or recovery');
  const ev: LeaseEvent = { event: o.event as LeaseEventName, t: o.t, by: o.by };
  const str = (k: 'jobId' | 'address' | 'hostKey' | 'node' | 'reason', re: RegExp) => {
    if (o[k] === undefined || o[k] === '') return;
    if (typeof o[k] !== 'string' || !re.test(o[k] as string)) throw bad(k, 'is malformed');
    ev[k] = o[k] as string;
  };
  str('jobId', JOB_ID);
  str('address', ADDRESS);
  str('hostKey', HOST_KEY);
  str('node', /^[A-Za-z0-9.-]{1,253}$/);
  str('reason', TEXT);
  if (o.nodes !== undefined) ev.nodes = parseNodes(o.nodes, bad);
  return ev;
}

const MAX_NODES = 64;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function parseNodes(v: unknown, bad: (k: string, why: string) => LeaseEventError): LeaseNode[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > MAX_NODES) throw bad('nodes', `must be a list of 1..${MAX_NODES} VMs`);
  return v.map((n: unknown, i) => {
    const o = (typeof n === 'object' && n !== null && !Array.isArray(n) ? n : {}) as Record<string, unknown>;
    const field = (k: keyof LeaseNode, re: RegExp): string => {
      if (typeof o[k] !== 'string' || !re.test(o[k] as string)) throw bad(`nodes[${i}].${k}`, 'is malformed');
      return o[k] as string;
    };
    return { name: field('name', /^[A-Za-z0-9-]{1,63}$/), address: field('address', ADDRESS), hostKey: field('hostKey', HOST_KEY), privateAddress: field('privateAddress', IPV4) };
  });
}

/** Replay events into the lease's state (pure). No events = requested (the CLI writes that first anyway). */
export function replay(events: readonly LeaseEvent[]): LeaseView {
  const at = (e: LeaseEvent) => e.seen ?? e.t;
  const history = [...events].sort((a, b) => at(a) - at(b) || RANK.get(a.event)! - RANK.get(b.event)!);
  const view: LeaseView = { state: 'requested', history };
  // the first terminal event decides (a pilot's failed and a later recovery's failed say the same)
  const terminal = history.find((e) => TERMINAL.has(e.event));
  for (const e of history) {
    if (e.jobId) view.jobId ??= e.jobId;
    if (e.event === 'ready') {
      if (e.address) view.address = e.address;
      if (e.hostKey) view.hostKey = e.hostKey;
      if (e.nodes) view.nodes = e.nodes;
    }
    if (!terminal && RANK.get(e.event)! > RANK.get(view.state)!) {
      view.state = e.event;
      if (e.reason) view.reason = e.reason;
    }
  }
  if (terminal) {
    view.state = terminal.event;
    if (terminal.reason) view.reason = terminal.reason;
  }
  if (TERMINAL.has(view.state)) { delete view.address; delete view.nodes; } // nothing answers there any more
  return view;
}

/** The file name of an event: sortable, unique per writer and event. */
export function eventFileName(e: Pick<LeaseEvent, 't' | 'by' | 'event'>, salt: string): string {
  return `${String(Math.floor(e.t)).padStart(13, '0')}-${e.by}-${e.event}-${salt}.json`;
}
