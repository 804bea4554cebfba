// The `wnod` command table: name → module, loaded on demand so that the hot paths (filter, hooks) never pay for the
// others. Kept apart from main.ts (which runs on import) so that tests can walk it.

/** What every command module exports: `summary` (one line for `wnod --help`), `run`, and for two-word commands
 * the names of its subcommands (each answers `--help` too). */
export type Command = { run(argv: string[]): Promise<number>; summary: string; subcommands?: readonly string[] };
type Loader = () => Promise<Command>;

/** Subcommand name → module. Two-word commands ("voms inspect") are dispatched by the module itself. */
export const commands: Record<string, Loader> = {
  accounting: () => import('./accounting.js'),
  cache: () => import('./cache.js'),
  check: () => import('./check.js'),
  explain: () => import('./explain.js'),
  find: () => import('./find.js'),
  gc: () => import('./gc.js'),
  install: () => import('./install.js'),
  kernel: () => import('./kernel.js'),
  'kill-all': () => import('./kill-all.js'),
  lease: () => import('./lease.js'),
  metrics: () => import('./metrics.js'),
  snapshot: () => import('./snapshot.js'),
  status: () => import('./status.js'),
  ticket: () => import('./ticket.js'),
  vm: () => import('./vm.js'),
  vms: () => import('./vms.js'),
  voms: () => import('./voms.js'),
};
