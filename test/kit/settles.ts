// A hang guard, not a timing assertion: the wait under test must end at all (a generous bound, far above any run).

/** `p`, or a rejection naming the hang once `ms` have passed without it settling. */
export function settles<T>(p: Promise<T>, ms = 60_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms (a hang)`)), ms); })])
    .finally(() => clearTimeout(timer));
}
