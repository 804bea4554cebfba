/** The accounting file: JSON lines appended under an exclusive lock (`<file>.lock`), 0600; read back skipping and
 * counting corrupt lines (a crash mid-write or a hand edit must not hide the rest). */
import { open, mkdir, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname } from 'node:path';
import { withLock } from '../util/lock.js';
import { formatRecord, validateRecord, type AccountingRecord } from './record.js';

const LOCK_TIMEOUT_MS = 30_000;

/** Append one record to `file` (created 0600) under its lock. */
export async function appendRecord(file: string, rec: AccountingRecord): Promise<void> {
  const line = formatRecord(rec);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await withLock(`${file}.lock`, 'exclusive', async () => {
    const fh = await open(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error(`accounting file ${file} is not a regular file`);
      // a file left by a crash after an unterminated write: start on a fresh line so only that one line is lost
      if (st.size > 0) {
        const last = Buffer.alloc(1);
        const rd = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
        try { await rd.read(last, 0, 1, st.size - 1); } finally { await rd.close(); }
        if (last[0] !== 0x0a) await fh.write('\n');
      }
      if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) await fh.chmod(0o600);
      await fh.write(line);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }, { timeoutMs: LOCK_TIMEOUT_MS });
}

export interface ReadResult {
  records: AccountingRecord[];
  /** corrupt lines: 1-based line number and why */
  corrupt: { line: number; why: string }[];
}

/** Parse accounting text (pure): valid records, and corrupt lines counted with their line numbers. */
export function parseRecords(text: string, file = 'accounting'): ReadResult {
  const out: ReadResult = { records: [], corrupt: [] };
  const lines = text.split('\n');
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '') continue;
    try {
      out.records.push(validateRecord(JSON.parse(line), `${file}:${i + 1}`));
    } catch (err) {
      out.corrupt.push({ line: i + 1, why: (err as Error).message });
    }
  }
  return out;
}

/** Read an accounting file; a missing file is an empty one. */
export async function readRecords(file: string): Promise<ReadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], corrupt: [] };
    throw err;
  }
  return parseRecords(text, file);
}
