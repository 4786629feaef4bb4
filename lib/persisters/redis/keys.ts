/**
 * Where a lock lives in Redis (the README's "Redis data model"): every key of a
 * lock `name` carries `{name}` as its Cluster hash tag, so they share one slot.
 *
 * - lease `<prefix>{<name>}`;
 * - fence record `<prefix>{<name>}:fence`;
 * - release channel `<prefix>{<name>}:released` (pub/sub; a channel, not a key);
 * - waiting queue `<prefix>{<name>}:queue` (a sorted set of waiters, by arrival);
 * - a waiter's turn channel `<prefix>{<name>}:turn:<token>` (pub/sub: the lease handed to it).
 */

/** What the release channel adds to the lease key. */
export const RELEASED_SUFFIX = ':released';

/** The keys of one lock. */
export interface LockKeys {
  /** The lock name. */
  readonly name: string;
  /** The persister's key prefix (for messages). */
  readonly prefix: string;
  /** Lease key: `<prefix>{<name>}`. */
  readonly lease: string;
  /** Fence record key: `<prefix>{<name>}:fence`. */
  readonly record: string;
  /** Waiting queue key: `<prefix>{<name>}:queue`. */
  readonly queue: string;
}

/** What a waiter's turn channel adds to the lease key, before the waiter's token. */
export const TURN_INFIX = ':turn:';

/**
 * Lease key of `name`: `<prefix>{<name>}`. A name starting with `}` would leave the
 * Cluster hash tag empty (Redis would then hash whole keys, and a lock's keys could
 * land in different slots): such a tag gets a first character that no valid lock
 * name has (control characters are refused by `Singleton`).
 */
export function leaseKey(prefix: string, name: string): string {
  return name.startsWith('}') ? `${prefix}{\u0001${name}}` : `${prefix}{${name}}`;
}

/** Fence record key of the lease at `lease`. */
export function recordKey(lease: string): string {
  return `${lease}:fence`;
}

/** Eviction note of the lease at `lease` (written by `forceRelease()`): `<lease>:evicted`. */
export function evictionKey(lease: string): string {
  return `${lease}:evicted`;
}

/** Waiting queue key of the lease at `lease`. */
export function queueKey(lease: string): string {
  return `${lease}:queue`;
}

/** Turn channel of the waiter `token` on the lease at `lease`: the release that hands it the lease publishes there. */
export function turnChannel(lease: string, token: string): string {
  return `${lease}${TURN_INFIX}${token}`;
}

/** Release channel of `name`: `<prefix>{<name>}:released`. */
export function releaseChannel(prefix: string, name: string): string {
  return `${leaseKey(prefix, name)}${RELEASED_SUFFIX}`;
}

/** The keys of `name` under `prefix`. */
export function lockKeys(prefix: string, name: string): LockKeys {
  const lease = leaseKey(prefix, name);
  return { name, prefix, lease, record: recordKey(lease), queue: queueKey(lease) };
}

/** The keys of the lock whose release channel is `channel` (the name is not needed to reach them). */
export function keysOfChannel(prefix: string, channel: string): LockKeys {
  const lease = channel.slice(0, -RELEASED_SUFFIX.length);
  const tag = lease.slice(prefix.length + 1, -1); // inside the braces
  return { name: tag.startsWith('\u0001}') ? tag.slice(1) : tag, prefix, lease, record: recordKey(lease), queue: queueKey(lease) };
}
