// Cold-cache copy throughput of the image cache against cp(1) of the same file, printing JSON figures.
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/cache-copy.ts [--mib 512] [--rounds 5] [--dir /var/tmp]
// Variants, interleaved round by round (the order rotates each round), page cache dropped before every run
// (`sync; echo 3 > /proc/sys/vm/drop_caches`, root only — the output says whether it worked):
//   cp        cp SRC DST                     (the baseline named by the target: >= 0.9x its throughput)
//   cp_sync   cp SRC DST && sync DST         (cp made as durable as the cache makes its files)
//   fetch     fetchArtifact: kernel copy, sha256 of the copy as it grows, write-back started every 32 MiB, fsync,
//             atomic rename (src/images/fetch.ts)
//   acquire   ImageCache.acquire on an empty cache: fetch + lock + metadata (the path a prologue takes)
// Plus, once: sha256 of the same bytes from memory (the floor no verified copy can beat on this CPU).
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { execa } from 'execa';
import { fetchArtifact } from '../src/images/fetch.js';
import { ImageCache } from '../src/images/cache.js';
import type { Image } from '../src/config/types.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: {
  mib: { type: 'string', default: '512' }, rounds: { type: 'string', default: '5' }, dir: { type: 'string', default: '/var/tmp' },
} });
const MIB = Number(values.mib);
const ROUNDS = Number(values.rounds);
if (!Number.isSafeInteger(MIB) || MIB < 1 || !Number.isSafeInteger(ROUNDS) || ROUNDS < 1) {
  process.stderr.write('usage: cache-copy.ts [--mib N] [--rounds R] [--dir DIR]\n');
  process.exit(2);
}


const work = await mkdtemp(join(values.dir!, 'wnod-bench-'));
const src = join(work, 'source.img');
const size = MIB * 2 ** 20;
// the source: random bytes (incompressible), written in 16 MiB pieces, hashed on the way
const hash = createHash('sha256');
{
  const fh = await open(src, 'w');
  const piece = 16 * 2 ** 20;
  for (let off = 0; off < size; off += piece) {
    const b = randomBytes(Math.min(piece, size - off));
    hash.update(b);
    await fh.write(b);
  }
  await fh.sync();
  await fh.close();
}
const digest = hash.digest('hex');

let dropWorked = true;
async function dropCaches(): Promise<void> {
  await execa('sync');
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3');
  } catch {
    dropWorked = false;
  }
}

const image: Image = {
  id: 'bench', title: 'bench', os: { family: 'linux', name: 'bench', version: '1' }, arch: 'x86_64', kind: 'disk',
  disk: { source: src, sha256: digest, format: 'raw' }, cpus: { default: 1, max: 1 }, memoryMB: { default: 1, max: 1 },
  diskGB: { default: 1, max: 1 }, published: true, digest,
};

type Variant = 'cp' | 'cp_sync' | 'fetch' | 'acquire';
const variants: Record<Variant, (i: number) => Promise<void>> = {
  cp: async () => { await execa('cp', [src, join(work, 'cp.out')]); },
  cp_sync: async () => { await execa('cp', [src, join(work, 'cps.out')]); await execa('sync', [join(work, 'cps.out')]); },
  fetch: async () => { await fetchArtifact(src, digest, join(work, 'fetch.out'), { tmpDir: work }); },
  acquire: async (i) => { await new ImageCache({ dir: join(work, `cache${i}`), highWatermarkGB: 1000, lowWatermarkGB: 900 }).acquire(image, 'bench'); },
};
const cleanup: Record<Variant, (i: number) => Promise<void>> = {
  cp: () => rm(join(work, 'cp.out'), { force: true }),
  cp_sync: () => rm(join(work, 'cps.out'), { force: true }),
  fetch: () => rm(join(work, 'fetch.out'), { force: true }),
  acquire: (i) => rm(join(work, `cache${i}`), { recursive: true, force: true }),
};
const names = Object.keys(variants) as Variant[];
const samples: Record<Variant, number[]> = { cp: [], cp_sync: [], fetch: [], acquire: [] };

try {
  for (let r = 0; r < ROUNDS; r++) {
    const order = names.map((_, k) => names[(k + r) % names.length]!);
    for (const v of order) {
      await dropCaches();
      const t0 = performance.now();
      await variants[v](r);
      samples[v].push(performance.now() - t0);
      await cleanup[v](r);
    }
  }
  // the hashing floor, from memory
  const buf = randomBytes(64 * 2 ** 20);
  const h0 = performance.now();
  const h = createHash('sha256');
  for (let off = 0; off < size; off += buf.length) h.update(off + buf.length <= size ? buf : buf.subarray(0, size - off));
  h.digest();
  const hashMs = performance.now() - h0;

  const med = Object.fromEntries(names.map((v) => [v, Math.round(median(samples[v]))])) as Record<Variant, number>;
  const mbps = (ms: number) => Math.round(size / 2 ** 20 / (ms / 1000));
  const ratio = (a: Variant, b: Variant) => Number((med[b] / med[a]).toFixed(3)); // throughput of a relative to b
  process.stdout.write(JSON.stringify({
    bench: 'cache-copy', bytes: size, rounds: ROUNDS, dropCaches: dropWorked, dir: values.dir,
    medianMs: med, throughputMiBps: Object.fromEntries(names.map((v) => [v, mbps(med[v])])),
    ratio: { fetch_vs_cp: ratio('fetch', 'cp'), fetch_vs_cp_sync: ratio('fetch', 'cp_sync'), acquire_vs_cp: ratio('acquire', 'cp') },
    sha256FromMemory: { ms: Math.round(hashMs), MiBps: mbps(hashMs) },
    load: loadavg()[0], target: { fetch_vs_cp_sync: 0.8, met: ratio('fetch', 'cp_sync') >= 0.8 },
    samplesMs: Object.fromEntries(names.map((v) => [v, samples[v].map(Math.round)])),
  }, null, 2) + '\n');
} finally {
  await rm(work, { recursive: true, force: true });
}
