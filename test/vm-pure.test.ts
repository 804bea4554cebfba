// Pure parts of the VM engine: no VM, no QEMU. The shell script builder is checked by running it with the host's sh.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpioArchive, checkCpioPath } from '../src/vm/cpio.js';
import { lz4LegacyDecode, LZ4_LEGACY_MAGIC, extractVmlinuxLz4 } from '../src/vm/lz4.js';
import { loadOrder, moduleDepends, moduleName } from '../src/vm/kmod.js';
import { execScript, shq } from '../src/vm/shell.js';
import { renderContext, contextCpio } from '../src/vm/context.js';
import { kernelCmdline, qemuArgs, tscKhzFromCpuinfo, type QemuPlan } from '../src/vm/qemuArgs.js';
import { MarkerStripper, parseExitLine } from '../src/vm/agent.js';
import { orphanReason } from '../src/vm/gc.js';
import { parseStatStartTime } from '../src/vm/proc.js';
import { decideAccel } from '../src/vm/accel.js';
import { checkVmId, vmIdForJob, parseRecord } from '../src/vm/state.js';
import { parseMetaDepends, parsePolicyCandidate } from '../src/guest/testImage.js';

t.test('cpio newc: the host cpio(1) lists and extracts what we wrote', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wnod-cpio-'));
  const a = cpioArchive([
    { path: 'etc', type: 'dir', mode: 0o755 },
    { path: 'etc/passwd', type: 'file', mode: 0o644, data: 'root:x:0:0::/root:/bin/sh\n' },
    { path: 'bin', type: 'dir', mode: 0o755 },
    { path: 'bin/sh', type: 'symlink', mode: 0o777, data: 'busybox' },
    { path: 'odd', type: 'file', mode: 0o600, data: Buffer.from([0, 1, 2]) },
  ]);
  t.equal(a.length % 512, 0, 'padded to 512 bytes');
  writeFileSync(join(dir, 'a.cpio'), a);
  mkdirSync(join(dir, 'x'));
  execFileSync('cpio', ['-idm', '--quiet', '-F', join(dir, 'a.cpio')], { cwd: join(dir, 'x') });
  t.equal(readFileSync(join(dir, 'x/etc/passwd'), 'utf8'), 'root:x:0:0::/root:/bin/sh\n');
  t.same([...readFileSync(join(dir, 'x/odd'))], [0, 1, 2]);
  t.equal(execFileSync('readlink', [join(dir, 'x/bin/sh')], { encoding: 'utf8' }).trim(), 'busybox');
  for (const bad of ['/abs', '../up', 'a/../b', '', 'a//b']) t.throws(() => checkCpioPath(bad), { name: 'RangeError' }, `refuses '${bad}'`);
  t.throws(() => cpioArchive([{ path: 'x', type: 'file', mode: 0o100644 }]), /type bits/);
});

t.test('lz4 legacy frame: literals, overlapping matches, stop at the trailer; corrupt input is refused', async (t) => {
  // block: "abcabcabcabcabcab" = 3 literals "abc" + match(offset 3, len 14), then 5 literal "XYZ12" (last sequence)
  const block = Buffer.from([0x3a, 0x61, 0x62, 0x63, 0x03, 0x00, 0x50, 0x58, 0x59, 0x5a, 0x31, 0x32]);
  const frame = Buffer.alloc(4 + 4 + block.length + 4);
  frame.writeUInt32LE(LZ4_LEGACY_MAGIC, 0);
  frame.writeUInt32LE(block.length, 4);
  block.copy(frame, 8);
  frame.writeUInt32LE(0xfffffff0, 8 + block.length); // what the kernel appends (the size), not a block
  t.equal(lz4LegacyDecode(frame).toString(), 'abc'.repeat(5) + 'ab' + 'XYZ12');
  const bad = Buffer.from(frame);
  bad.writeUInt16LE(0x0100, 12); // match offset beyond the output so far
  t.throws(() => lz4LegacyDecode(bad), { code: 'lz4' });
  t.throws(() => lz4LegacyDecode(Buffer.from('nope')), /no LZ4 legacy magic/);
  t.equal(extractVmlinuxLz4(frame), undefined, 'not an ELF: no vmlinux');
});

t.test('kernel modules: depends= from .modinfo and a dependency order', async (t) => {
  const ko = Buffer.concat([Buffer.from('\x7fELF....'), Buffer.from('\0license=GPL\0depends=virtio,virtio_ring\0vermagic=6.1\0')]);
  t.same(moduleDepends(ko), ['virtio', 'virtio_ring']);
  t.same(moduleDepends(Buffer.from('\0depends=\0')), []);
  t.equal(moduleName('/x/virtio-rng.ko'), 'virtio_rng');
  const deps: Record<string, string[]> = { virtio_console: ['virtio', 'virtio_ring'], virtio: [], virtio_ring: [], virtiofs: ['fuse', 'virtio', 'virtio_ring'], fuse: [] };
  const order = loadOrder(['virtio_console', 'virtiofs', 'ext4'], (n) => deps[n], new Set(['ext4']));
  t.same(order, ['virtio', 'virtio_ring', 'virtio_console', 'fuse', 'virtiofs']);
  t.throws(() => loadOrder(['nope'], (n) => deps[n], new Set()), /nope is neither a module nor built in/);
  t.throws(() => loadOrder(['a'], (n) => ({ a: ['b'], b: ['a'] } as Record<string, string[]>)[n], new Set()), /cycle/);
});

