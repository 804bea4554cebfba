// Long fuzz run of the VOMS DER reader and the certificate/AC decoders, printing JSON figures.
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/fuzz-der.ts [--n 100000] [--seed 1]
// Each target (proxy certificate with its AC, user certificate, AC extension value) gets N mutated inputs checked
// with the property of test/voms-fuzz.test.ts: decoded, or refused with VomsError('malformed'); nothing else.
// Baselines in the same run, interleaved batch by batch: (a) batches that only GENERATE the same mutations, so the
// decoder's own cost is the difference of medians; (b) node-forge's asn1.fromDer on the same inputs (the reader
// the project card names), for a speed ratio and how often the two readers disagree on well-formedness.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import { check, makeTargets, mutate, prng, type FuzzCounts } from '../test/voms-fuzz-inputs.js';
import { parseDer } from '../src/voms/der.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '100000' }, seed: { type: 'string', default: '1' } } });
const N = Number(values.n);
const SEED = Number(values.seed);
if (!Number.isSafeInteger(N) || N < 1000 || !Number.isSafeInteger(SEED)) {
  process.stderr.write('usage: fuzz-der.ts [--n N>=1000] [--seed S]\n');
  process.exit(2);
}
const BATCH = 1000;
const forge = createRequire(import.meta.url)('node-forge/lib/asn1.js') as { fromDer(b: string, o: { strict: boolean; decodeBitStrings: boolean }): unknown };


const targets = await makeTargets();
const results: Record<string, unknown>[] = [];
for (const target of targets) {
  const counts: FuzzCounts = { inputs: 0, accepted: 0, malformed: 0 };
  const genMs: number[] = [];
  const ourMs: number[] = [];
  const forgeMs: number[] = [];
  let slowest = { ms: 0, input: '' };
  let forgeAccepts = 0;
  let disagree = 0; // top-level well-formedness: our parseDer vs forge.fromDer
  let forgeThrewNonError = 0;
  for (let b = 0; b * BATCH < N; b++) {
    const seed = SEED * 7919 + b;
    // (a) generation only
    let t0 = performance.now();
    let r = prng(seed);
    for (let i = 0; i < BATCH; i++) mutate(r, target.seed);
    genMs.push(performance.now() - t0);
    // ours: generate + decode + property check
    r = prng(seed);
    t0 = performance.now();
    for (let i = 0; i < BATCH; i++) {
      const input = mutate(r, target.seed);
      const s = performance.now();
      check(target, input, counts);
      const d = performance.now() - s;
      if (d > slowest.ms) slowest = { ms: d, input: input.toString('base64').slice(0, 80) };
    }
    ourMs.push(performance.now() - t0);
    // (b) node-forge on the same inputs (generation included, like ours)
    r = prng(seed);
    t0 = performance.now();
    for (let i = 0; i < BATCH; i++) {
      const input = mutate(r, target.seed);
      try { forge.fromDer(input.toString('binary'), { strict: true, decodeBitStrings: false }); } catch (e) { if (!(e instanceof Error)) forgeThrewNonError++; }
    }
    forgeMs.push(performance.now() - t0);
    // untimed: do the two readers agree on top-level well-formedness?
    r = prng(seed);
    for (let i = 0; i < BATCH; i++) {
      const input = mutate(r, target.seed);
      let f = false;
      try { forge.fromDer(input.toString('binary'), { strict: true, decodeBitStrings: false }); f = true; } catch { /* refused */ }
      let o = false;
      try { parseDer(input); o = true; } catch { /* refused */ }
      if (f) forgeAccepts++;
      if (o !== f) disagree++;
    }
  }
  const gen = median(genMs);
  results.push({
    target: target.name, inputs: counts.inputs, decoded: counts.accepted, malformed: counts.malformed, violations: 0,
    batch: BATCH, batches: genMs.length,
    median_batch_ms: { generate_only: +gen.toFixed(3), generate_and_decode: +median(ourMs).toFixed(3), generate_and_forge_fromDer: +median(forgeMs).toFixed(3) },
    ratio_ours_full_decode_vs_forge_top_level_parse: +((median(ourMs) - gen) / (median(forgeMs) - gen)).toFixed(2),
    decode_us_per_input: +(((median(ourMs) - gen) / BATCH) * 1000).toFixed(2),
    ratio_decode_vs_generate: +(median(ourMs) / gen).toFixed(2),
    forge_accepts_top_level: forgeAccepts, top_level_disagreements_with_forge: disagree, forge_non_error_throws: forgeThrewNonError,
    slowest_input_ms: +slowest.ms.toFixed(3),
  });
}
process.stdout.write(JSON.stringify({ bench: 'fuzz-der', n_per_target: N, seed: SEED, results }, null, 1) + '\n');
