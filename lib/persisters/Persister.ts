/**
 * The store contract every persister implements (DESIGN.md §3).
 *
 * A persister names no datastore in its interface: the `Singleton`, the
 * `Coalescer` and the CLI only ever talk to this shape, and one conformance
 * suite (spec/persisters/conformance.ts) holds every implementation to it.
 */
import type { ThreadDescriptor } from '../keepAlive/descriptor';

export type { ThreadDescriptor } from '../keepAlive/descriptor';

/** Who is asking for a lease: shown to other instances, never secret. */
export interface OwnerInfo {
  /** Human-readable identity, by default `${hostname}:${pid}`. */
  owner: string;
  /** Host the instance runs on. */
  hostname: string;
  /** Process id on that host. */
  pid: number;
}

/** A lease as others see it. It never contains the holder's secret token. */
export interface LockInfo {
  /** The lock name. */
  name: string;
  /** The holder's human-readable identity. */
  owner: string;
  /** The holder's host. */
  hostname: string;
  /** The holder's process id on its host. */
  pid: number;
  /** Strictly increasing per lease of this name; pass it to fenced writes. */
  fencingToken: bigint | number;
  /** When this lease was first acquired (store clock). */
  acquiredAt: Date;
  /** When the store will consider the lease expired unless renewed (store clock). */
  expiresAt: Date;
}

/** Arguments of {@link Persister.acquire}. */
export interface AcquireRequest {
  /** The lock name. */
  name: string;
  /** A random 128-bit value (hex) that only the holder knows. */
  token: string;
  /** Lease length in milliseconds, decided on the store's clock. */
  ttlMs: number;
  /** Who is asking. */
  owner: OwnerInfo;
}

/**
 * What {@link Persister.acquire} found. `expired` names a lease that had run out and was
 * taken out of the store by this call (reported as the `expired` event), also when another
 * contender then won the race for the lock.
 */
export type AcquireResult =
  | {
      /** Taken (or already held with this token). */
      acquired: true;
      /** The lease now held. */
      lease: LockInfo;
      /** The previous lease, when it had run out without being released (its holder died or stalled). */
      expired?: LockInfo;
      /**
       * The lease was handed to this waiter by a release (a store that keeps waiters in line)
       * and the answer comes from that message, not from this call: the lease may have started
       * before the call was made (the message waited while the process was busy or stopped).
       * The caller counts it from `leaseAgeMs` ago (without it, from a renewal interval ago),
       * as lasting `lease.expiresAt − lease.acquiredAt` (a store may hand it over for less than
       * the ttl asked for), and renews it at once when that is less than its ttl.
       */
      handedOver?: boolean;
      /**
       * With `handedOver`: how long before this answer, at most, the lease started, as the
       * store's clock counts (the time between the waiter's last exchange with the store and the
       * release that handed it over) plus the time since that exchange on this process's
       * monotonic clock. A lease older than its ttl (less the safety margin) has run out.
       */
      leaseAgeMs?: number;
    }
  | {
      /** Held by someone else. */
      acquired: false;
      /** Who holds it. */
      holder: LockInfo;
      /** A lease that had run out and was taken out of the store by this call, before another contender won. */
      expired?: LockInfo;
    };

/** Arguments of {@link Persister.renew}. */
export interface RenewRequest {
  /** The lock name. */
  name: string;
  /** The holder's token. */
  token: string;
  /** New lease length from now, on the store's clock. */
  ttlMs: number;
}

/** What {@link Persister.renew} found: renewed, or who holds it now (null: nobody). */
export type RenewResult =
  | {
      /** Extended. */
      renewed: true;
      /** The new expiry (store clock). */
      expiresAt: Date;
    }
  | {
      /** Not this token's lease any more. */
      renewed: false;
      /**
       * Who holds it now; after a forced release nobody took over yet, the eviction
       * (owner `release --force`); `null` when it ran out and is free.
       */
      holder: LockInfo | null;
    };

/** Arguments of {@link Persister.release}. */
export interface ReleaseRequest {
  /** The lock name. */
  name: string;
  /** The holder's token: a release with any other token changes nothing. */
  token: string;
}

/** A waiter's place in line for {@link Persister.watch}. */
export interface WatchTurn {
  /** The token every acquire of this wait uses (a random 128-bit value, hex). */
  token: string;
}

/** How a watch ends (the argument of the function {@link Persister.watch} resolves). */
export interface WatchEnd {
  /** A lease under the turn's token is held by the caller now: leave it. */
  keep?: boolean;
}