t.test('exec script: argv, cwd and env arrive exactly, nothing is parsed by the shell', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wnod-sh-'));
  const argv = ['/bin/sh', '-c', 'printf "[%s]" "$0" "$@"; printf "{%s}" "$A" "$B"; pwd', "it's", '$(touch pwned)', 'a b\nc', '*', ''];
  const script = execScript(argv, dir, { A: "x'y", B: '$HOME `id`' });
  const out = execFileSync('/bin/sh', ['-c', script], { encoding: 'utf8', cwd: '/' });
  t.equal(out, `[it's][$(touch pwned)][a b\nc][*][]{x'y}{$HOME \`id\`}${dir}\n`);
  t.throws(() => execScript([], '/', {}), /empty command/);
  t.throws(() => execScript(['x'], 'rel', {}), /absolute/);
  t.throws(() => execScript(['x'], '/', { 'A-B': '1' }), /invalid environment variable name/);
  t.throws(() => shq('a\0b'), /NUL/);
  const r = spawnSync('/bin/sh', ['-c', execScript(['/bin/echo', 'ran'], '/nonexistent-wnod', {})], { encoding: 'utf8' });
  t.equal(r.status, 126, 'a missing cwd ends the script with 126');
  t.equal(r.stdout, '', 'before anything runs');
});

t.test('context: rendered as shell assignments the guest init sources; bad values refused', async (t) => {
  const ctx = { hostname: 'wn01-13', user: { name: 'dteam001', uid: 5001, gid: 5000 }, workdir: "/home/dteam001/job 'x'", clock: 1700000000, seed: Buffer.alloc(8) };
  const text = renderContext(ctx);
  const out = execFileSync('/bin/sh', ['-c', `${text}\nprintf '%s|' "$WNOD_HOSTNAME" "$WNOD_USER" "$WNOD_UID" "$WNOD_GID" "$WNOD_WORKDIR" "$WNOD_CLOCK"`], { encoding: 'utf8' });
  t.equal(out, "wn01-13|dteam001|5001|5000|/home/dteam001/job 'x'|1700000000|");
  t.ok(contextCpio(ctx).includes(Buffer.from('wnod/context')));
  t.throws(() => renderContext({ ...ctx, hostname: 'bad_host!' }), { code: 'vm-spec' });
  t.throws(() => renderContext({ ...ctx, user: { name: 'Root;rm', uid: 1, gid: 1 } }), /invalid user name/);
  t.throws(() => renderContext({ ...ctx, user: { name: 'u', uid: -1, gid: 1 } }), /uid/);
  t.throws(() => renderContext({ ...ctx, workdir: '/a/../etc' }), /workdir/);
  t.throws(() => renderContext({ ...ctx, network: { ip: '10.0.2.15', gateway: '10.0.2.2' } }), /a\.b\.c\.d\/n/);
});

t.test('qemu command line: microvm + A5 options for kernels, q35 for disks, commas escaped, never a shell', async (t) => {
  const base: QemuPlan = {
    machine: 'microvm', accel: 'tcg', cpus: 2, memoryMB: 512, kernel: '/c/vmlinux', initrd: '/r/initrd.img', cmdline: kernelCmdline('tcg', 2299998, 'wnod.root=/dev/vda'),
    sockets: { control: '/r/a/c.sock', stdout: '/r/a/o.sock', stderr: '/r/a/e.sock', qmp: '/r/q,mp.sock', virtiofs: '/r/fs.sock' },
    console: '/r/console.log', pidfile: '/r/qemu.pid', network: { mode: 'user' },
  };
  const a = qemuArgs(base);
  const s = a.join(' ');
  t.match(s, /-M microvm/);
  t.match(s, /-global virtio-mmio.force-legacy=false/);
  for (const f of ['-nodefaults', '-no-user-config', '-no-reboot', '-daemonize']) t.ok(a.includes(f), f);
  t.match(s, /memory-backend-memfd,id=mem0,size=512M,share=on/);
  t.match(s, /virtserialport,chardev=ch-control,name=org.wnod.control/);
  t.match(s, /vhost-user-fs-device,chardev=fs0,tag=wnodwork/);
  t.match(s, /-netdev user,id=net0,restrict=on/);
  t.ok(a.includes('unix:/r/q,,mp.sock,server=on,wait=off'), 'a comma in a path is doubled');
  const cmdline = a[a.indexOf('-append') + 1]!;
  t.match(cmdline, /tsc_early_khz=2299998/);
  t.match(cmdline, /reboot=t/);
  t.notMatch(cmdline, /nolapic_timer/, 'nolapic_timer leaves microvm guests without timers (sleep hangs)');
  t.match(cmdline, /wnod\.root=\/dev\/vda$/);
  t.notMatch(kernelCmdline('kvm', 2299998), /tsc_early_khz/);
  const q = qemuArgs({ ...base, machine: 'q35', kernel: undefined, initrd: undefined, cmdline: undefined, disk: { path: '/r/disk.qcow2', format: 'qcow2' }, contextBlob: '/r/context.cpio', network: { mode: 'none' } }).join(' ');
  t.match(q, /-M q35/);
  t.match(q, /virtio-blk-pci,drive=disk0/);
  t.match(q, /-fw_cfg name=opt\/org.wnod\/context,file=\/r\/context.cpio/);
  t.notMatch(q, /netdev/);
  t.equal(tscKhzFromCpuinfo('processor\t: 0\ncpu MHz\t\t: 2299.998\n'), 2299998);
  t.equal(tscKhzFromCpuinfo('nothing'), undefined);
});

