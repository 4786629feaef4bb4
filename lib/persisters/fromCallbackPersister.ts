import { PersisterError, toPersisterError } from '../errors';
import { checkBoolean, checkInteger, expected } from '../validate';
import type {
  AcquireRequest,
  AcquireResult,
  LockInfo,
  Persister,
  PersisterCapabilities,
  ReleaseRequest,
  RenewRequest,
  RenewResult,
} from './Persister';

/**
 * A persister written for singleton-process v1 (the seed library): three
 * Node-style callback methods on one object, called as methods (`this` is kept).
 */
export interface CallbackPersister {
  /**
   * Creates the lock `name` if it does not exist. Calls back `(null, true)` when
   * it created it, `(null, false, created)` when it already existed (`created`:
   * when that lock was created, a `Date`, epoch ms, a date string or anything with
   * `toDate()`; falsy when it vanished meanwhile), or `(err)`.
   */
  persistLock(name: string, callback: (err: unknown, success?: boolean, conflictCreated?: unknown) => void): void;
  /** Deletes the lock `name` (whoever created it). Calls back `(err?)`. */
  deleteLock(name: string, callback: (err?: unknown) => void): void;
  /** Calls back `(null, exists)` with whether the lock `name` exists, or `(err)`. */
  lockExists(name: string, callback: (err: unknown, exists?: boolean) => void): void;
}

/** Options of {@link fromCallbackPersister}. */
export interface CallbackPersisterOptions {
  /**
   * How long to wait for a callback before failing the call with a
   * `PersisterError`. A callback that arrives later is ignored, except that a
   * lock created after its acquire already failed is deleted again.
   * @default 10000
   */
  timeoutMs?: number;
  /**
   * The seed's `lockExpireSeconds`, in ms: a lock created longer ago than this
   * (by comparing its `created` time with this process's clock) is deleted and
   * taken over, and reported as `expired`. A holder re-creates its lock half-way
   * through this time while it renews, and a lease not renewed within it is lost
   * (the holder is told before others may take over). Clocks of all hosts must
   * agree for this to be safe.
   * @default the lease length (`ttlMs`) of the first `Singleton` built on the adapter
   *   (the longest, when several with different lengths share it)
   */
  staleAfterMs?: number;
  /**
   * Whether the wrapped store outlives the process (almost every store a
   * callback persister talks to does). Only reported in `capabilities`.
   * @default true
   */
  persistent?: boolean;
}

/** Owner shown for a lock held by someone this adapter cannot identify. */
export const UNKNOWN_OWNER = 'unknown (seed-style persister)';

const DEFAULT_TIMEOUT_MS = 10_000;
/** Lease length assumed for a holder this adapter cannot see (the Singleton's default `ttlMs`). */
const DEFAULT_TTL_GUESS_MS = 15_000;
/** A conflict whose lock had vanished when the store read it is retried this many times. */
const MAX_ACQUIRE_ATTEMPTS = 3;

let lastFence = 0;

/**
 * The next local fencing token: strictly increasing within this process, seeded
 * from the clock in microseconds. NOT safe across processes or hosts.
 */
function nextLocalFence(): number {
  lastFence = Math.max(lastFence + 1, Date.now() * 1000);
  return lastFence;
}

interface HeldLease {
  token: string;
  info: Omit<LockInfo, 'expiresAt'>;
  expiresAtMs: number;
  /** When this adapter last (re)created the lock in the store (this process's clock). */
  createdAtMs: number;
}

type Callback = (err: unknown, ...results: unknown[]) => void;

