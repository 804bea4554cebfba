// `wnod vm run …` (one command in a fresh VM) and `wnod vm build-test-image`.
import { parseCommandLine, runSubcommand } from './args.js';
import { realpath } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, UsageError, WnodError } from '../util/errors.js';
import { vmHostname } from '../vm/qemu.js';
import { newVmDriver } from '../vm/drivers.js';
import { runOnce } from '../vm/session.js';
import { buildTestImage, testVmImage, DEFAULT_TEST_IMAGE_CACHE, type TestKernel } from '../guest/testImage.js';
import type { VmDriver, VmImage, VmSpec } from '../vm/driver.js';
import type { SiteConfig, Image } from '../config/types.js';

export const summary = 'run a command in a fresh VM (vm run), build the test image (vm build-test-image)';

const DEFAULT_STATE_DIR = '/var/lib/wnod';

const HELP = `usage:
  wnod vm run --config FILE --image ID [--cpus N] [--memory MB] [--workdir DIR] [--network none|user] -- CMD [ARGS…]
  wnod vm run --test-image [--kernel debian|mini] [--disk] [--cpus N] [--memory MB] [--workdir DIR] [--state-dir DIR] [--cold] [-- CMD [ARGS…]]
  wnod vm build-test-image [--kernel debian|mini] [--cache-dir DIR]

vm run starts a fresh VM, runs CMD inside (as the calling user's uid/gid), prints its stdout and stderr, exits
with its exit code and destroys the VM. --test-image uses the builder's image (built on first use) and no site
config: "does virtualisation work on this host". --kernel mini boots wnod's minimal kernel (wnod kernel build)
instead of Debian's cloud kernel. The VM is restored from a warm snapshot template of its image and shape when
there is one (one is built after the first run); --cold always boots it (--snapshot: say which it was). Exit 125
when the VM itself failed.`;

/** --kernel of the test image: debian (default) or mini. */
function kernelOpt(v: string | undefined): TestKernel {
  if (v === undefined || v === 'debian' || v === 'mini') return v ?? 'debian';
  throw new UsageError(`--kernel must be debian or mini, got '${v}'`);
}

