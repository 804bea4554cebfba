/** A snapshot template's guest RAM as its clones map it: one sealed copy per template, shared by every clone of it,
 * private and copy-on-write in each (issue #14). The template saved its RAM into `<template>/ram` (a shared
 * file-backed memory, left out of the migration stream by x-ignore-shared); a restore then reads device state only,
 * and idle clones share the RAM's pages instead of each holding 256 MB of its own.
 *
 * Why a sealed memfd and not the file itself: QEMU 7.2 opens a memory-backend-file read-write whatever `share` says
 * (`rom=off`, which maps a read-only fd privately, is QEMU 8.2), opens it as root before `-runas`, and keeps that
 * fd. A clone whose guest escaped into QEMU could then write the template that the next tenant's clone maps. A memfd
 * sealed with F_SEAL_WRITE|GROW|SHRINK|SEAL refuses every write, truncate and hole punch, through any fd and to
 * root too, and still maps privately writable. Node cannot make a memfd, so a holder process does: perl (perl-base
 * is Essential in Debian, always there) makes it with memfd_create, copies the template's RAM in (zero blocks left
 * as holes), seals it, prints its fd number and sleeps, holding it. Clones open `/proc/<holder>/fd/<n>`; before
 * the first clone, the copy's sha256 is checked against the one recorded at build time.
 *
 *   <template>/ram            the RAM as saved (root 0600, in the root-only templates dir; clones never open it)
 *   <template>/holder.json    the live holder: pid, start time, fd
 *   <template>/holder.lock    single-flight holder start */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { acquireLock } from '../util/lock.js';
import { WnodError } from '../util/errors.js';
import { procRef, isAlive, terminate, type ProcRef } from './proc.js';

/** A template's RAM could not be handed to a clone (the caller cold boots). */
export class TemplateRamError extends WnodError {
  constructor(message: string) {
    super('vm-template-ram', message);
  }
}

const PERL = '/usr/bin/perl';
/** memfd_create's syscall number per architecture (perl's syscall() takes the raw number). */
const MEMFD_CREATE: Partial<Record<NodeJS.Architecture, number>> = { x64: 319, arm64: 279 };

/** The holder: ARGV = syscall number, source file, memfd name, size. Exit status ≠ 0 with a reason on stderr
 * before the fd line; after it, it sleeps until SIGTERM or until its template's RAM file is gone. */
const HOLDER = String.raw`
use strict; use warnings;
my ($nr, $src, $name, $size) = @ARGV;
my $fd = syscall($nr, $name, 2);                    # MFD_ALLOW_SEALING (no MFD_CLOEXEC: it never execs)
die "memfd_create: $!\n" if $fd < 0;
open(my $m, '+<&=', $fd) or die "memfd: $!\n";
truncate($m, $size) or die "truncate: $!\n";
open(my $in, '<:raw', $src) or die "$src: $!\n";
my ($off, $buf, $zero) = (0, '', "\0" x 65536);
while (my $n = sysread($in, $buf, 65536)) {
  if ($n != 65536 || $buf ne $zero) {
    sysseek($m, $off, 0) or die "seek: $!\n";
    my $w = 0;
    while ($w < $n) { my $k = syswrite($m, $buf, $n - $w, $w); die "write: $!\n" unless $k; $w += $k; }
  }
  $off += $n;
}
die "read $src: $!\n" unless defined $buf;
die "$src holds $off bytes, not $size\n" unless $off == $size;
my ($dev, $ino) = (stat($in))[0, 1];
close($in);
fcntl($m, 1033, 15) or die "seal: $!\n";          # F_ADD_SEALS: SEAL|SHRINK|GROW|WRITE
$| = 1; print "$fd\n"; close(STDOUT);
open(STDERR, '>', '/dev/null');
$SIG{TERM} = sub { exit 0 };
while (1) {                                         # a removed template takes its holder with it
  sleep 5;
  my @s = stat($src);
  exit 0 unless @s && $s[0] == $dev && $s[1] == $ino;
}
`;

interface HolderRecord extends ProcRef {
  fd: number;
}

/** The memfd's name, as /proc shows the holder's fd: one per template key. */
const memfdName = (key: string): string => `wnod-tmpl-${key}`;

