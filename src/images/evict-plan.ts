// Which cache entries to evict: above the high watermark, drop least recently used entries that nobody holds
// until the total is at or below the low watermark. Pure: the cache does the locking and deleting.

export interface EvictCandidate {
  digest: string;
  size: number;
  lastUsedMs: number;
  inUse: boolean;
}

export interface EvictPlan {
  /** digests to evict, in order (least recently used first) */
  evict: string[];
  totalBefore: number;
  /** total after the planned evictions */
  totalAfter: number;
  /** true when in-use entries keep the total above the low watermark */
  blockedByInUse: boolean;
}

/** Plan an eviction run; nothing happens unless the total exceeds `highBytes`. */
export function planEviction(entries: readonly EvictCandidate[], highBytes: number, lowBytes: number): EvictPlan {
  const totalBefore = entries.reduce((n, e) => n + e.size, 0);
  const plan: EvictPlan = { evict: [], totalBefore, totalAfter: totalBefore, blockedByInUse: false };
  if (totalBefore <= highBytes) return plan;
  const order = entries.filter((e) => !e.inUse)
    .sort((a, b) => a.lastUsedMs - b.lastUsedMs || a.digest.localeCompare(b.digest));
  for (const e of order) {
    if (plan.totalAfter <= lowBytes) break;
    plan.evict.push(e.digest);
    plan.totalAfter -= e.size;
  }
  plan.blockedByInUse = plan.totalAfter > lowBytes;
  return plan;
}
