// Every command and subcommand of the built `wnod` answers --help and -h with its usage and exit 0; the list comes
// from the dispatcher's table (dist/cli/commands.js), so a command added there is covered without a word here.
import t from 'tap';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot, wnod, ensureBuilt } from './kit/cli.js';
import type { Command } from '../src/cli/commands.js';

type Table = Record<string, () => Promise<Command>>;
type Args = typeof import('../src/cli/args.js');
let commands: Table;
let args: Args;
const dist = (p: string) => pathToFileURL(join(repoRoot, 'dist/cli', p)).href;

t.before(async () => {
  await ensureBuilt();
  commands = ((await import(dist('commands.js'))) as { commands: Table }).commands;
  args = (await import(dist('args.js'))) as Args;
});

/** Every command line to ask for help: [command], and [command, sub] for each subcommand the module exports. */
async function helpTargets(): Promise<string[][]> {
  const out: string[][] = [];
  for (const name of Object.keys(commands).sort()) {
    out.push([name]);
    for (const sub of (await commands[name]!()).subcommands ?? []) out.push([name, sub]);
  }
  return out;
}

t.test('every command and subcommand answers --help and -h with its usage (the one path: HelpRequested)', async (t) => {
  const targets = await helpTargets();
  t.ok(targets.some((a) => a.length === 2), 'the table yields subcommands too');
  for (const [name, ...sub] of targets) {
    for (const flag of ['--help', '-h']) {
      const cmd = await commands[name!]!();
      const err = await cmd.run([...sub, flag]).then(() => undefined, (e: unknown) => e);
      t.ok(err instanceof args.HelpRequested, `wnod ${[name, ...sub, flag].join(' ')} asks for help`);
      t.match((err as { usage?: string })?.usage, /^usage:/, `wnod ${[name, ...sub, flag].join(' ')}: its usage`);
    }
  }
});

t.test('the built wnod prints the usage on stdout and exits 0', async (t) => {
  // one process per kind of line (each is a node start on a shared machine): top level, command, subcommand, install target
  for (const line of [['vms', '--help'], ['snapshot', 'list', '-h'], ['lease', '--help'], ['install', 'torque', '-h'], ['gc', '-h']]) {
    const r = await wnod(line);
    t.equal(r.exitCode, 0, `wnod ${line.join(' ')}: exit 0 (${r.stderr.trim()})`);
    t.match(r.stdout, /^usage:/, `wnod ${line.join(' ')}: usage on stdout`);
    t.equal(r.stderr, '', `wnod ${line.join(' ')}: nothing on stderr`);
  }
  const r = await wnod(['--help']);
  t.equal(r.exitCode, 0);
  t.equal(r.stderr, '');
  for (const name of Object.keys(commands)) {
    const { summary } = await commands[name]!();
    t.ok(summary.length > 10 && !summary.includes('\n'), `${name}: a one-line summary`);
    t.ok(r.stdout.split('\n').some((l) => l.trim().startsWith(`${name} `) && l.endsWith(summary)), `wnod --help lists ${name} with its summary`);
  }
});

t.test('usage errors stay exit 2, with the usage on stderr', async (t) => {
  for (const line of [[], ['vms', '--bogus'], ['snapshot', 'nosuch'], ['install', 'nosuch'], ['lease', 'list', '--image', 'x'], ['voms', 'inspect']]) {
    const r = await wnod(line);
    t.equal(r.exitCode, 2, `wnod ${line.join(' ')}`);
    t.match(r.stderr, /usage:/, `wnod ${line.join(' ')}: usage on stderr`);
  }
});

t.test('-h as an option value or after -- is data, not a request for help', async (t) => {
  const parse = (argv: string[]) => args.parseCommandLine({ args: argv, strict: true, allowPositionals: true, options: { cereq: { type: 'string' } } }, 'usage: x');
  t.equal(parse(['--cereq=-h']).values.cereq, '-h');
  t.throws(() => parse(['--cereq', '-h']), { code: 'usage' }, 'ambiguous (node:util): a usage error, not help');
  t.same(parse(['--', 'ls', '-h']).positionals, ['ls', '-h']);
  t.throws(() => parse(['-h']), args.HelpRequested);
  t.throws(() => parse(['--bogus']), { code: 'usage' });
});
