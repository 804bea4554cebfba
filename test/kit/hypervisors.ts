// The VM processes a test left behind, found by their command line (no record needed: records can be gone).
import { readFile, readdir } from 'node:fs/promises';

/** Every hypervisor process (QEMU, virtiofsd) whose command line names this state dir. */
export async function hypervisorsOf(stateDir: string): Promise<number[]> {
  const out: number[] = [];
  for (const n of await readdir('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    const cmd = await readFile(`/proc/${n}/cmdline`, 'utf8').catch(() => '');
    if (/qemu-system|virtiofsd/.test(cmd) && cmd.includes(`${stateDir}/`)) out.push(Number(n));
  }
  return out;
}
