/** What both demo flows share: the step printer, the wnod CLI, BLAH's temp script and its run of the submit filter,
 * and the grid identity (a throwaway CA, a VOMS AA, a real proxy) with the CE's copy of the site config. */
import { chmod, chown, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { parseDocument } from 'yaml';
import { makeTestPki, makeProxy, type TestPki } from '../test/kit/pki.js';
import type { TestUser } from '../test/kit/pbsmom.js';
import { reachableRepoAt } from '../test/kit/reachable.js';

// BLAH's pool account and the job user run the repo's shims and bundles: a clone in /root (0700) is bind-mounted
export const repo = reachableRepoAt(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'));
export const cli = join(repo, 'dist', 'cli', 'main.js');

export interface DemoOptions {
  /** the demo's temp dir (0755), removed at the end unless keep */
  dir: string;
  accel: string;
  keep: boolean;
  slurmPort: number;
  slurmCluster: string;
  /** the grid user, lease user and BLAH pool account in one (made when missing) */
  user: string;
}

export class DemoError extends Error {}

export const out = (s = ''): void => { process.stdout.write(s + '\n'); };
export const indent = (text: string): string => text.replace(/\n$/, '').split('\n').map((l) => `    ${l}`).join('\n');
export const progress = { stepNo: 0, currentStep: '' };
export function step(title: string): void {
  progress.stepNo++;
  progress.currentStep = title;
  out(`\n== ${progress.stepNo}. ${title}`);
}
export function check(ok: boolean, what: string): void {
  if (!ok) throw new DemoError(what);
}

export async function wnod(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const r = await execa(process.execPath, [cli, ...args], { reject: false });
  if (r.exitCode !== 0) throw new DemoError(`wnod ${args.join(' ')} exited ${r.exitCode}: ${r.stderr.trim()}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** BLAH's temp script for one job (DESIGN A1): shebang, the unwound -C lines, mpinodes, `source` of the shim. */
export function blahTempScript(image: string, proxy: string, shim: string): string {
  return [
    '#!/bin/bash',
    `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"${image}"'`,
    `GlueCEImplementationName='"CREAM"'`,
    `VirtualOrganisation='testvo'`,
    `x509UserProxyFQAN='"userFQAN=/testvo/Role=NULL/Capability=NULL"'`,
    `x509userproxy='${proxy}'`,
    'blah_opt_mpinodes=1',
    `source ${shim}`,
    '',
  ].join('\n');
}

/** Run the filter as BLAH does — as the mapped pool account, `tmpscript >> batch_script 2>/dev/null` after BLAH's
 * own first lines (`head`) — and return the batch script. */
export async function blahSubmit(ceDir: string, user: TestUser, image: string, proxy: string, shim: string, head: string): Promise<{ path: string; text: string }> {
  const tmp = join(ceDir, `blahtmp-${image}`);
  const batch = join(ceDir, `batch-${image}.sh`);
  await writeFile(tmp, blahTempScript(image, proxy, shim), { mode: 0o755 });
  await writeFile(batch, head, { mode: 0o644 });
  await chown(tmp, user.uid, user.gid);
  await chown(batch, user.uid, user.gid);
  const env = { PATH: '/usr/bin:/bin', HOME: user.home };
  await execa('bash', ['-c', `"${tmp}" >> "${batch}" 2>/dev/null`], { env, extendEnv: false, uid: user.uid, gid: user.gid, cwd: ceDir });
  return { path: batch, text: await readFile(batch, 'utf8') };
}

/** The grid user's credentials: a throwaway CA and VOMS AA, a real proxy owned by `user`. */
export async function gridIdentity(dir: string, user: TestUser): Promise<{ pki: TestPki; proxy: string }> {
  const pki = await makeTestPki(join(dir, 'pki'), { vo: 'testvo' });
  const proxy = await makeProxy(pki, { vo: 'testvo', fqans: ['/testvo/Role=NULL/Capability=NULL'] });
  await chown(proxy, user.uid, user.gid);
  return { pki, proxy };
}

/** The CE's side of the site: its own copy of the ticket key (read by the filter as the pool account) and a config
 * naming it, root's (the filter's accounts must not change the policy). */
export async function ceSide(dir: string, user: TestUser, site: { configPath: string; keyPath: string }): Promise<{ ceDir: string; ceConfig: string }> {
  const ceDir = join(dir, 'ce');
  await mkdir(ceDir, { mode: 0o755 });
  await chown(ceDir, user.uid, user.gid);
  const ceKey = join(ceDir, 'ticket.key');
  await copyFile(site.keyPath, ceKey);
  await chown(ceKey, user.uid, user.gid);
  await chmod(ceKey, 0o600);
  const doc = parseDocument(await readFile(site.configPath, 'utf8'));
  doc.setIn(['ticket', 'key_file'], ceKey);
  await mkdir(join(dir, 'ce-etc'), { mode: 0o755 });
  const ceConfig = join(dir, 'ce-etc', 'wnod-ce.yaml');
  await writeFile(ceConfig, doc.toString(), { mode: 0o644 });
  return { ceDir, ceConfig };
}

/** How the CE side differs between the batch systems BLAH drives. */
export interface CeLrm {
  /** BLAH's name for it and its binpath setting, for the step titles */
  blah: 'slurm' | 'pbs';
  /** the real submit command the wrapper runs */
  realSubmit: string;
  /** the wrapper's name (in BLAH's binpath) */
  wrapper: 'sbatch' | 'qsub';
  /** BLAH's own first lines of a batch script: name and output files */
  head: (workdir: string, name: string) => string;
}

/** The CE's part, as a site installs it and BLAH runs it: `wnod install blah`, then BLAH's temp script running the
 * filter for a job asking for vm_test; the batch script gets the job's own lines. */
export async function ceSubmitSteps(dir: string, user: TestUser, ceDir: string, ceConfig: string, proxy: string, lrm: CeLrm, jobBody: string):
  Promise<{ shim: string; wbin: string; workdir: string; batch: { path: string; text: string } }> {
  step(`CE: wnod install blah (the filter shim for BLAH's libexec dir, the ${lrm.wrapper} wrapper for ${lrm.blah}_binpath)`);
  const libexec = join(dir, 'libexec');
  const wbin = join(dir, 'wbin');
  await mkdir(libexec, { mode: 0o755 });
  await mkdir(wbin, { mode: 0o755 });
  out(indent((await wnod(['install', 'blah', '--config', ceConfig, '--blah-dir', libexec, '--bin-dir', wbin, '--real', lrm.realSubmit, '--prefix', repo])).stdout));
  const shim = join(libexec, `${lrm.blah}_local_submit_attributes.sh`);

  step(`CE: BLAH runs the submit filter (${lrm.blah}_local_submit_attributes.sh) for a job asking for vm_test`);
  const workdir = join(dir, 'work');
  await mkdir(workdir, { mode: 0o755 });
  await chown(workdir, user.uid, user.gid);
  out(`    BLAH's temp script (run with bash as ${user.name}, stdout >> batch script, stderr discarded):`);
  out(indent(blahTempScript('vm_test', proxy, shim)));
  const batch = await blahSubmit(ceDir, user, 'vm_test', proxy, shim, lrm.head(workdir, 'grid'));
  check(/^# wnod-ticket: /m.test(batch.text), 'the filter printed no ticket for vm_test');
  await writeFile(batch.path, batch.text + jobBody);
  out('    the batch script after the filter, with the job\'s own lines:');
  out(indent((batch.text + jobBody).replace(/([A-Za-z0-9_-]{12})[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{43}/g, '$1… (signed ticket)')));
  return { shim, wbin, workdir, batch };
}

/** The hooks' root log lines of one job, one short line each (time, hook, event, the fields an admin reads). */
export async function hookLines(logFile: string, jobId: string): Promise<string> {
  const lines: string[] = [];
  for (const l of (await readFile(logFile, 'utf8').catch(() => '')).split('\n')) {
    if (!l.includes(`"job":"${jobId}"`)) continue;
    const { time, hook, event, job: _job, pid: _pid, digest: _digest, ...rest } = JSON.parse(l) as Record<string, unknown>;
    lines.push(`${String(time).slice(11, 23)} ${String(hook).padEnd(6)} ${String(event).padEnd(9)} ${JSON.stringify(rest)}`);
  }
  return lines.join('\n') || '(nothing logged)';
}
