import t from 'tap';
import { parseClassAd } from '../src/jdl/classad.js';
import { parseBlahScript } from '../src/jdl/blahScript.js';
import { renderBlahScript, unwindCeRequirements } from '../src/jdl/unwind.js';

/** The lines blahpd would write into the -C file for a CeRequirements expression. */
const lines = (cereq: string) => renderBlahScript(unwindCeRequirements(parseClassAd(cereq)))
  .split('\n').slice(1, -1);

t.test('DESIGN A1 table: each fragment gives exactly these lines', async (t) => {
  const table: Array<[string, string[]]> = [
    ['Member("vm_sl6", other.GlueHostApplicationSoftwareRunTimeEnvironment)',
      [`GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'`]],
    ['Member("vm_sl6", other.GlueHostApplicationSoftwareRunTimeEnvironment) && ' +
      'Member("vm_el9", other.GlueHostApplicationSoftwareRunTimeEnvironment)',
    [`GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'`,
      `GlueHostApplicationSoftwareRunTimeEnvironment[1]='"vm_el9"'`]],
    ['other.GlueHostMainMemoryRAMSize >= 1000', [`GlueHostMainMemoryRAMSize_Min='1000'`]],
    ['other.GlueHostMainMemoryRAMSize > 1000', [`GlueHostMainMemoryRAMSize_Min='1000'`]],
    ['other.X <= 4096', [`X_Max='4096'`]],
    ['other.X < 4096', [`X_Max='4096'`]],
    ['2800 <= other.Y', [`Y_Min='2800'`]],
    ['2800 > other.Y', [`Y_Max='2800'`]],
    ['other.GlueCEImplementationName == "CREAM"', [`GlueCEImplementationName='"CREAM"'`]],
    ['other.GlueCEImplementationName =?= "CREAM"', [`GlueCEImplementationName='"CREAM"'`]],
    ['"CREAM" == other.GlueCEImplementationName', [`GlueCEImplementationName='"CREAM"'`]],
    ['other.A == 1 || other.B == 2', [`A='1'`, `B='2'`]],
    ['!(other.A == "x")', [`A='"x"'`]],
    ['other.A != "x"', []],
    ['other.A =!= "x"', []],
    ['other.A >= 1.5', []],
    ['other.A == true', []],
    ['other.A == undefined', []],
    ['other.A >= "abc"', []],
    ['other.A >= -1', []],
    ['other.A >= (5)', []],
    ['other.A == other.B', []],
    ['Member(other.X, {"a", "b"})', []],
    ['Member(42, other.X)', [`X[0]='42'`]],
    ['Member(true, other.X)', [`X[0]='true'`]],
    ['Member(undefined, other.X)', [`X[0]='undefined'`]],
    ['Member(1.5, other.X)', [`X[0]='1.500000000000000E+00'`]],
    ['Member("a", other.X) && Member("b", other.x) && Member("c", other.X)',
      [`X[0]='"a"'`, `x[0]='"b"'`, `X[1]='"c"'`]],
    ['other.GlueHostMainMemoryRAMSize >= 1000 && other.GlueHostMainMemoryRAMSize <= 4096',
      [`GlueHostMainMemoryRAMSize_Min='1000'`, `GlueHostMainMemoryRAMSize_Max='4096'`]],
    ['other.X == "it\'s"', [`X='"it\\s"'`]],
    ['other.X == "café"', [`X='"caf\\303\\251"'`]],
    ['other.X == "a\\"b"', [`X='"a\\"b"'`]],
    ['other.X == "$(reboot)`id`"', [`X='"$(reboot)\`id\`"'`]],
    ['self.Queue == "long"', [`Queue='"long"'`]],
    ['Member("a", other.X) || !Member("b", other.X)', [`X[0]='"a"'`, `X[1]='"b"'`]],
  ];
  for (const [cereq, expected] of table) t.same(lines(cereq), expected, cereq);
});

t.test('round trip: --cereq and a BLAH script go through the same parser', async (t) => {
  const cereq = 'Member("vm_sl6", other.GlueHostApplicationSoftwareRunTimeEnvironment) && ' +
    'other.GlueHostMainMemoryRAMSize >= 2048 && other.GlueHostMainMemoryRAMSize <= 8192 && ' +
    '(other.GlueCEImplementationName == "CREAM" || other.X != 3)';
  const assignments = unwindCeRequirements(parseClassAd(cereq));
  const text = renderBlahScript(assignments, { mpinodes: 4, sourcePath: '/usr/libexec/blahp/pbs_local_submit_attributes.sh' });
  t.equal(text, [
    '#!/bin/bash',
    `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'`,
    `GlueHostMainMemoryRAMSize_Min='2048'`,
    `GlueHostMainMemoryRAMSize_Max='8192'`,
    `GlueCEImplementationName='"CREAM"'`,
    'blah_opt_mpinodes=4',
    'source /usr/libexec/blahp/pbs_local_submit_attributes.sh',
    '',
  ].join('\n'));
  const parsed = parseBlahScript(text);
  t.same(parsed.warnings, []);
  for (const a of assignments) {
    const v = parsed.vars.get(a.name.toLowerCase());
    t.ok(v, a.name);
    t.same(v!.assignments, [a], `${a.name}: same assignment back, line numbers included`);
  }
  t.same(parsed.vars.get('blah_opt_mpinodes')?.values, ['4']);
});

t.test('renderBlahScript refuses text a shell would read differently', async (t) => {
  t.throws(() => renderBlahScript([{ name: 'X', raw: "a'b", line: 2 }]), { code: 'unsafe-assignment' });
  t.throws(() => renderBlahScript([{ name: 'X', raw: 'a\nY=1', line: 2 }]), { code: 'unsafe-assignment' });
  t.throws(() => renderBlahScript([{ name: 'X;id', raw: 'a', line: 2 }]), { code: 'unsafe-assignment' });
  t.throws(() => renderBlahScript([{ name: 'X', index: -1, raw: 'a', line: 2 }]), { code: 'unsafe-assignment' });
  t.throws(() => renderBlahScript([], { sourcePath: '/x; rm -rf /' }), { code: 'unsafe-assignment' });
  t.throws(() => renderBlahScript([], { mpinodes: 1.5 }), { code: 'unsafe-assignment' });
});