/**
 * Adapts a seed-style callback persister (singleton-process v1:
 * `persistLock`, `deleteLock`, `lockExists`) to the {@link Persister} interface,
 * so existing stores keep working with `Singleton`.
 *
 * What such a store cannot give, and so this adapter does not either
 * (`capabilities` says so: `serverClock`, `notify` and `fencing` are false):
 * - **No owner checks in the store.** The store keeps no token: renew and
 *   release are owner-checked only against leases taken through this adapter
 *   object (in this process). `deleteLock` deletes whoever's lock it is.
 * - **No expiry in the store.** A lock lives until deleted. A crashed holder's
 *   lock is never taken over unless `staleAfterMs` is set (the seed's
 *   `lockExpireSeconds`), and that decision uses this process's clock, not the
 *   store's.
 * - **No holder identity.** Other processes' holders are reported with owner
 *   `'unknown (seed-style persister)'`, hostname `unknown`, pid 0, fencing token 0, the
 *   store's `created` time (or the epoch when unknown) and a guessed expiry.
 * - **No store fencing.** Fencing tokens come from a per-process counter seeded
 *   from `Date.now() * 1000`: increasing within one process, but two processes
 *   can hand out tokens in any order. Do not use them to fence shared writes.
 * - **No notifications** (`watch` is absent; waiters poll) and renew is only
 *   `lockExists`: it says the lock still exists, not that it is still this
 *   holder's.
 * - **No atomic takeover.** Taking a stale lock over is `deleteLock` then
 *   `persistLock`: two contenders that judge the same stale lock at the same
 *   moment can both delete it, and the second delete can remove the first
 *   contender's fresh lock, so both may end up holding it. The seed had the same
 *   race. Where that matters, move to a store with atomic operations
 *   (`MongoPersister` on the same database, `RedisPersister`, `PostgresPersister`).
 * - **Renewal re-creates the lock.** The store keeps only the lock's creation
 *   time and others take it over once it is older than `staleAfterMs`; a
 *   renewing holder deletes and re-creates it half-way through (two calls), so a
 *   live holder never looks stale, and a holder that stops renewing is told
 *   (`lost`, `expired`) at its local deadline, before anyone may take it over.
 *
 * Errors passed to a callback, methods that throw, and callbacks that never come
 * (after `timeoutMs`) reject with a `PersisterError`.
 *
 * @example
 * ```ts
 * import { MongoDb } from 'singleton-process-v1/lib/persisters/mongo-db';
 * const persister = fromCallbackPersister(new MongoDb(url), { staleAfterMs: 60_000 });
 * const singleton = new Singleton('nightly-report', persister);
 * ```
 * @throws TypeError when `legacy` lacks one of the three methods, or an option is bad.
 */
export function fromCallbackPersister(legacy: CallbackPersister, options: CallbackPersisterOptions = {}): Persister {
  return new CallbackPersisterAdapter(legacy, options);
}

/** The {@link Persister} that {@link fromCallbackPersister} returns. */
export class CallbackPersisterAdapter implements Persister {
  /** Only what holds for a seed-style store: no server clock, notifications or store fencing. */
  readonly capabilities: PersisterCapabilities;

  private readonly legacy: CallbackPersister;
  private readonly timeoutMs: number;
  private staleAfterMs: number | undefined;
  private readonly staleFromOptions: boolean;
  /** Leases taken through this adapter, by name: the only owner check there is. */
  private readonly held = new Map<string, HeldLease>();
  /** The last `created` time the store reported for each name held elsewhere. */
  private readonly seenCreated = new Map<string, Date>();

  /**
   * Prefer {@link fromCallbackPersister}.
   * @throws TypeError naming the missing method, or a bad option.
   */
  constructor(legacy: CallbackPersister, options: CallbackPersisterOptions = {}) {
    const shape = 'a seed-style persister with persistLock(name, cb), deleteLock(name, cb) and lockExists(name, cb)';
    if (legacy === null || typeof legacy !== 'object') throw new TypeError(expected('legacy', shape, legacy));
    for (const method of ['persistLock', 'deleteLock', 'lockExists'] as const) {
      if (typeof legacy[method] !== 'function') {
        throw new TypeError(expected(`legacy.${method}`, `a function (${shape})`, legacy[method]));
      }
    }
    if (options === null || typeof options !== 'object') throw new TypeError(expected('options', 'an object', options));
    this.legacy = legacy;
    this.timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : checkInteger('options.timeoutMs', options.timeoutMs, 1);
    this.staleAfterMs = options.staleAfterMs === undefined ? undefined : checkInteger('options.staleAfterMs', options.staleAfterMs, 1);
    this.staleFromOptions = options.staleAfterMs !== undefined;
    const persistent = options.persistent === undefined ? true : checkBoolean('options.persistent', options.persistent);
    this.capabilities = Object.freeze({ serverClock: false, notify: false, fencing: false, persistent });
  }

  /**
   * Called by each `Singleton` built on this adapter: when no `staleAfterMs` was given, the
   * Singleton's lease length (the seed's `lockExpireSeconds`) becomes the staleness, so a
   * crashed holder's lock does not stay forever. With Singletons of different lease lengths,
   * the longest wins (a lock is never taken over before its holder's lease could end).
   * @internal
   */
  adoptLeaseLength(ttlMs: number): void {
    if (this.staleFromOptions) return;
    this.staleAfterMs = Math.max(this.staleAfterMs ?? 0, ttlMs);
  }

