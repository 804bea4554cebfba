// Long fuzz run of the jdl parsers, printing JSON figures.
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/fuzz-jdl.ts [--n 100000] [--seed 1]
// Each parser gets N generated/mutated inputs checked with the same properties as test/jdl-fuzz.test.ts (only the
// documented error types; valid inputs accepted; unwinding reads back unchanged; requestFromScript never throws).
// Baseline in the same run: batches that only GENERATE the same inputs, interleaved with batches that generate and
// check them, so the ratio (and the median per-input cost of the parser) is not skewed by warm-up or drift.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import {
  checkClassAd, checkScript, classAdInput, prng, scriptInput, type FuzzCounts,
} from '../test/jdl-fuzz-inputs.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '100000' }, seed: { type: 'string', default: '1' } } });
const N = Number(values.n);
const SEED = Number(values.seed);
if (!Number.isSafeInteger(N) || N < 1000 || !Number.isSafeInteger(SEED)) {
  process.stderr.write('usage: fuzz-jdl.ts [--n N>=1000] [--seed S]\n');
  process.exit(2);
}
const BATCH = 1000;


interface Target { name: string; run(seed: number, check: boolean, counts: FuzzCounts, slowest: { ms: number; input: string }): void }

const targets: Target[] = [
  {
    name: 'parseClassAd',
    run(seed, check, counts, slowest) {
      const r = prng(seed);
      for (let i = 0; i < BATCH; i++) {
        const { src, valid } = classAdInput(r);
        if (!check) continue;
        const t0 = performance.now();
        checkClassAd(src, valid, counts);
        const ms = performance.now() - t0;
        if (ms > slowest.ms) Object.assign(slowest, { ms, input: src.slice(0, 120) });
      }
    },
  },
  {
    name: 'parseBlahScript',
    run(seed, check, counts, slowest) {
      const r = prng(seed);
      for (let i = 0; i < BATCH; i++) {
        const text = scriptInput(r);
        if (!check) continue;
        const t0 = performance.now();
        checkScript(text, counts);
        const ms = performance.now() - t0;
        if (ms > slowest.ms) Object.assign(slowest, { ms, input: text.slice(0, 120) });
      }
    },
  },
];

const results: Record<string, unknown> = {};
let failures = 0;
for (const target of targets) {
  const counts: FuzzCounts = { inputs: 0, accepted: 0, documentedErrors: 0 };
  const slowest = { ms: 0, input: '' };
  const genOnly: number[] = [];
  const genAndCheck: number[] = [];
  let violation: string | undefined;
  const batches = Math.ceil(N / BATCH);
  for (let b = 0; b < batches && !violation; b++) {
    const seed = SEED * 1_000_003 + b;
    // Alternate which one goes first, so neither always runs on a warmer cache.
    const order = b % 2 === 0 ? [false, true] : [true, false];
    for (const check of order) {
      const t0 = performance.now();
      try {
        target.run(seed, check, counts, slowest);
      } catch (err) {
        violation = `batch seed ${seed}: ${err instanceof Error ? err.message.slice(0, 2000) : String(err)}`;
        break;
      }
      (check ? genAndCheck : genOnly).push(performance.now() - t0);
    }
  }
  if (violation) failures++;
  const g = median(genOnly);
  const gc = median(genAndCheck);
  results[target.name] = {
    ...counts,
    violation: violation ?? null,
    batches: genAndCheck.length,
    batchSize: BATCH,
    medianBatchMsGenerateOnly: +g.toFixed(3),
    medianBatchMsGenerateAndCheck: +gc.toFixed(3),
    ratioCheckedToBaseline: +(gc / g).toFixed(3),
    medianCheckUsPerInput: +(((gc - g) / BATCH) * 1000).toFixed(2),
    slowestCheckMs: +slowest.ms.toFixed(3),
    slowestInput: slowest.input,
  };
}
process.stdout.write(JSON.stringify({ bench: 'fuzz-jdl', n: N, seed: SEED, node: process.version, results }, null, 2) + '\n');
process.exitCode = failures > 0 ? 1 : 0;
