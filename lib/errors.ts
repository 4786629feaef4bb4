import type { LockInfo } from './persisters/Persister';

/** Machine-readable codes of every error this library throws. */
export type SingletonErrorCode =
  | 'SINGLETON_PERSISTER'
  | 'SINGLETON_LOST'
  | 'SINGLETON_SHUTTING_DOWN'
  | 'SINGLETON_NOT_SERIALIZABLE'
  | 'SINGLETON_REMOTE'
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
  constructor(message: string, options?: { cause?: unknown }) {
    super('SINGLETON_PERSISTER', message, options);
  }
}

/** The lease was lost while work ran under it. */
export class LockLostError extends SingletonError {
  /** The lock name. */
  readonly lockName: string;
  /** Why the lease was lost. */
  readonly reason: LostReason;
  /** Who holds it now, when known. */
  readonly holder: LockInfo | undefined;

  constructor(lockName: string, reason: LostReason, holder?: LockInfo) {
    const by = holder ? ` (now held by ${holder.owner}, fencing token ${String(holder.fencingToken)})` : '';
    super(
      'SINGLETON_LOST',
      `Lock "${lockName}" was lost: ${reason}${by}. Work done under it may overlap with the new holder; stop it and lock again.`,
    );
    this.lockName = lockName;
    this.reason = reason;
    this.holder = holder;
  }
}

/** Why a held lease was lost. */
export type LostReason = 'expired' | 'taken-over' | 'store-unreachable';

/** Wraps anything a driver threw into a {@link PersisterError} that says what was being done. */
export function toPersisterError(what: string, cause: unknown): PersisterError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  if (cause instanceof PersisterError && detail.startsWith(what)) return cause;
  const advice = /reachable|retr(y|ied)/i.test(detail) ? '' : ' Check that the store is reachable; the operation can be retried.';
  return new PersisterError(`${what} failed: ${detail.replace(/\.?$/, '.')}${advice}`, { cause });
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
