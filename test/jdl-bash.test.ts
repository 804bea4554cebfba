// Differential test against real bash: for scripts made only of well-formed lines, parseBlahScript must see
// exactly the variables bash sees after sourcing the file (the filter runs inside that very bash).
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../src/util/run.js';
import { parseBlahScript } from '../src/jdl/blahScript.js';
import { parseClassAd } from '../src/jdl/classad.js';
import { renderBlahScript, unwindCeRequirements } from '../src/jdl/unwind.js';
import { prng, validClassAd } from './jdl-fuzz-inputs.js';

// Names distinct even when lower-cased, so that each bash variable is one parsed entry.
const NAMES = ['Alpha', 'beta_Min', 'GlueHostApplicationSoftwareRunTimeEnvironment', 'blah_opt_mpinodes'];
const VALUES = ['"vm_sl6"', '1000', '$(kill -9 $$)' /* if bash ever ran it, the dump would die */, '`id`', 'a b  c', '"a\\"b"', '\\303\\251', '${HOME}', '', 'x;y|z&', '*'];

/** bash sources the file, then prints for every name: name, element count, elements in index order (NUL-separated). */
async function bashView(dir: string, text: string, names: string[]): Promise<Map<string, string[]>> {
  const file = join(dir, 'script');
  await writeFile(file, text);
  const dump = `set -f; source "$1" >/dev/null 2>&1
for n in ${names.join(' ')}; do declare -n ref=$n
  printf '%s\\0%s\\0' "$n" "\${#ref[@]}"; if ((\${#ref[@]})); then printf '%s\\0' "\${ref[@]}"; fi
  unset -n ref; done`;
  const { stdout } = await run('/bin/bash', ['-c', dump, 'dump', file], { timeoutMs: 20_000, env: { PATH: '/usr/bin:/bin' } });
  const parts = stdout.split('\0');
  const out = new Map<string, string[]>();
  let i = 0;
  while (i < parts.length - 1) {
    const name = parts[i++]!;
    const count = Number(parts[i++]);
    out.set(name, parts.slice(i, i + count));
    i += count;
  }
  return out;
}

function ourView(text: string): Map<string, string[]> {
  const parsed = parseBlahScript(text);
  return new Map(NAMES.map((n) => [n, parsed.vars.get(n.toLowerCase())?.values ?? []]));
}

t.test('random well-formed scripts: parseBlahScript agrees with bash', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-jdl-bash-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = prng(42);
  for (let k = 0; k < 40; k++) {
    const lines = ['#!/bin/bash', '# generated'];
    for (let j = 0, n = 1 + Math.floor(r() * 12); j < n; j++) {
      const name = NAMES[Math.floor(r() * NAMES.length)]!;
      const index = r() < 0.5 ? `[${Math.floor(r() * 4)}]` : '';
      const value = VALUES[Math.floor(r() * VALUES.length)]!;
      lines.push(r() < 0.1 ? '' : `${r() < 0.2 ? '  ' : ''}${name}${index}='${value}'`);
    }
    lines.push("blah_opt_mpinodes=3", 'source /nonexistent/pbs_local_submit_attributes.sh');
    const text = lines.join('\n') + '\n';
    t.same(ourView(text), await bashView(dir, text, NAMES), text);
  }
});

t.test('rendered unwindings of generated CeRequirements: parseBlahScript agrees with bash', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-jdl-bash-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = prng(7);
  let compared = 0;
  for (let k = 0; k < 200 && compared < 30; k++) {
    const assignments = unwindCeRequirements(parseClassAd(validClassAd(r)));
    // Keep one spelling per lower-case name: bash keeps spellings apart, we merge them (by design).
    const spelling = new Map<string, string>();
    for (const a of assignments) if (!spelling.has(a.name.toLowerCase())) spelling.set(a.name.toLowerCase(), a.name);
    const kept = assignments.filter((a) => spelling.get(a.name.toLowerCase()) === a.name);
    if (kept.length === 0) continue;
    const text = renderBlahScript(kept);
    const names = [...spelling.values()];
    const parsed = parseBlahScript(text);
    const bash = await bashView(dir, text, names);
    const ours = new Map(names.map((n) => [n, parsed.vars.get(n.toLowerCase())?.values ?? []]));
    t.same(ours, bash, text);
    compared++;
  }
  t.ok(compared >= 10, `compared ${compared} scripts`);
});
