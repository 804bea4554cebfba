import t from 'tap';
import { BlahScriptError, MAX_SCRIPT_CHARS, parseBlahScript } from '../src/jdl/blahScript.js';

const values = (text: string, name: string) => parseBlahScript(text).vars.get(name.toLowerCase())?.values;

t.test('a real HTCondor-blahp temp script', async (t) => {
  const script = [
    '#!/bin/bash',
    "VirtualOrganisation='dteam'",
    "x509UserProxyFQAN='\"userFQAN=/dteam/Role=production/Capability=NULL\" \"userFQAN=/dteam/Role=NULL/Capability=NULL\"'",
    "x509userproxy='/var/cream_sandbox/dteam/proxy/abc.lmt'",
    "GlueHostApplicationSoftwareRunTimeEnvironment[0]='\"vm_sl6\"'",
    "GlueHostApplicationSoftwareRunTimeEnvironment[1]='\"vm_el9\"'",
    "GlueHostMainMemoryRAMSize_Min='1000'",
    "GlueCEImplementationName='\"CREAM\"'",
    'blah_opt_mpinodes=4',
    'source /usr/libexec/blahp/pbs_local_submit_attributes.sh',
    '',
  ].join('\n');
  const p = parseBlahScript(script);
  t.same(p.warnings, []);
  t.same([...p.vars.keys()], ['virtualorganisation', 'x509userproxyfqan', 'x509userproxy',
    'gluehostapplicationsoftwareruntimeenvironment', 'gluehostmainmemoryramsize_min', 'glueceimplementationname',
    'blah_opt_mpinodes']);
  t.same(p.vars.get('gluehostapplicationsoftwareruntimeenvironment')?.values, ['"vm_sl6"', '"vm_el9"']);
  t.same(p.vars.get('gluehostapplicationsoftwareruntimeenvironment')?.name, 'GlueHostApplicationSoftwareRunTimeEnvironment');
  t.same(p.vars.get('virtualorganisation')?.values, ['dteam']);
  t.same(p.vars.get('blah_opt_mpinodes')?.values, ['4']);
  t.same(p.vars.get('x509userproxyfqan')?.values,
    ['"userFQAN=/dteam/Role=production/Capability=NULL" "userFQAN=/dteam/Role=NULL/Capability=NULL"']);
  t.same(p.vars.get('gluehostmainmemoryramsize_min')?.assignments, [{ name: 'GlueHostMainMemoryRAMSize_Min', raw: '1000', line: 7 }]);
});

t.test('bash semantics', async (t) => {
  t.same(values("X='a'\nX='b'\n", 'X'), ['b'], 'a later line wins');
  t.same(values("X[0]='a'\nX[1]='b'\nX='c'\n", 'X'), ['c', 'b'], 'a scalar replaces element 0');
  t.same(values("X='a'\nX[2]='c'\n", 'X'), ['a', 'c'], 'a scalar becomes element 0 of a later array');
  t.same(values("X[3]='d'\nX[1]='b'\n", 'X'), ['b', 'd'], 'sparse elements in index order');
  t.same(values("X[1]='b'\nX[1]='B'\n", 'X'), ['B'], 'an element reassigned');
  t.same(values('X=\n', 'X'), [''], 'empty bare value');
  t.same(values("  X='a'  \n", 'X'), ['a'], 'surrounding blanks');
});

t.test('two spellings of one ClassAd name are merged in file order', async (t) => {
  const p = parseBlahScript([
    "GlueHostApplicationSoftwareRunTimeEnvironment[0]='\"a\"'",
    "gluehostapplicationsoftwareruntimeenvironment[0]='\"b\"'",
    "GlueHostApplicationSoftwareRunTimeEnvironment[1]='\"c\"'",
  ].join('\n'));
  const v = p.vars.get('gluehostapplicationsoftwareruntimeenvironment')!;
  t.same(v.values, ['"a"', '"b"', '"c"'], 'per-spelling counters both survive');
  t.equal(v.name, 'GlueHostApplicationSoftwareRunTimeEnvironment', 'first spelling kept for messages');
  t.equal(v.assignments?.length, 3);
  t.equal(p.warnings.length, 1);
  t.match(p.warnings, [/^line 2: gluehost\w+ is another spelling of GlueHost\w+/]);
  // bash semantics apply per spelling before the merge: the reassignment replaces only its own spelling
  t.same(values("X='1'\nx='2'\nX='3'\n", 'x'), ['2', '3']);
});

t.test('lines that are skipped silently', async (t) => {
  const p = parseBlahScript('#!/bin/sh\n# comment\n\n\t\nsource /x/y.sh\n. /x/y.sh\n');
  t.same(p.warnings, []);
  t.equal(p.vars.size, 0);
});