t.test('agent protocol: the end marker is found across chunk borders and never leaks', async (t) => {
  const marker = Buffer.from('0123456789abcdef');
  for (let split = 0; split <= 40; split++) {
    const all = Buffer.concat([Buffer.from('hello 0123 world 01234567'), marker, Buffer.from('late')]);
    const got: Buffer[] = [];
    const m = new MarkerStripper(marker, (b) => got.push(Buffer.from(b)));
    let rest = m.push(all.subarray(0, Math.min(split, all.length)));
    rest = Buffer.concat([rest, m.push(all.subarray(Math.min(split, all.length)))]);
    t.equal(Buffer.concat(got).toString(), 'hello 0123 world 01234567', `split at ${split}`);
    t.equal(m.done, true);
    t.equal(rest.toString(), 'late');
  }
  t.equal(parseExitLine('EXIT abc 7', 'abc'), 7);
  t.equal(parseExitLine('EXIT other 7', 'abc'), undefined);
  t.equal(parseExitLine('EXIT abc x', 'abc'), undefined);
});

t.test('gc decisions, process identity, accel decision, ids and records', async (t) => {
  t.equal(orphanReason({ steps: { started: 'x', ready: 'y' }, handedOver: true }, { qemuAlive: true, ownerAlive: false }), undefined, 'a handed-over VM outlives its prologue');
  t.match(orphanReason({ steps: { started: 'x' } }, { qemuAlive: true, ownerAlive: false })!, /creator died/);
  t.match(orphanReason({ steps: { prepared: 'x' } }, { qemuAlive: false, ownerAlive: false })!, /while preparing/);
  t.equal(orphanReason({ steps: { prepared: 'x' } }, { qemuAlive: false, ownerAlive: true }), undefined, 'a VM being prepared is left alone');
  t.match(orphanReason({ steps: { started: 'x' }, handedOver: true }, { qemuAlive: false, ownerAlive: false })!, /hypervisor/);
  t.match(orphanReason({ steps: { started: 'x' }, handedOver: true }, { qemuAlive: true, ownerAlive: false, jobAlive: false })!, /batch job/);
  t.equal(parseStatStartTime('123 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21'), '987654');
  t.equal(decideAccel('auto', false, undefined, 'k'), 'tcg');
  t.equal(decideAccel('auto', true, undefined, 'k'), 'probe');
  t.equal(decideAccel('auto', true, { accel: 'kvm', reason: '', key: 'k', at: '' }, 'k'), 'kvm');
  t.equal(decideAccel('auto', true, { accel: 'kvm', reason: '', key: 'old', at: '' }, 'k'), 'probe', 'a verdict for another kernel/QEMU is not reused');
  t.equal(decideAccel('tcg', true, undefined, 'k'), 'tcg');
  t.equal(vmIdForJob('13.ce.example.org'), '13.ce.example.org');
  t.equal(vmIdForJob('13[2].host/x'), '13_2_.host_x');
  for (const bad of ['', '../x', 'a/b', '.hidden', 'x'.repeat(65)]) t.throws(() => checkVmId(bad), { code: 'vm-spec' }, `refuses '${bad}'`);
  t.throws(() => parseRecord('{', '/s/vms/x.json'), /\/s\/vms\/x.json: not JSON/);
  t.throws(() => parseRecord('{"version":2}', '/s/vms/x.json'), /not a wnod VM state record/);
});

t.test('test-image inputs from apt-cache output', async (t) => {
  t.equal(parseMetaDepends('linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n'), 'linux-image-6.1.0-56-cloud-amd64');
  t.throws(() => parseMetaDepends('linux-image-cloud-amd64\n'), { code: 'test-image' });
  t.equal(parsePolicyCandidate('busybox-static:\n  Installed: 1:1.35\n  Candidate: 1:1.35.0-4\n', 'busybox-static'), '1:1.35.0-4');
  t.throws(() => parsePolicyCandidate('x:\n  Candidate: (none)\n', 'x'), /no candidate/);
});
