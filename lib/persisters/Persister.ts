/**
 * The store contract every persister implements (DESIGN.md §3).
 *
 * A persister names no datastore in its interface: the `Singleton`, the
 * `Coalescer` and the CLI only ever talk to this shape, and one conformance
 * suite (spec/persisters/conformance.ts) holds every implementation to it.
 */

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

/** What {@link Persister.acquire} found. */
export type AcquireResult =
  | { acquired: true; lease: LockInfo; expired?: LockInfo }
  | { acquired: false; holder: LockInfo };

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
  | { renewed: true; expiresAt: Date }
  | { renewed: false; holder: LockInfo | null };

/** Arguments of {@link Persister.release}. */
export interface ReleaseRequest {
  /** The lock name. */
  name: string;
  /** The holder's token: a release with any other token changes nothing. */
  token: string;
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
  /** Call `onRelease` whenever the lease of `name` is released; resolves an unsubscribe function. */
  watch?(name: string, onRelease: () => void): Promise<() => Promise<void>>;
  /** Free what the persister itself opened (never a client passed in by the user). */
  close?(): Promise<void>;
}