/** Parse an integer option within bounds; the error names the option and the bound. */
function intOpt(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, got '${v}'`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`--${name} ${n} is outside ${min}..${max}`);
  return n;
}

async function runCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args: argv, allowPositionals: true, strict: true,
    options: {
      config: { type: 'string' }, image: { type: 'string' }, 'test-image': { type: 'boolean' }, disk: { type: 'boolean' },
      cpus: { type: 'string' }, memory: { type: 'string' }, workdir: { type: 'string' }, network: { type: 'string' },
      'state-dir': { type: 'string' }, 'cache-dir': { type: 'string' }, 'ready-timeout': { type: 'string' },
      snapshot: { type: 'boolean' }, cold: { type: 'boolean' },
      kernel: { type: 'string' },
    },
  }, HELP);
  const testImage = values['test-image'] === true;
  if (values.snapshot && values.cold) throw new UsageError('--snapshot and --cold exclude each other');
  const warm = values.cold !== true;
  if (testImage === (values.config !== undefined)) throw new UsageError('give either --config FILE --image ID, or --test-image');
  if (!testImage && !values.image) throw new UsageError('--image ID is required with --config');
  const kernel = kernelOpt(values.kernel);
  if (!testImage && values.kernel !== undefined) throw new UsageError('--kernel goes with --test-image (a catalog image names its own kernel)');
  const cmd = positionals.length ? positionals : testImage ? ['/bin/sh', '-c', 'echo "wnod test VM: $(uname -sr), $(nproc) cpu(s), user $(id -un)"'] : [];
  if (cmd.length === 0) throw new UsageError('no command: put it after --, e.g. wnod vm run --config /etc/wnod/wnod.yaml --image vm_el9 -- /bin/true');
  const network = values.network ?? 'none';
  if (network !== 'none' && network !== 'user') throw new UsageError(`--network must be none or user, got '${network}'`);

  let config: SiteConfig | undefined;
  let image: Image | undefined;
  let vmImage: VmImage;
  let cpus: number;
  let memoryMB: number;
  let readyTimeoutMs = (intOpt(values['ready-timeout'], 'ready-timeout', 1, 3600) ?? 120) * 1000;
  const id = `run-${process.pid}-${randomBytes(3).toString('hex')}`;
  let release: (() => Promise<unknown>) | undefined;

  if (testImage) {
    const t = await buildTestImage({ cacheDir: values['cache-dir'] ?? DEFAULT_TEST_IMAGE_CACHE, kernel, log: (s) => process.stderr.write(`wnod vm: ${s}\n`) });
    vmImage = testVmImage(t, values.disk === true);
    cpus = intOpt(values.cpus, 'cpus', 1, 16) ?? 1;
    memoryMB = intOpt(values.memory, 'memory', 64, 16384) ?? 256;
  } else {
    const { loadConfig } = await import('../config/load.js');
    config = await loadConfig(values.config!);
    image = config.images.find((i) => i.id === values.image);
    if (!image) throw new UsageError(`image '${values.image}' is not in the catalog of ${values.config} (have: ${config.images.map((i) => i.id).join(', ')})`);
    cpus = intOpt(values.cpus, 'cpus', 1, image.cpus.max) ?? image.cpus.default;
    memoryMB = intOpt(values.memory, 'memory', 64, image.memoryMB.max) ?? image.memoryMB.default;
    if (values['ready-timeout'] === undefined) readyTimeoutMs = config.vm.readyTimeoutS * 1000;
    const { ImageCache } = await import('../images/cache.js');
    const cache = new ImageCache(config.cache);
    const got = await cache.acquire(image, id);
    release = () => cache.release(got.digest, id);
    vmImage = { id: image.id, digest: got.digest, kind: image.kind, files: got.files, diskFormat: image.disk?.format, cmdline: image.cmdline,
      ...(image.acpi === false ? { acpi: false } : {}) };
  }

  const me = userInfo();
  const workdir = values.workdir ? await realpath(values.workdir) : undefined;
  const spec: VmSpec = {
    id, image: vmImage, cpus, memoryMB, hostname: vmHostname(id),
    user: { name: me.uid === 0 ? 'root' : me.username, uid: me.uid, gid: me.gid },
    workdir: workdir ? { hostPath: workdir, uid: me.uid, gid: me.gid } : undefined,
    env: { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', HOME: workdir ?? '/tmp', LANG: 'C' },
    network: { mode: network },
  };
  const stateDir = values['state-dir'] ?? config?.vm.stateDir ?? DEFAULT_STATE_DIR;
  let missingTemplate: VmSpec | undefined;
  const driver: VmDriver = newVmDriver({ driver: config?.vm.driver ?? 'qemu', stateDir, accel: config?.vm.accel ?? 'auto' }, {
    // restore from a template; a missing one is built after this run (the next run restores)
    ...(warm ? { snapshots: { dir: join(stateDir, 'templates'), onMissing: (s: VmSpec) => { missingTemplate = s; } } } : {}) });
  const ac = new AbortController();
  const onSig = () => ac.abort();
  process.on('SIGTERM', onSig);
  process.on('SIGINT', onSig);
  try {
    const r = await runOnce(driver, spec, { argv: cmd, stdout: process.stdout, stderr: process.stderr, readyTimeoutMs, signal: ac.signal,
      onStep: (step, st) => {
        if (values.snapshot && step === 'ready') process.stderr.write(`wnod vm: ${st.extra?.boot === 'restore' ? 'restored from a snapshot' : `cold boot (${st.extra?.coldReason ?? 'no snapshot'})`}\n`);
      } });
    if (missingTemplate) {
      const { buildTemplate } = await import('../vm/snapshot.js');
      const b = await buildTemplate({ dir: join(stateDir, 'templates'), qemu: 'qemu-system-x86_64', spec: missingTemplate, accel: missingTemplate.accel ?? 'tcg',
        log: (s) => process.stderr.write(`wnod vm: ${s}\n`) });
      if (b.status === 'refused' || b.status === 'failed') process.stderr.write(`wnod vm: no snapshot template: ${b.reason}\n`);
    }
    if (process.env.WNOD_TIMINGS) process.stderr.write(`wnod vm: timings ${JSON.stringify(r.timings)}\n`);
    return r.exitCode;
  } catch (err) {
    process.stderr.write(`wnod vm run: ${err instanceof WnodError ? `${err.code}: ` : ''}${describe(err)}\n`);
    return 125;
  } finally {
    process.off('SIGTERM', onSig);
    process.off('SIGINT', onSig);
    await release?.().catch(() => {});
  }
}

async function buildCmd(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: argv, strict: true, options: { 'cache-dir': { type: 'string' }, json: { type: 'boolean' }, kernel: { type: 'string' } } }, HELP);
  const t = await buildTestImage({ cacheDir: values['cache-dir'] ?? DEFAULT_TEST_IMAGE_CACHE, kernel: kernelOpt(values.kernel), log: (s) => process.stderr.write(`wnod vm: ${s}\n`) });
  process.stdout.write(values.json ? JSON.stringify(t, null, 2) + '\n' : `${t.dir}\n`);
  return 0;
}

const handlers = { run: runCmd, 'build-test-image': buildCmd };
export const subcommands = Object.keys(handlers);

export async function run(argv: string[]): Promise<number> {
  return runSubcommand('vm', argv, handlers, HELP);
}
