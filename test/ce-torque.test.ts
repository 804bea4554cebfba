// What a real Torque 6.1.3 keeps of a BLAH batch script holding two `nodes` requests: the filter's
// `#PBS -l nodes=1:ppn=N` and the `#PBS -l nodes=<NodeNumber>` BLAH appends after it (CREAM always sends NodeNumber).
// Straight to qsub the later line wins; through the installed wrapper the filter's request is on qsub's command line
// and wins. Jobs are submitted held (-h): only the server's record of the request matters here.
import { reachableRepo } from './kit/reachable.js';
import t from 'tap';
import { chown, mkdir, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startTorque, torqueUnavailable, type TorqueNode } from './kit/torque.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { makeTestSite } from './kit/site.js';
import { runFilter } from '../src/filter/filter.js';
import { findTicketLine } from '../src/header/scriptHeader.js';
import { wnod } from './kit/cli.js';

const why = torqueUnavailable();
if (why) {
  t.skip(`a real Torque cannot run here: ${why}`, () => {});
} else {
  t.test('two nodes lines: Torque keeps the later one from the script, the command line over both', async (t) => {
    const user = await ensureTestUser('wce1');
    const node: TorqueNode = await startTorque({ tag: 'wce', np: 4, qmgr: ['create queue wnod queue_type = execution', 'set queue wnod enabled = true', 'set queue wnod started = true'] });
    t.teardown(() => node.stop());
    // everything the namespace must see lives under the fixture's dir (its /tmp is private)
    const ce = join(node.dir, 'ce');
    for (const d of ['', 'libexec', 'wbin', 'site', 'jobs']) await mkdir(join(ce, d), { recursive: true, mode: 0o755 });
    await chown(join(ce, 'jobs'), user.uid, user.gid);
    const site = await makeTestSite(join(ce, 'site'));
    const inst = await wnod(['install', 'blah', '--config', site.configPath, '--blah-dir', join(ce, 'libexec'), '--bin-dir', join(ce, 'wbin'), '--real', '/usr/local/bin/qsub', '--prefix', reachableRepo()]);
    t.equal(inst.exitCode, 0, inst.stderr);

    // the filter's block for a 2-cpu job, inside the batch script pbs_submit.sh writes (NodeNumber = 1)
    const tmp = join(ce, 'blahtmp');
    await writeFile(tmp, `#!/bin/bash\nGlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'\nVirtualOrganisation='dteam'\nblah_opt_mpinodes=2\n`);
    const filtered = await runFilter(tmp, site.configPath);
    t.ok(findTicketLine(filtered.output).ticket, 'a ticket');
    t.match(filtered.output, /^#PBS -l nodes=1:ppn=2$/m);
    const batch = join(ce, 'jobs', 'batch.sh');
    await writeFile(batch, `#!/bin/bash\n# PBS directives:\n#PBS -S /bin/bash\n#PBS -o /dev/null\n#PBS -e /dev/null\n${filtered.output}#PBS -l nodes=1\n#PBS -m n\ntrue\n`, { mode: 0o644 });

    const submit = async (qsub: string): Promise<Record<string, string>> => {
      const r = await node.exec([qsub, '-h', batch], { user, cwd: join(ce, 'jobs') });
      t.equal(r.exitCode, 0, `${qsub}: ${r.stderr}`);
      const id = r.stdout.trim();
      const job = await node.job(id);
      await node.exec(['/usr/local/bin/qdel', id]);
      return job ?? {};
    };
    const direct = await submit('/usr/local/bin/qsub');
    t.equal(direct['Resource_List.nodes'], '1', 'straight to qsub, BLAH\'s later line replaced the filter\'s: the job would hold 1 core');
    const wrapped = await submit(join(ce, 'wbin', 'qsub'));
    t.equal(wrapped['Resource_List.nodes'], '1:ppn=2', 'through the wrapper the filter\'s request is the one Torque keeps');
    t.equal(wrapped['Resource_List.mem'], '2048mb');
    t.equal(wrapped.queue, 'wnod');
    t.match(await readFile(batch, 'utf8'), /#PBS -l nodes=1\n/, 'the script itself is unchanged');
    // the ticket as a job variable, which Torque copies to a multi-node job's sisters (src/lrm/torque/jobTicket.ts)
    const variable = `WNOD_TICKET=${findTicketLine(filtered.output).ticket!}`;
    t.ok(direct.Variable_List?.split(',').includes(variable), 'straight to qsub: from the script\'s #PBS -v');
    t.ok(wrapped.Variable_List?.split(',').includes(variable), 'through the wrapper: from qsub\'s command line');
  });
}
