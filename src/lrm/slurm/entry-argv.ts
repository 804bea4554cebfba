/** The Slurm hook entry's own argv (pure). `boot` is not slurmd's: the Prolog starts it detached (src/job/detachedBoot.ts). */
export const SLURM_HOOKS = ['prolog', 'epilog', 'runner', 'boot'] as const;
export type SlurmHook = (typeof SLURM_HOOKS)[number];

/** `--config /ABS/FILE HOOK args…` (pure). */
export function parseSlurmEntryArgv(argv: readonly string[]): { configPath: string; hook: SlurmHook; rest: string[] } {
  if (argv[0] !== '--config' || argv[1] === undefined || !argv[1].startsWith('/')) throw new Error('usage: slurm-hook.cjs --config /ABS/PATH <prolog|epilog|runner|boot> …');
  const hook = argv[2] as SlurmHook;
  if (!SLURM_HOOKS.includes(hook)) throw new Error(`unknown hook ${JSON.stringify(argv[2])} (expected ${SLURM_HOOKS.join(', ')})`);
  return { configPath: argv[1], hook, rest: argv.slice(3) };
}
