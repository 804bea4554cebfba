/** The hook entry's own argv (pure): `--config /ABS/FILE <hook> <pbs_mom argv…>`. */
export const HOOKS = ['prologue', 'epilogue', 'starter'] as const;
export type Hook = (typeof HOOKS)[number];

/** Parse the entry's own argv: `--config FILE HOOK args…` (the rest belongs to pbs_mom, untouched). */
export function parseEntryArgv(argv: readonly string[]): { configPath: string; hook: Hook; rest: string[] } {
  if (argv[0] !== '--config' || argv[1] === undefined || !argv[1].startsWith('/')) throw new Error('usage: entry.js --config /ABS/PATH <prologue|epilogue|starter> …');
  const hook = argv[2] as Hook;
  if (!HOOKS.includes(hook)) throw new Error(`unknown hook ${JSON.stringify(argv[2])} (expected ${HOOKS.join(', ')})`);
  return { configPath: argv[1], hook, rest: argv.slice(3) };
}

