import type { LockInfo } from './persisters/Persister';

/** Machine-readable codes of every error this library throws. */
export type SingletonErrorCode =
  | 'SINGLETON_PERSISTER'
  | 'SINGLETON_LOST'
  | 'SINGLETON_SHUTTING_DOWN'
  | 'SINGLETON_NOT_SERIALIZABLE'
  | 'SINGLETON_REMOTE'
  | 'SINGLETON_RUN_TIMEOUT'
  | 'SINGLETON_DRIVER_MISSING';

/** Base class of the library's errors; `code` tells them apart without `instanceof`. */
export class SingletonError extends Error {
  /** A stable, machine-readable code. */
  readonly code: SingletonErrorCode;

  constructor(code: SingletonErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The store failed (unreachable, timed out, refused). The driver's error is kept as `cause`. */
export class PersisterError extends SingletonError {
  /**
   * A lease that had run out and was taken out of the store before the failure (a
   * seed-style store's stale lock, deleted before the re-lock failed): reported as `expired`.
   */
  expired?: LockInfo;

  /** `code`: `SINGLETON_DRIVER_MISSING` when the store's driver is not installed (retrying cannot help). */
  constructor(message: string, options?: { cause?: unknown; code?: 'SINGLETON_DRIVER_MISSING' }) {
    super(options?.code ?? 'SINGLETON_PERSISTER', message, options);
  }
}

/** The lease ended while work ran under it: the reason a lease's `signal` aborts with. */
export class LockLostError extends SingletonError {
  /** The lock name. */
  readonly lockName: string;
  /** Why the lease ended (see {@link LeaseEndReason}). */
  readonly reason: LeaseEndReason;
  /** Who holds it now, when known. */
  readonly holder: LockInfo | undefined;

  constructor(lockName: string, reason: LeaseEndReason, holder?: LockInfo) {
    const by = holder ? ` (now held by ${holder.owner}, fencing token ${String(holder.fencingToken)})` : '';
    super('SINGLETON_LOST', `Lock "${lockName}" ${ENDINGS[reason]}${by}. ${ADVICE[reason]}`);
    this.lockName = lockName;
    this.reason = reason;
    this.holder = holder;
  }
}

/** Why a held lease was lost (the `lost` event's `reason`). */
export type LostReason = 'expired' | 'taken-over' | 'store-unreachable';

/**
 * Why a lease ended other than by its own `release()`: lost (`expired`, `taken-over`,
 * `store-unreachable`), ended by the instance's `release()` (`released`), or by the process
 * hooks on a signal or fatal error (`shutdown`).
 */
export type LeaseEndReason = LostReason | 'released' | 'shutdown';

const ENDINGS: Readonly<Record<LeaseEndReason, string>> = Object.freeze({
  expired: 'was lost: expired',
  'taken-over': 'was lost: taken-over',
  'store-unreachable': 'was lost: store-unreachable',
  released: "was released by the instance's release() while work ran under it",
  shutdown: 'is being released because the process is shutting down',
});

const ADVICE: Readonly<Record<LeaseEndReason, string>> = Object.freeze({
  expired: 'Work done under it may overlap with the new holder; stop it and lock again.',
  'taken-over': 'Work done under it may overlap with the new holder; stop it and lock again.',
  'store-unreachable': 'Work done under it may overlap with the new holder; stop it and lock again.',
  released: 'Stop the work: another instance may take the lock now.',
  shutdown: 'Stop the work: the lock is handed over as soon as it has stopped.',
});

/** Wraps anything a driver threw into a {@link PersisterError} that says what was being done. */
export function toPersisterError(what: string, cause: unknown): PersisterError {
  let detail = cause instanceof Error ? cause.message : String(cause);
  if (cause instanceof PersisterError && detail.startsWith(what)) return cause;
  // "X failed: …" wrapped as "X, more precisely, failed: …": said once, with the longer subject.
  const inner = cause instanceof PersisterError ? /^(.+?) failed: /.exec(detail) : null;
  if (inner && what.startsWith(inner[1])) detail = detail.slice(inner[0].length);
  const missingDriver = cause instanceof SingletonError && cause.code === 'SINGLETON_DRIVER_MISSING';
  const advice = missingDriver || /reachable|retr(y|ied)/i.test(detail) ? '' : ' Check that the store is reachable; the operation can be retried.';
  // One level of `cause`: the driver's error, never a PersisterError wrapping it.
  const root = cause instanceof PersisterError && cause.cause !== undefined ? cause.cause : cause;
  const error = new PersisterError(`${what} failed: ${detail.replace(/\.?$/, '.')}${advice}`, {
    cause: root,
    ...(missingDriver ? { code: 'SINGLETON_DRIVER_MISSING' as const } : {}),
  });
  if (cause instanceof PersisterError && cause.expired) error.expired = cause.expired;
  return error;
}

/** A DOMException-compatible `AbortError` (what `fetch` and timers/promises reject with). */
export function abortError(reason?: unknown): Error {
  if (reason instanceof Error) return reason;
  return new DOMException('The operation was aborted', 'AbortError');
}

/** A DOMException-compatible `TimeoutError`. */
export function timeoutError(message: string): Error {
  return new DOMException(message, 'TimeoutError');
}
