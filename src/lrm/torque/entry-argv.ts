/** The hook entry's own argv (pure): `--config /ABS/FILE [--log /ABS/FILE] <hook> <pbs_mom argv…>`. `--log` is the
 * root-only log for what happens before the config could be read (baked into the root shims at install). */
/** `boot` and `sister-boot` are not pbs_mom's: the prologue and prologue.parallel start them detached (src/job/detachedBoot.ts,
 * sister.ts); `sister` and `sister-epilogue` are prologue.parallel and epilogue.parallel. */
export const HOOKS = ['prologue', 'epilogue', 'starter', 'boot', 'sister', 'sister-boot', 'sister-epilogue'] as const;
export type Hook = (typeof HOOKS)[number];

/** Parse the entry's own argv: `--config FILE HOOK args…` (the rest belongs to pbs_mom, untouched). */
export function parseEntryArgv(argv: readonly string[]): { configPath: string; fallbackLog?: string; hook: Hook; rest: string[] } {
  const usage = 'usage: entry.js --config /ABS/PATH [--log /ABS/PATH] <prologue|epilogue|starter> …';
  if (argv[0] !== '--config' || argv[1] === undefined || !argv[1].startsWith('/')) throw new Error(usage);
  let i = 2;
  let fallbackLog: string | undefined;
  if (argv[i] === '--log') {
    if (argv[i + 1] === undefined || !argv[i + 1]!.startsWith('/')) throw new Error(usage);
    fallbackLog = argv[i + 1];
    i += 2;
  }
  const hook = argv[i] as Hook;
  if (!HOOKS.includes(hook)) throw new Error(`unknown hook ${JSON.stringify(argv[i])} (expected ${HOOKS.join(', ')})`);
  return { configPath: argv[1], ...(fallbackLog ? { fallbackLog } : {}), hook, rest: argv.slice(i + 1) };
}