/** What a store can promise, so docs and the `Singleton` can tell users what to expect. */
export interface PersisterCapabilities {
  /** Expiry and timestamps come from the store's clock, not the client's. */
  serverClock: boolean;
  /** `watch()` delivers release notifications (otherwise waiters poll). */
  notify: boolean;
  /** Fencing tokens strictly increase per name, across releases, expiries and restarts. */
  fencing: boolean;
  /** Leases survive the process that wrote them. */
  persistent: boolean;
  /** `list()` and `forceRelease()` are offered (the CLI's `list` and `release --force`). */
  list?: boolean;
  /**
   * `watch()` with a turn keeps waiters in line: a release hands the lease straight to the
   * first waiter (arrival order, no herd of retries). Otherwise every waiter is woken and tries.
   */
  queue?: boolean;
}

/** Options of {@link Persister.list}. */
export interface ListOptions {
  /** Only names starting with this string. */
  prefix?: string;
}

/**
 * A store of leases. `acquire`, `renew` and `release` are each one atomic
 * operation in the store; store failures reject with a `PersisterError`.
 */
export interface Persister {
  /** What this store offers. */
  readonly capabilities: PersisterCapabilities;
  /** Take the lease if it is free or expired; otherwise report the holder. */
  acquire(request: AcquireRequest): Promise<AcquireResult>;
  /** Extend the lease, only with the holder's token. */
  renew(request: RenewRequest): Promise<RenewResult>;
  /**
   * Optional batch form of {@link renew}: one round trip for many leases.
   * Each slot holds that lease's result, or the error for that lease alone.
   */
  renewMany?(requests: readonly RenewRequest[]): Promise<Array<RenewResult | Error>>;
  /** Delete the lease, only with the holder's token. Resolves whether it was deleted. */
  release(request: ReleaseRequest): Promise<boolean>;
  /** The current holder, or null when free. */
  inspect(name: string): Promise<LockInfo | null>;
  /**
   * Call `onRelease` whenever the lease of `name` is released; resolves an unsubscribe function.
   * With a `turn`, the caller also waits in line under that token: a store that keeps a
   * queue (Redis) hands a released lease straight to the first waiter in it and calls its
   * `onRelease`; its next {@link acquire} with that token then answers with that lease. The
   * caller acquires with the token once the watch resolved (that attempt puts it in line and
   * makes sure the release it waits for is published). Others ignore `turn`. The unsubscribe function ends the turn too: pass `{ keep: true }` when a
   * lease under the turn's token is held, anything else gives a lease handed over but not
   * taken back to the store (the next waiter's).
   */
  watch?(name: string, onRelease: () => void, turn?: WatchTurn): Promise<(end?: WatchEnd) => Promise<void>>;
  /**
   * Optional: every lease held now (unexpired on the store's clock), sorted by name.
   * Offered when `capabilities.list` is true.
   */
  list?(options?: ListOptions): Promise<LockInfo[]>;
  /**
   * Optional, the operator's last resort: end the lease of `name` whoever holds it, keeping
   * the fence so the next holder's token is higher. Resolves the evicted holder, or `null`
   * when nothing was held. The evicted holder learns at its next renewal (`taken-over`).
   */
  forceRelease?(name: string): Promise<LockInfo | null>;
  /**
   * Optional: calls `listener` each time the store connection comes back after a drop, so
   * held leases can be checked at once (a restarted store may have forgotten them).
   * Returns the function that stops listening.
   */
  onReconnect?(listener: () => void): () => void;
  /**
   * Optional: how another thread reaches the same store on a connection of its own
   * (plain, structured-clonable data). `keepAlive: 'thread'` needs it: the keep-alive
   * thread opens its own persister from this description and renews every lease there.
   * A persister without it (memory, a custom one) is refused in that mode. Built in:
   * Redis (client options, Sentinel and Cluster), MongoDB (connection string), the file
   * store (directory), URL-made persisters (their URL). A custom persister returns
   * `{ kind: 'module', module, factory, argument }`: the thread `require`s `module` and
   * calls `factory(argument)` for its persister.
   * (PostgreSQL: describe by connection string, as `{ kind: 'url', url, options }` once
   * `persisterFromUrl` accepts postgres:// URLs, else `kind: 'module'`.)
   */
  threadDescriptor?(): ThreadDescriptor;
  /** Free what the persister itself opened (never a client passed in by the user). */
  close?(): Promise<void>;
}
