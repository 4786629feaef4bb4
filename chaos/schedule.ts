/**
 * The seeded part of a chaos run: which nemesis strikes when, for how long.
 * The same `--seed` gives the same schedule; which worker holds the lock at
 * each strike depends on timing, so targets can differ between runs.
 */

/** mulberry32: a small, fast, seedable PRNG with a 2^32 period; plenty for a schedule. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The faults the suite injects, one phase each, after a phase without any. */
export const NEMESES = ['none', 'pause', 'kill', 'partition', 'restart'] as const;
/** One of {@link NEMESES}. */
export type Nemesis = (typeof NEMESES)[number];

/** What each nemesis does, for the help text and the README. */
export const NEMESIS_DESCRIPTIONS: Readonly<Record<Nemesis, string>> = Object.freeze({
  none: 'no fault: the baseline',
  pause: 'SIGSTOP the current holder for 1.5–3 leases, then SIGCONT',
  kill: 'SIGKILL the current holder, respawn its slot',
  partition: 'black-hole the holder’s lock-store connections (TCP proxy) for 1.5–3 leases, then cut them',
  restart: 'kill -9 the lock store and restart it empty (no persistence) on the same port',
});

/** One strike of a phase. */
export interface Strike {
  /** Wait before it, ms. */
  gapMs: number;
  /** How long the fault lasts (pause, partition, store down), ms. */
  durationMs: number;
  /** Settling time after it, ms. */
  recoveryMs: number;
  /** Where in the target's critical section it lands, as a fraction of the section's work (0: at once). */
  aim: number;
}

/** The strikes of a phase of `phaseMs` for a lease of `ttlMs`: drawn until the phase is full. */
export function strikesFor(nemesis: Nemesis, phaseMs: number, ttlMs: number, random: () => number): Strike[] {
  if (nemesis === 'none') return [];
  const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
  const strikes: Strike[] = [];
  for (let used = 0; ; ) {
    const strike: Strike = {
      gapMs: between(0.5 * ttlMs, 1.5 * ttlMs),
      durationMs:
        nemesis === 'pause' || nemesis === 'partition'
          ? between(1.5 * ttlMs, 3 * ttlMs)
          : nemesis === 'restart'
            ? between(0, 0.3 * ttlMs) // store down this long before it restarts (plus its start-up)
            : between(0, 0.5 * ttlMs), // kill: respawn after this long
      recoveryMs: between(0.5 * ttlMs, ttlMs),
      aim: random(),
    };
    used += strike.gapMs + strike.durationMs + strike.recoveryMs;
    if (used > phaseMs) return strikes;
    strikes.push(strike);
  }
}
