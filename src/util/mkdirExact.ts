import { chmod, mkdir } from 'node:fs/promises';

/** mkdir, then exactly `mode` whatever the process umask: pbs_mom runs the hooks under the job's umask (077 by
 * default), which would leave directories the job user must traverse at 0700. The directory itself only: with
 * `recursive`, parents it creates keep the umask's mode. */
export async function mkdirExact(path: string, mode: number, opts: { recursive?: boolean } = {}): Promise<void> {
  await mkdir(path, { recursive: opts.recursive ?? false, mode });
  await chmod(path, mode);
}
