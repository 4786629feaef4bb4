import { randomFillSync } from 'node:crypto';

/** Milliseconds on a monotonic clock: immune to wall-clock jumps, used for every local deadline. */
export function monotonicNow(): number {
  return performance.now();
}

const TOKEN_BYTES = 16;
const tokenPool = Buffer.alloc(TOKEN_BYTES * 256);
let tokenOffset = tokenPool.length;

/**
 * A fresh 128-bit random lease token, hex-encoded. It never leaves the holder and
 * is never logged. Drawn from a 4 KiB pool filled by the CSPRNG (one system call
 * per 256 tokens, as `crypto.randomUUID` does); each byte is used once.
 */
export function newToken(): string {
  if (tokenOffset + TOKEN_BYTES > tokenPool.length) {
    randomFillSync(tokenPool);
    tokenOffset = 0;
  }
  const token = tokenPool.toString('hex', tokenOffset, tokenOffset + TOKEN_BYTES);
  tokenOffset += TOKEN_BYTES;
  return token;
}

/**
 * Exponential backoff: `baseMs × 2^attempt` (attempt 0 is the first retry), capped at `capMs`.
 * The one rule behind every retry delay of the library (waits, renewals, failing tasks).
 */
export function backoffMs(attempt: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
}

/** `base` ms with up to `spread` (0..1) of random jitter added, so many waiters do not wake in lock-step. */
export function withJitter(base: number, spread = 0.1): number {
  return base + Math.random() * base * spread;
}

/**
 * How much earlier than the store's expiry a holder must consider its lease gone:
 * clock-rate drift (2 % of the ttl, twice what Redlock assumes), the last observed
 * round trip, and 10 ms for a late timer on a busy event loop, capped at a third
 * of the ttl. Fencing tokens cover what no margin can (a process paused longer).
 */
export function safetyMarginMs(ttlMs: number, lastRoundTripMs: number): number {
  return Math.min(Math.ceil(ttlMs * 0.02) + 10 + Math.ceil(lastRoundTripMs), Math.floor(ttlMs / 3));
}

/** The monotonic time by which a holder must consider a lease of `ttlMs`, sent at `sentAt`, gone. */
export function leaseDeadline(sentAt: number, ttlMs: number, roundTripMs: number): number {
  return sentAt + ttlMs - safetyMarginMs(ttlMs, roundTripMs);
}

/** The inverse of {@link leaseDeadline}: the send time that gives a lease of `ttlMs` the deadline `deadline`. */
export function sentAtForDeadline(deadline: number, ttlMs: number, roundTripMs: number): number {
  return deadline - ttlMs + safetyMarginMs(ttlMs, roundTripMs);
}
