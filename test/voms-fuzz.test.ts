// CI-sized fuzz run of the DER reader, certificate and AC decoders (5 000 mutated inputs per target);
// bench/fuzz-der.ts runs the same property at ≥ 100 000.
import t from 'tap';
import { check, makeTargets, mutate, prng, type FuzzCounts, type Target } from './voms-fuzz-inputs.js';

const N = 5000;
const SEED = 0xd3a5;

let targets: Target[] = [];
t.before(async () => { targets = await makeTargets(); });

t.test(`DER/certificate/AC decoders: ${N} mutated inputs each`, async (t) => {
  for (const target of targets) {
    const r = prng(SEED);
    const counts: FuzzCounts = { inputs: 0, accepted: 0, malformed: 0 };
    for (let i = 0; i < N; i++) check(target, mutate(r, target.seed), counts); // throws on a violation
    t.equal(counts.inputs, N, `${target.name}: every input decoded or refused as malformed`);
    // both outcomes must occur, or the run proves nothing
    t.ok(counts.malformed > N / 4, `${target.name}: ${counts.malformed} refused as malformed`);
    t.ok(counts.accepted > 0, `${target.name}: ${counts.accepted} still decodable after mutation`);
  }
});
