// Test helper: run one job like `wnod vm run` does, but stop for ever at a given lifecycle step (printing
// "AT <step>") so that the test can kill -9 this process there. Usage: vm-hold.mjs <stateDir> <id> <step> <spec.json>
import { readFileSync } from 'node:fs';
import { QemuDriver } from '../../dist/vm/qemu.js';
import { runOnce } from '../../dist/vm/session.js';

const [stateDir, id, step, specFile] = process.argv.slice(2);
const spec = { ...JSON.parse(readFileSync(specFile, 'utf8')), id };
const driver = new QemuDriver({ stateDir, accel: 'tcg' });
setInterval(() => {}, 1 << 30);
await runOnce(driver, spec, {
  argv: ['/bin/true'], stdout: process.stdout, stderr: process.stderr, readyTimeoutMs: 300_000,
  onStep: async (s) => {
    if (s === step) {
      process.stdout.write(`AT ${s}\n`);
      await new Promise(() => {});
    }
  },
});
