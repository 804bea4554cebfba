import t, { type Test } from 'tap';
import { parseBlahScript } from '../src/jdl/blahScript.js';
import { parseClassAd } from '../src/jdl/classad.js';
import { requestFromScript, type JobRequest } from '../src/jdl/request.js';
import { parseQuotedStrings, parseScriptValue } from '../src/jdl/scriptValue.js';
import { renderBlahScript, unwindCeRequirements } from '../src/jdl/unwind.js';

const req = (...lines: string[]) => requestFromScript(parseBlahScript(['#!/bin/bash', ...lines, ''].join('\n')));

/** t.match, but the warnings must be exactly these (t.match alone lets extra array items through). */
function check(t: Test, actual: JobRequest, pattern: Record<string, unknown> & { warnings?: Array<RegExp | string> }) {
  const { warnings, ...rest } = pattern;
  t.match(actual, rest);
  if (warnings) {
    t.equal(actual.warnings.length, warnings.length, `warnings: ${JSON.stringify(actual.warnings)}`);
    warnings.forEach((w, i) => t.match(actual.warnings[i], w));
  }
}

const FQANS = `x509UserProxyFQAN='"userFQAN=/dteam/Role=production/Capability=NULL" "userFQAN=/dteam/Role=NULL/Capability=NULL"'`;

t.test('a complete BLAH temp script', async (t) => {
  const r = req(
    "VirtualOrganisation='dteam'",
    FQANS,
    "x509userproxy='/var/cream_sandbox/dteam/proxy/abc.lmt'",
    "x509UserProxySubject='/C=IT/O=INFN/CN=Jane Doe'",
    "Queue='long'",
    "uniquejobid='https://ce.example.org:8443/CREAM123'",
    "ceid='ce.example.org:8443/cream-pbs-long'",
    `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'`,
    `GlueHostApplicationSoftwareRunTimeEnvironment[1]='"vm_el9"'`,
    "GlueHostMainMemoryRAMSize_Min='2048'",
    "GlueHostMainMemoryRAMSize_Max='8192'",
    'blah_opt_mpinodes=4',
    'source /usr/libexec/blahp/pbs_local_submit_attributes.sh',
  );
  t.same(r, {
    tags: ['vm_sl6', 'vm_el9'],
    memoryMinMB: 2048, memoryMaxMB: 8192, cpus: 4,
    vo: 'dteam',
    blahFqans: ['/dteam/Role=production/Capability=NULL', '/dteam/Role=NULL/Capability=NULL'],
    proxyPath: '/var/cream_sandbox/dteam/proxy/abc.lmt',
    subject: '/C=IT/O=INFN/CN=Jane Doe',
    queue: 'long', jobId: 'https://ce.example.org:8443/CREAM123', ceId: 'ce.example.org:8443/cream-pbs-long',
    warnings: [],
  });
});

t.test('nothing given: an empty request, no warnings', async (t) => {
  t.same(req(), { tags: [], blahFqans: [], warnings: [] });
});

t.test('tags: order, case-insensitive de-duplication, validation', async (t) => {
  const r = req(
    `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'`,
    `gluehostapplicationsoftwareruntimeenvironment[0]='"VM_SL6"'`,
    `GlueHostApplicationSoftwareRunTimeEnvironment[1]='"bad tag"'`,
    `GlueHostApplicationSoftwareRunTimeEnvironment[2]='42'`,
    `GlueHostApplicationSoftwareRunTimeEnvironment[3]='"$(reboot)"'`,
    `GlueHostApplicationSoftwareRunTimeEnvironment[4]='"caf\\303\\251"'`,
    `GlueHostApplicationSoftwareRunTimeEnvironment[5]='"${'a'.repeat(101)}"'`,
    `GlueHostApplicationSoftwareRunTimeEnvironment[6]='"vo.cms-1.0+x_y"'`,
  );
  t.same(r.tags, ['vm_sl6', 'vo.cms-1.0+x_y']);
  t.same(r.badTags, ['"bad tag"', '"$(reboot)"', '"caf\\u{e9}"', `"${'a'.repeat(60)}..."`], 'kept apart, printable, to be refused');
  check(t, r, { warnings: [
    /another spelling/,
    /tag "bad tag" is not 1-100 characters.*; refused/,
    /element "42" is not a string; ignored/,
    /tag "\$\(reboot\)" is not/,
    /tag "café" is not/,
    /tag "a{101}" is not/,
  ] });
});

