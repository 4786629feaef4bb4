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
  expiresAt: Date;
}
/** Payload of `conflict`. */
export interface ConflictEvent extends EventBase {
  holder: LockInfo;
}
/** Payload of `expired`: the lease that had run out and was taken over. */
export interface ExpiredEvent extends EventBase {
  previous: LockInfo;
}
/** Payload of `renewed`. */
export interface RenewedEvent extends EventBase {
  expiresAt: Date;
}
/** Payload of `lost`. */
export interface LostEvent extends EventBase {
  reason: LostReason;
  holder?: LockInfo;
}

/** Every event a `Singleton` emits, with its listener arguments. */
export interface SingletonEvents {
  locking: [EventBase];
  locked: [LockedEvent];
  conflict: [ConflictEvent];
  expired: [ExpiredEvent];
  renewed: [RenewedEvent];
  releasing: [EventBase];
  released: [EventBase];
  lost: [LostEvent];
  error: [Error];
}

/** Names of the events a `Singleton` emits. */
export type SingletonEventName = keyof SingletonEvents;
