/** One accounting record per job (a JSON line): who ran what image with which limits, and how long it took. */
import { WnodError } from '../util/errors.js';
import { LEASE_ID } from '../header/scriptHeader.js';

export interface AccountingRecord {
  v: 1;
  jobId: string;
  /** local unix account the job ran as */
  user: string;
  dn: string;
  /** primary FQAN */
  fqan: string;
  vo: string;
  image: string;
  digest: string;
  cpus: number;
  memoryMB: number;
  /** seconds: VM boot (prologue), job run, VM teardown (epilogue) */
  bootS: number;
  runS: number;
  teardownS: number;
  /** epilogue argv[10]: job rc, 256+signal, or a negative JOB_EXEC code */
  exitStatus: number;
  /** CPU seconds the VM (its QEMU processes) used; the job's cput when no VM ran */
  vmCpuS: number;
  /** ISO time the record was written (the job's end) */
  end: string;
  node: string;
  mode: 'vm' | 'bare';
  /** set when the job was a lease's pilot: the lease id (APEL accounts it as a cloud VM) */
  lease?: string;
}

export class AccountingRecordError extends WnodError {
  constructor(message: string) {
    super('accounting-record', message);
  }
}

const STRING_FIELDS = ['jobId', 'user', 'dn', 'fqan', 'vo', 'image', 'digest', 'end', 'node'] as const;
const NUMBER_FIELDS = ['cpus', 'memoryMB', 'bootS', 'runS', 'teardownS', 'exitStatus', 'vmCpuS'] as const;

/** Check a parsed value is a complete record; the message names the first bad field. Pure. */
export function validateRecord(value: unknown, where = 'record'): AccountingRecord {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new AccountingRecordError(`${where}: not a JSON object`);
  const r = value as Record<string, unknown>;
  if (r.v !== 1) throw new AccountingRecordError(`${where}: field v must be 1`);
  for (const k of STRING_FIELDS) if (typeof r[k] !== 'string') throw new AccountingRecordError(`${where}: field ${k} must be a string`);
  for (const k of NUMBER_FIELDS) if (typeof r[k] !== 'number' || !Number.isFinite(r[k])) throw new AccountingRecordError(`${where}: field ${k} must be a finite number`);
  if (r.mode !== 'vm' && r.mode !== 'bare') throw new AccountingRecordError(`${where}: field mode must be vm or bare`);
  if (r.lease !== undefined && (typeof r.lease !== 'string' || !LEASE_ID.test(r.lease))) throw new AccountingRecordError(`${where}: field lease must be a lease id`);
  if (Number.isNaN(Date.parse(r.end as string))) throw new AccountingRecordError(`${where}: field end is not an ISO time`);
  return r as unknown as AccountingRecord;
}

/** The line written for a record (no newline inside: JSON.stringify escapes them). */
export function formatRecord(rec: AccountingRecord): string {
  validateRecord(rec);
  return JSON.stringify(rec) + '\n';
}