t.test('a tag line the parser rejects, or a value that is no ClassAd string, is a bad tag (never "no tag")', async (t) => {
  t.same(req(`GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_a\x01"'`).badTags, ['the unreadable value on line 2']);
  t.same(req(`GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_\\377"'`).badTags, ['"\\u{22}vm_\\u{5c}377\\u{22}"'], 'invalid UTF-8');
  t.same(req(`GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_a\\nb"'`).badTags, ['"vm_a\\u{a}b"'], 'an escaped newline');
  t.equal(req(`GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'`).badTags, undefined);
});

t.test('numbers: ranges, the last value wins, bad ones are warnings', async (t) => {
  check(t, req("GlueHostMainMemoryRAMSize_Min='-1'"), { memoryMinMB: undefined, warnings: [/-1 is outside 0\.\.16777216/] });
  check(t, req("GlueHostMainMemoryRAMSize_Min='99999999'"), { memoryMinMB: undefined, warnings: [/outside/] });
  check(t, req("GlueHostMainMemoryRAMSize_Min='1.5'"), { memoryMinMB: undefined, warnings: [/"1\.5" is not an integer/] });
  check(t, req(`GlueHostMainMemoryRAMSize_Min='"abc"'`), { memoryMinMB: undefined, warnings: [/not an integer/] });
  check(t, req(`GlueHostMainMemoryRAMSize_Min='"512"'`), { memoryMinMB: 512, warnings: [] });
  check(t, req("GlueHostMainMemoryRAMSize_Min='1000'", "gluehostmainmemoryramsize_min='3000'"),
    { memoryMinMB: 3000, warnings: [/another spelling/, /several values \("1000", "3000"\); using the last/] });
  check(t, req("GlueHostMainMemoryRAMSize_Min='4000'", "GlueHostMainMemoryRAMSize_Max='1000'"),
    { memoryMinMB: 4000, memoryMaxMB: 1000, warnings: [/minimum 4000 MB is above maximum 1000 MB/] });
  check(t, req('blah_opt_mpinodes=0'), { cpus: undefined, warnings: [/0 is outside 1\.\.4096/] });
});

t.test('cpus: mpinodes, else SMPSize_Min, else SMPSize, else CpuNumber', async (t) => {
  t.equal(req('blah_opt_mpinodes=8', "GlueHostArchitectureSMPSize_Min='2'").cpus, 8);
  t.equal(req("GlueHostArchitectureSMPSize_Min='2'", "CpuNumber='6'").cpus, 2);
  t.equal(req("GlueHostArchitectureSMPSize='3'", "CpuNumber='6'").cpus, 3);
  t.equal(req("CpuNumber='6'").cpus, 6);
  check(t, req('blah_opt_mpinodes=9999', "GlueHostArchitectureSMPSize_Min='2'"), { cpus: 2, warnings: [/outside/] });
});

t.test('identity: first assignment wins, CeRequirements overrides are refused', async (t) => {
  // The user's CeRequirements lines come after BLAH's pass-through lines ("so that it takes precedence").
  const spoof = unwindCeRequirements(parseClassAd(
    'other.VirtualOrganisation == "atlas" && other.x509userproxy == "/home/victim/proxy" && ' +
    'Member("userFQAN=/atlas/Role=lcgadmin", other.x509UserProxyFQAN) && other.Queue == "express"'));
  const text = renderBlahScript([
    { name: 'VirtualOrganisation', raw: 'dteam', line: 2 },
    { name: 'x509UserProxyFQAN', raw: '"userFQAN=/dteam/Role=NULL/Capability=NULL"', line: 3 },
    { name: 'x509userproxy', raw: '/var/proxy/real.lmt', line: 4 },
    { name: 'Queue', raw: 'long', line: 5 },
    ...spoof,
  ]);
  const r = requestFromScript(parseBlahScript(text));
  t.equal(r.vo, 'dteam');
  t.equal(r.proxyPath, '/var/proxy/real.lmt');
  t.same(r.blahFqans, ['/dteam/Role=NULL/Capability=NULL']);
  t.equal(r.queue, 'long');
  t.match(r.warnings.join('\n'), /VirtualOrganisation is assigned 2 times \(lines 2, 6\)/);
  t.match(r.warnings.join('\n'), /x509UserProxyFQAN is assigned 2 times/);

  // Without a pass-through line, a quoted value can only be the user's own CeRequirements.
  const alone = req(`VirtualOrganisation='"atlas"'`, `x509userproxy='"/home/victim/proxy"'`, "Queue='5'");
  t.equal(alone.vo, undefined);
  t.equal(alone.proxyPath, undefined);
  check(t, alone, { warnings: [/line 2: VirtualOrganisation: quoted value "\\"atlas\\"" can only come from CeRequirements/,
    /line 3: x509userproxy: quoted value/] });
  t.equal(alone.queue, '5');
  check(t, req("VirtualOrganisation='42'"), { vo: undefined, warnings: [/is not a VO name/] });
  check(t, req("x509userproxy='relative/path'"), { proxyPath: undefined, warnings: [/not an absolute path/] });
  check(t, req("x509userproxy='/a/../etc/shadow'"), { proxyPath: undefined, warnings: [/not an absolute path/] });
  check(t, req("x509userproxy='/tmp/$(id)'"), { proxyPath: undefined });
  check(t, req("x509UserProxySubject='CN=x'"), { subject: undefined, warnings: [/not a DN/] });
  check(t, req("Queue='a b'"), { queue: undefined, warnings: [/unexpected characters/] });
});