t.test('malformed assignments are rejected with their line, never used', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ["a-b='x'", /^line 3: bad variable name "a-b"; rejected$/],
    ["1X='x'", /bad variable name "1X"/],
    ["X[a]='x'", /array index of X must be an integer 0\.\.1023, got "a"/],
    ["X[01]='x'", /array index of X/],
    ["X[1024]='x'", /array index of X/],
    ["X[-1]='x'", /array index of X/],
    ["X[1]]='x'", /bad assignment target/],
    ["X='a''b'", /value of X is not one single-quoted string/],
    ["X='a' ; rm -rf /", /not one single-quoted string/],
    ["X='a'b", /not one single-quoted string/],
    ["X=$(id)", /unquoted value of X holds characters the shell would interpret/],
    ['X=`id`', /unquoted value of X/],
    ['X="dq"', /unquoted value of X/],
    ["X='a\u0001b'", /control or invalid character U\+0001 at offset 1/],
    ["X='a\u0085b'", /U\+0085/],
    ["X='bad\ufffd'", /U\+fffd/],
    ["X='a\r'", /U\+000d|not one single-quoted/],
    ['=x', /bad variable name ""/],
    [`X='${"v".repeat(16_385)}'`, /value of X is 16385 characters long, over 16384/],
    [`${'N'.repeat(257)}='v'`, /name is 257 characters long/],
  ];
  for (const [line, re] of cases) {
    const p = parseBlahScript(`#!/bin/bash\nGOOD='1'\n${line}\nALSO='2'\n`);
    t.equal(p.warnings.length, 1, JSON.stringify(line.slice(0, 40)));
    t.match(p.warnings[0], re, JSON.stringify(line.slice(0, 40)));
    t.match(p.warnings[0], /^line 3: /);
    t.same(p.vars.get('good')?.values, ['1'], 'the rest survives');
    t.same(p.vars.get('also')?.values, ['2'], 'the rest survives');
    t.equal(p.vars.size, 2, 'nothing from the bad line');
  }
});

t.test('unknown non-assignment lines are ignored with a warning', async (t) => {
  const p = parseBlahScript("echo hi\nexport X='1'\nX='2'\n");
  t.equal(p.warnings.length, 2);
  t.match(p.warnings, [/^line 1: not an assignment \("echo hi"\); ignored$/, /^line 2: not an assignment/]);
  t.same(values("echo hi\nexport X='1'\nX='2'\n", 'X'), ['2']);
});

t.test('a quoted value running over several lines is rejected as a whole', async (t) => {
  const p = parseBlahScript("A='1'\nX='\"a\nblah_opt_mpinodes=64\nGlueX='9'\n\"'\nB='2'\n");
  t.same(p.vars.get('blah_opt_mpinodes'), undefined, 'text inside the value is not read as an assignment');
  t.same(p.vars.get('gluex'), undefined);
  t.same(values("A='1'\nX='\"a\nblah_opt_mpinodes=64\n\"'\nB='2'\n", 'B'), ['2']);
  t.equal(p.warnings.length, 1);
  t.match(p.warnings, [/^line 2: value of X is not one single-quoted string \(the quoted value runs on to line 5\); rejected$/]);
  t.same([...p.vars.keys()], ['a', 'b']);
  const odd = parseBlahScript("X='a'b'\nY='1'\n");
  t.same([...odd.vars.keys()], [], "an odd number of quotes opens a value, as in bash");
  const open = parseBlahScript("X='never closed\nY='1'\n");
  t.same([...open.vars.keys()], [], 'an unclosed quote swallows the rest, as in bash');
});

t.test('injection-looking values are plain data', async (t) => {
  const p = parseBlahScript([
    "X='$(rm -rf /)'",
    "Y='`id`'",
    "Z='\"a\" ; echo pwned'",
    "W='\\303\\251t\\351'",
    "V='${PATH}'",
  ].join('\n'));
  t.same(p.warnings, []);
  t.same(p.vars.get('x')?.values, ['$(rm -rf /)']);
  t.same(p.vars.get('y')?.values, ['`id`']);
  t.same(p.vars.get('z')?.values, ['"a" ; echo pwned']);
  t.same(p.vars.get('w')?.values, ['\\303\\251t\\351'], 'octal escapes arrive as text');
  t.same(p.vars.get('v')?.values, ['${PATH}']);
});

t.test('size bounds', async (t) => {
  t.throws(() => parseBlahScript('x'.repeat(MAX_SCRIPT_CHARS + 1)), BlahScriptError);
  t.throws(() => parseBlahScript('\n'.repeat(20_000)), { code: 'blah-script-too-many-lines' });
  t.doesNotThrow(() => parseBlahScript("X='1'\n".repeat(10_000)));
});