/** sha256 (hex) of a file's content, streamed. */
export async function ramDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The path of a live holder's memfd, if the record names one that is still this template's, of this size. */
async function liveHolder(tdir: string, key: string, bytes: number): Promise<string | undefined> {
  const rec = await readFile(join(tdir, 'holder.json'), 'utf8').then((t) => JSON.parse(t) as HolderRecord, () => undefined);
  if (!rec || !Number.isInteger(rec.fd) || !(await isAlive(rec))) return undefined;
  const path = `/proc/${rec.pid}/fd/${rec.fd}`;
  if ((await readlink(path).catch(() => '')) !== `/memfd:${memfdName(key)} (deleted)`) return undefined;
  const st = await stat(path).catch(() => undefined);
  return st && st.size === bytes && st.uid === 0 ? path : undefined;
}

/** The path a clone's QEMU opens as its RAM (`/proc/<holder>/fd/<n>`): the live holder's, or a new holder's once
 * its copy matched the recorded digest. A copy that does not match is a damaged template: TemplateRamError. */
export async function sealedRam(tdir: string, key: string, ram: { bytes: number; sha256: string }, timeoutMs: number): Promise<string> {
  const found = await liveHolder(tdir, key, ram.bytes);
  if (found) return found;
  const lock = await acquireLock(join(tdir, 'holder.lock'), 'exclusive', { timeoutMs });
  try {
    const again = await liveHolder(tdir, key, ram.bytes);
    if (again) return again;
    const rec = await startHolder(join(tdir, 'ram'), key, ram.bytes, timeoutMs);
    const path = `/proc/${rec.pid}/fd/${rec.fd}`;
    const digest = await ramDigest(path).catch((e: Error) => `unreadable (${e.message})`);
    if (digest !== ram.sha256) {
      await terminate(rec, 1000);
      throw new TemplateRamError(`the template's RAM does not match its recorded digest (${digest.slice(0, 16)}…, recorded ${ram.sha256.slice(0, 16)}…)`);
    }
    await writeFileAtomic(join(tdir, 'holder.json'), JSON.stringify(rec) + '\n', 0o600);
    return path;
  } finally {
    await lock.release();
  }
}

async function startHolder(src: string, key: string, bytes: number, timeoutMs: number): Promise<HolderRecord> {
  const nr = MEMFD_CREATE[process.arch];
  if (nr === undefined) throw new TemplateRamError(`no memfd_create syscall number known for ${process.arch}`);
  // its own session: the holder outlives the hook that started it, and no job's signals reach it
  const child = spawn(PERL, ['-e', HOLDER, String(nr), src, memfdName(key), String(bytes)],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' } });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { if (err.length < 4096) err += d.toString('utf8'); });
  try {
    const fd = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new TemplateRamError(`the template RAM holder did not start within ${timeoutMs} ms`)), timeoutMs);
      child.once('error', (e) => { clearTimeout(t); reject(new TemplateRamError(`cannot start ${PERL}: ${e.message}`)); });
      child.once('exit', (c) => { clearTimeout(t); reject(new TemplateRamError(`the template RAM holder failed (exit ${c}): ${err.trim() || 'no reason given'}`)); });
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString('utf8');
        const m = /^(\d{1,9})\n/.exec(out);
        if (m) { clearTimeout(t); resolve(Number(m[1])); } else if (out.length > 64) { clearTimeout(t); reject(new TemplateRamError('the template RAM holder said something unexpected')); }
      });
    });
    const ref = child.pid ? await procRef(child.pid) : undefined;
    if (!ref) throw new TemplateRamError('the template RAM holder exited right after starting');
    return { ...ref, fd };
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  } finally {
    child.removeAllListeners('exit');
    child.stdout!.destroy();
    child.stderr!.destroy();
    child.unref();
  }
}

/** Stop the template's holder, if it runs (before its template is removed). */
export async function stopHolder(tdir: string, key: string): Promise<void> {
  const rec = await readFile(join(tdir, 'holder.json'), 'utf8').then((t) => JSON.parse(t) as HolderRecord, () => undefined);
  if (!rec || !Number.isInteger(rec.fd)) return;
  if ((await readlink(`/proc/${rec.pid}/fd/${rec.fd}`).catch(() => '')) !== `/memfd:${memfdName(key)} (deleted)`) return;
  await terminate(rec, 2000);
}