  /** `persistLock`; on a conflict, takes a stale lock over when `staleAfterMs` allows it. */
  async acquire({ name, token, ttlMs, owner }: AcquireRequest): Promise<AcquireResult> {
    const mine = this.held.get(name);
    if (mine && mine.token === token && this.withinLifetime(mine)) {
      // The holder again: the store cannot compare owners, so it only confirms the lock still exists.
      if (await this.lockExists(name)) {
        mine.expiresAtMs = this.capExpiry(mine, Date.now() + ttlMs);
        return { acquired: true, lease: view(mine) };
      }
      this.held.delete(name);
    }
    let expired: LockInfo | undefined;
    for (let attempt = 1; attempt <= MAX_ACQUIRE_ATTEMPTS; attempt++) {
      let success: unknown;
      let conflictCreated: unknown;
      try {
        [success, conflictCreated] = await this.persistLock(name);
      } catch (err) {
        // A stale lock was deleted before this failure: it is reported as expired all the same.
        if (expired && err instanceof PersisterError) err.expired = expired;
        throw err;
      }
      const now = Date.now();
      if (success === true) {
        this.seenCreated.delete(name);
        const lease: HeldLease = {
          token,
          info: { name, owner: owner.owner, hostname: owner.hostname, pid: owner.pid, fencingToken: nextLocalFence(), acquiredAt: new Date(now) },
          expiresAtMs: now + ttlMs,
          createdAtMs: now,
        };
        lease.expiresAtMs = this.capExpiry(lease, lease.expiresAtMs);
        this.held.set(name, lease);
        return expired ? { acquired: true, lease: view(lease), expired } : { acquired: true, lease: view(lease) };
      }
      const created = toDate(conflictCreated);
      if (created === undefined) continue; // it existed when tried and was gone when read: try again
      if (created) this.seenCreated.set(name, created);
      const local = this.held.get(name);
      const localLive = local !== undefined && this.withinLifetime(local);
      const staleAfterMs = this.staleAfterMs;
      const stale = created !== null && staleAfterMs !== undefined && now - created.getTime() >= staleAfterMs;
      if (stale && !localLive && !expired) {
        expired = local
          ? view(local)
          : { ...this.unknownHolder(name, created ?? undefined, ttlMs), expiresAt: new Date(created.getTime() + staleAfterMs) };
        this.held.delete(name);
        try {
          await this.deleteLock(name);
        } catch (err) {
          if (err instanceof PersisterError) err.expired = expired;
          throw err;
        }
        continue;
      }
      const holder = localLive ? view(local) : this.unknownHolder(name, created ?? undefined, ttlMs);
      // Another contender re-locked first after the stale lock was deleted: still an expiry.
      return expired ? { acquired: false, holder, expired } : { acquired: false, holder };
    }
    const holder = this.unknownHolder(name, undefined, ttlMs);
    return expired ? { acquired: false, holder, expired } : { acquired: false, holder };
  }

  /** `lockExists` for a lease taken through this adapter: exists → renewed until now + ttlMs. */
  async renew({ name, token, ttlMs }: RenewRequest): Promise<RenewResult> {
    const mine = this.held.get(name);
    if (!mine || mine.token !== token) {
      if (mine && this.withinLifetime(mine)) return { renewed: false, holder: view(mine) };
      return { renewed: false, holder: (await this.lockExists(name)) ? this.unknownHolder(name, this.seenCreated.get(name), ttlMs) : null };
    }
    if (!this.withinLifetime(mine)) {
      // Past staleAfterMs others may have taken it over, and the store cannot tell us: it is lost.
      this.held.delete(name);
      return { renewed: false, holder: null };
    }
    if (this.staleAfterMs !== undefined && Date.now() - mine.createdAtMs >= this.staleAfterMs / 2) {
      return this.recreate(mine, ttlMs);
    }
    if (!(await this.lockExists(name))) {
      if (this.held.get(name) === mine) this.held.delete(name);
      return { renewed: false, holder: null };
    }
    mine.expiresAtMs = this.capExpiry(mine, Date.now() + ttlMs);
    return { renewed: true, expiresAt: new Date(mine.expiresAtMs) };
  }

  /**
   * The store's lock carries only its creation time, and others take it over once it is
   * older than `staleAfterMs`: a holder that keeps renewing re-creates it (delete, then
   * create) half-way through, so a live holder's lock never looks stale. If someone else
   * creates it in between, this lease is over (`taken-over`), and nobody holds it twice.
   */
  private async recreate(mine: HeldLease, ttlMs: number): Promise<RenewResult> {
    const { name } = mine.info;
    const startedAt = Date.now();
    await this.deleteLock(name);
    let success: unknown;
    let conflictCreated: unknown;
    try {
      [success, conflictCreated] = await this.persistLock(name);
    } catch {
      // Our lock is deleted and not re-created: anyone may take it now, so this lease is over.
      if (this.held.get(name) === mine) this.held.delete(name);
      return { renewed: false, holder: null };
    }
    if (success !== true) {
      if (this.held.get(name) === mine) this.held.delete(name);
      const created = toDate(conflictCreated);
      return { renewed: false, holder: created === undefined ? null : this.unknownHolder(name, created ?? undefined, ttlMs) };
    }
    mine.createdAtMs = startedAt;
    mine.expiresAtMs = this.capExpiry(mine, Date.now() + ttlMs);
    return { renewed: true, expiresAt: new Date(mine.expiresAtMs) };
  }

