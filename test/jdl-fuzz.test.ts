// CI-sized fuzz run (5 000 inputs per parser); bench/fuzz-jdl.ts runs the same checks at ≥ 100 000.
import t from 'tap';
import { checkClassAd, checkScript, classAdInput, prng, scriptInput, type FuzzCounts } from './jdl-fuzz-inputs.js';

const N = 5000;
const SEED = 0x5eed1d;

t.test(`parseClassAd: ${N} generated and mutated inputs`, async (t) => {
  const r = prng(SEED);
  const counts: FuzzCounts = { inputs: 0, accepted: 0, documentedErrors: 0 };
  for (let i = 0; i < N; i++) {
    const { src, valid } = classAdInput(r);
    checkClassAd(src, valid, counts); // throws on a property violation, naming the input
  }
  t.equal(counts.inputs, N);
  // Both paths must really be exercised, or the run proves nothing.
  t.ok(counts.accepted > N / 5, `accepted ${counts.accepted}`);
  t.ok(counts.documentedErrors > N / 5, `syntax errors ${counts.documentedErrors}`);
});

t.test(`parseBlahScript + requestFromScript: ${N} generated and mutated inputs`, async (t) => {
  const r = prng(SEED + 1);
  const counts: FuzzCounts = { inputs: 0, accepted: 0, documentedErrors: 0 };
  for (let i = 0; i < N; i++) checkScript(scriptInput(r), counts);
  t.equal(counts.inputs, N);
  t.equal(counts.accepted, N, 'inputs within the size bound never throw');
});

t.test('the property checks do catch a violation', async (t) => {
  const counts: FuzzCounts = { inputs: 0, accepted: 0, documentedErrors: 0 };
  t.throws(() => checkClassAd('other.X ==', true, counts), /valid input refused/);
});
