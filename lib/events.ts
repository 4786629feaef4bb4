import type { LostReason } from './errors';
import type { LockInfo } from './persisters/Persister';

/** Fields every event payload carries. */
export interface EventBase {
  /** The lock name. */
  name: string;
  /** One human-readable sentence about what happened. */
  message: string;
}

/** Payload of `locked`. */
export interface LockedEvent extends EventBase {
  /** The new lease's fencing token; `undefined` when the store does not fence. */
  fencingToken: bigint | number | undefined;
  /** When the store will expire the new lease unless it is renewed (store clock). */
  expiresAt: Date;
}
/** Payload of `conflict`. */
export interface ConflictEvent extends EventBase {
  /** Who holds the lock (never their token). */
  holder: LockInfo;
}
/** Payload of `expired`: the lease that had run out and was taken over. */
export interface ExpiredEvent extends EventBase {
  /** The holder whose lease ran out without a release (it died or stalled). */
  previous: LockInfo;
}
/** Payload of `renewed`. */
export interface RenewedEvent extends EventBase {
  /** The lease's new expiry (store clock). */
  expiresAt: Date;
}
/** Payload of `lost`. */
export interface LostEvent extends EventBase {
  /** Why: renewal found it expired, someone else holds it, or the store was unreachable until the local deadline. */
  reason: LostReason;
  /** Who holds it now, when the store said. */
  holder?: LockInfo;
}

/** Every event a `Singleton` emits, with its listener arguments. */
export interface SingletonEvents {
  /** An attempt to take the lock starts. */
  locking: [EventBase];
  /** The lease is held. */
  locked: [LockedEvent];
  /** Someone else holds it (while waiting: each time the holder changes). */
  conflict: [ConflictEvent];
  /** The lease taken over had run out; emitted before `locked` (or `conflict`/`error` when the takeover then failed). */
  expired: [ExpiredEvent];
  /** A background renewal succeeded. */
  renewed: [RenewedEvent];
  /** `release()` started. */
  releasing: [EventBase];
  /** The store confirmed the release. */
  released: [EventBase];
  /** A held lease is gone; its signal has aborted already. */
  lost: [LostEvent];
  /** A store call failed (a `PersisterError`), or a standby task threw. Unhandled, it is logged, never thrown. */
  error: [Error];
}

/** Names of the events a `Singleton` emits. */
export type SingletonEventName = keyof SingletonEvents;