  /** `deleteLock`, only for the token that took the lease through this adapter. */
  async release({ name, token }: ReleaseRequest): Promise<boolean> {
    const mine = this.held.get(name);
    if (!mine || mine.token !== token) return false;
    if (!this.withinLifetime(mine)) {
      this.held.delete(name); // possibly someone else's lock by now: leave it
      return false;
    }
    await this.deleteLock(name);
    if (this.held.get(name) === mine) this.held.delete(name);
    return true;
  }

  /** `lockExists`; the holder's details only when it is held through this adapter. */
  async inspect(name: string): Promise<LockInfo | null> {
    if (!(await this.lockExists(name))) return null;
    const mine = this.held.get(name);
    if (mine && this.withinLifetime(mine)) return view(mine);
    return this.unknownHolder(name, this.seenCreated.get(name), DEFAULT_TTL_GUESS_MS);
  }

  private withinLifetime(lease: HeldLease): boolean {
    return this.staleAfterMs === undefined || Date.now() < lease.createdAtMs + this.staleAfterMs;
  }

  private capExpiry(lease: HeldLease, expiresAtMs: number): number {
    return this.staleAfterMs === undefined ? expiresAtMs : Math.min(expiresAtMs, lease.createdAtMs + this.staleAfterMs);
  }

  /** A holder nobody here can identify; its expiry is when it may be taken over, or a guess one lease ahead. */
  private unknownHolder(name: string, created: Date | undefined, ttlMs: number): LockInfo {
    const now = Date.now();
    const takeOverAt = created && this.staleAfterMs !== undefined ? created.getTime() + this.staleAfterMs : undefined;
    return {
      name,
      owner: UNKNOWN_OWNER,
      hostname: 'unknown',
      pid: 0,
      fencingToken: 0,
      acquiredAt: created ?? new Date(0),
      expiresAt: new Date(takeOverAt !== undefined && takeOverAt > now ? takeOverAt : now + ttlMs),
    };
  }

  private async persistLock(name: string): Promise<[unknown, unknown]> {
    const [success, created] = await this.call(`persistLock("${name}")`, (cb) => this.legacy.persistLock(name, cb), (err, ok) => {
      // It answered after we gave up: a lock created now belongs to nobody, so remove it again.
      if (!err && ok === true) this.legacy.deleteLock(name, () => undefined);
    });
    return [success, created];
  }

  private async deleteLock(name: string): Promise<void> {
    await this.call(`deleteLock("${name}")`, (cb) => this.legacy.deleteLock(name, cb));
  }

  private async lockExists(name: string): Promise<boolean> {
    const [exists] = await this.call(`lockExists("${name}")`, (cb) => this.legacy.lockExists(name, cb));
    return exists === true;
  }

  /** Runs one callback-style call as a promise: error, throw or silence become a `PersisterError`. */
  private call(what: string, invoke: (cb: Callback) => void, onLate?: Callback): Promise<unknown[]> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(
          new PersisterError(
            `Seed-style persister ${what} did not call back within ${this.timeoutMs} ms. Check the store, or raise the timeoutMs option of fromCallbackPersister.`,
          ),
        );
      }, this.timeoutMs);
      timer.unref?.();
      const callback: Callback = (err, ...results) => {
        if (settled) {
          try {
            onLate?.(err, ...results);
          } catch {
            // best effort only
          }
          return;
        }
        settled = true;
        clearTimeout(timer);
        if (err) reject(toPersisterError(`Seed-style persister ${what}`, err));
        else resolve(results);
      };
      try {
        invoke(callback);
      } catch (error) {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(toPersisterError(`Seed-style persister ${what}`, error));
      }
    });
  }
}

function view(lease: HeldLease): LockInfo {
  return { ...lease.info, acquiredAt: new Date(lease.info.acquiredAt), expiresAt: new Date(lease.expiresAtMs) };
}

/**
 * The seed passed `created` as a Date (or a moment); accept the usual
 * representations. `undefined`: the lock vanished; `null`: it exists but its age
 * cannot be read (so it is never treated as stale).
 */
function toDate(value: unknown): Date | null | undefined {
  if (value === null || value === undefined || value === false || value === '') return undefined;
  let date: Date;
  if (value instanceof Date) date = new Date(value.getTime());
  else if (typeof value === 'number' || typeof value === 'string') date = new Date(value);
  else if (typeof (value as { toDate?: unknown }).toDate === 'function') date = (value as { toDate(): Date }).toDate();
  else return null;
  return date instanceof Date && !Number.isNaN(date.getTime()) ? date : null;
}
