import t from 'tap';
import { wnod } from './kit/cli.js';

t.test('every command exits 2 on a bad command line, with the reason on stderr', async (t) => {
  for (const args of [['nosuch'], ['vms', '--bogus'], ['gc', '--bogus'], ['check', '--config'], ['cache', '--bogus'], ['find', '--nope']]) {
    const r = await wnod(args);
    t.equal(r.exitCode, 2, `wnod ${args.join(' ')}`);
    t.match(r.stderr, /unknown command|Unknown option|argument missing|usage/i);
  }
  const help = await wnod(['--help']);
  t.equal(help.exitCode, 0);
  t.match(help.stdout, /commands:\n(.*\n)*  explain +show what the submit filter decides/);
});
