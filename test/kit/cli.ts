// Run the built `wnod` command as a user would (tests build first: `npm test` runs tsc before tap).
import { execa } from 'execa';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
export const wnodBin = join(repoRoot, 'dist/cli/main.js');

export interface CliResult { exitCode: number; stdout: string; stderr: string }

/** Run `wnod ARGS…` with node and return its exit code and output; never throws on a non-zero exit. */
export async function wnod(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; input?: string; cwd?: string } = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [wnodBin, ...args], {
    reject: false, timeout: opts.timeoutMs ?? 120_000, env: opts.env ?? {}, ...(opts.input !== undefined ? { input: opts.input } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Build once when a test file runs on its own before any build (the test command builds before tap runs). */
export async function ensureBuilt(): Promise<void> {
  const { existsSync } = await import('node:fs');
  const outputs = ['dist/cli/main.js', 'dist/hot/hook.cjs', 'dist/hot/filter.cjs'].map((p) => join(repoRoot, p));
  if (outputs.every((p) => existsSync(p))) return;
  await execa('npm', ['run', '-s', 'build'], { cwd: repoRoot, stdio: 'inherit' });
}