t.test('FQAN list', async (t) => {
  t.same(req(FQANS).blahFqans, ['/dteam/Role=production/Capability=NULL', '/dteam/Role=NULL/Capability=NULL'], 'first = primary');
  t.same(req(`x509UserProxyFQAN='"userFQAN="'`), { tags: [], blahFqans: [], warnings: [] }, 'no VOMS: empty, no warning');
  check(t, req(`x509UserProxyFQAN='userFQAN=/dteam'`), { blahFqans: [], warnings: [/not a list of quoted FQANs \(expected '"' at offset 0\)/] });
  check(t, req(`x509UserProxyFQAN='"userFQAN=/dteam" "userFQAN=not-an-fqan" "/dteam/x"'`),
    { blahFqans: ['/dteam', '/dteam/x'], warnings: [/"not-an-fqan" is not an FQAN/] });
  check(t, req(`x509UserProxyFQAN='"unterminated'`), { blahFqans: [], warnings: [/no closing quote/] });
});

t.test('malformed lines travel as warnings next to a usable request', async (t) => {
  const r = req("VirtualOrganisation='dteam'", "GlueHostMainMemoryRAMSize_Min=$(id)", `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'`);
  t.equal(r.vo, 'dteam');
  t.same(r.tags, ['vm_sl6']);
  check(t, r, { warnings: [/^line 3: unquoted value of GlueHostMainMemoryRAMSize_Min/] });
});

t.test('hand-built ParsedScript without assignment history', async (t) => {
  const r = requestFromScript({
    vars: new Map([['virtualorganisation', { name: 'VirtualOrganisation', values: ['dteam', 'x'] }]]),
    warnings: ['from the caller'],
  });
  t.equal(r.vo, 'dteam');
  check(t, r, { warnings: ['from the caller', /several values; using the first/] });
});

t.test('script values', async (t) => {
  t.same(parseScriptValue('"vm_sl6"'), { kind: 'string', value: 'vm_sl6' });
  t.same(parseScriptValue('"caf\\303\\251"'), { kind: 'string', value: 'café' });
  t.same(parseScriptValue('"a\\"b\\\\c\\n"'), { kind: 'string', value: 'a"b\\c\n' });
  t.same(parseScriptValue('"it\\s"'), { kind: 'string', value: 'its' }, "what is left of \\' after BLAH deletes quotes");
  t.same(parseScriptValue('"\\377"'), { kind: 'invalid', reason: 'string at offset 0 is not valid UTF-8' });
  t.same(parseScriptValue('"a" x'), { kind: 'invalid', reason: 'text after the closing quote at offset 3' });
  t.same(parseScriptValue('1000'), { kind: 'integer', value: 1000 });
  t.same(parseScriptValue('-3'), { kind: 'integer', value: -3 });
  t.same(parseScriptValue('99999999999999999999'), { kind: 'invalid', reason: 'integer 99999999999999999999 is out of range' });
  t.same(parseScriptValue('1.500000000000000E+00'), { kind: 'real', text: '1.500000000000000E+00' });
  t.same(parseScriptValue('TRUE'), { kind: 'boolean', value: true });
  t.same(parseScriptValue('undefined'), { kind: 'undefined' });
  t.same(parseScriptValue('dteam'), { kind: 'bare', value: 'dteam' });
  t.same(parseQuotedStrings('"a", "b" "c"'), { values: ['a', 'b', 'c'] });
  t.same(parseQuotedStrings(''), { values: [] });
  t.same(parseQuotedStrings('"a"b'), { error: 'expected a separator at offset 3' });
});
