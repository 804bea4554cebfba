// How blahpd reads blah.config (BLAH src/config.c, config_read_cmd + config_parse_array_values): it runs
// `. <file>; set` through popen, i.e. /bin/sh, and takes every `KEY=VALUE` line of the output; single quotes around
// a value are stripped, and a value of the form ([0]="a" [1]="b") becomes an array. Only what the filter's setup
// depends on is reproduced here; the shell is the real /bin/sh (dash on Debian).
import { execa } from 'execa';

export interface BlahConfigEntry { value: string; values: string[] }

/** Read `file` as blahpd does, with `shell` standing for popen's /bin/sh. */
export async function readBlahConfig(file: string, shell = '/bin/sh'): Promise<Map<string, BlahConfigEntry>> {
  const r = await execa(shell, ['-c', `. ${file}; set`], { reject: false, env: { PATH: '/usr/bin:/bin' }, extendEnv: false });
  const out = new Map<string, BlahConfigEntry>();
  for (const line of String(r.stdout).split('\n')) {
    const cur = line.trimStart();
    if (cur === '' || cur.startsWith('#') || cur.startsWith('=')) continue;
    const eq = cur.indexOf('=');
    if (eq < 0) continue;
    const key = cur.slice(0, eq).trimEnd();
    let value = cur.slice(eq + 1).trim();
    if (value.length > 1 && value.startsWith("'") && value.endsWith("'")) value = value.slice(1, -1);
    if (!key || !value || out.has(key)) continue; // blahpd keeps the first entry of a key within one read
    const values: string[] = [];
    if (value.startsWith('(') && value.endsWith(')')) {
      for (const m of value.slice(1).matchAll(/\[[^\]]+\] *= *"((?:\\"|[^"])*)"/g)) values.push(m[1]!);
    }
    out.set(key, { value, values });
  }
  return out;
}
