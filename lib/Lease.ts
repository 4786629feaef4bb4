import { type LeaseEndReason, LockLostError, type LostReason } from './errors';
import type { KeptLease } from './LeaseKeeper';
import type { LockInfo } from './persisters/Persister';

/** The control behind a lease made by this library (set in `Lease`'s static block). */
let controlOf: (lease: Lease) => LeaseControl | undefined;

/**
 * A held lock: the one object through which every way of holding it (`lock()`, `run()`,
 * `standby()`, the `Coalescer`, the CLI) goes (DESIGN.md §2, "The lease").
 *
 * Its `signal` aborts, with a {@link LockLostError} whose `reason` says why, whenever the
 * lease ends other than by its own {@link Lease.release}: lost (`expired`, `taken-over`,
 * `store-unreachable`), ended by the instance's `release()` (`released`), or by the process
 * hooks on a signal or fatal error (`shutdown`). A lost lease's signal aborts before the
 * store can hand the lock to anyone else.
 *
 * @example
 * ```ts
 * const lease = await singleton.acquire();
 * if (lease) {
 *   try {
 *     await copyRows({ signal: lease.signal, fencingToken: lease.fencingToken });
 *   } finally {
 *     await lease.release();
 *   }
 * }
 * ```
 */
export class Lease implements AsyncDisposable {
  /** The lock name. */
  readonly name: string;
  /**
   * Strictly increasing per lease of this name: pass it to fenced writes. `undefined` when
   * the store does not fence (its `capabilities.fencing` is false).
   */
  readonly fencingToken: bigint | number | undefined;
  /** When the lease was acquired (store clock). */
  readonly acquiredAt: Date;

  readonly #control: LeaseControl;

  static {
    // The library's way back from a Lease to its control, without a WeakMap entry per lease.
    controlOf = (lease) => (#control in lease ? lease.#control : undefined);
  }

  /** @internal Leases are made by `Singleton.acquire()`. */
  constructor(control: LeaseControl) {
    this.#control = control;
    this.name = control.name;
    this.fencingToken = control.fencingToken;
    this.acquiredAt = control.acquiredAt;
  }

  /** Aborts when the lease ends other than by its own `release()`; its reason is a {@link LockLostError}. */
  get signal(): AbortSignal {
    return this.#control.signal;
  }

  /** When the store will consider the lease expired unless renewed; moves forward with each renewal. */
  get expiresAt(): Date {
    return this.#control.expiresAt;
  }

  /** Whether the lease has ended (released, lost or shut down). */
  get ended(): boolean {
    return this.#control.ended;
  }

  /**
   * Gives the lease up (owner-checked: it never deletes another holder's lease). Idempotent;
   * a no-op once the lease has ended. The signal does not abort: you ended it yourself.
   * A release the store did not confirm rejects, and the lease stays held (and renewed) so
   * that it can be retried.
   */
  release(): Promise<void> {
    return this.#control.release();
  }

  /** Releases, so `await using lease = await singleton.acquire()` frees it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

/** The `Singleton` a lease belongs to, as its control calls back into it. @internal */
export interface LeaseHost {
  /** Ends `control`'s lease in the store (the owning Singleton's code path). */
  endLease(control: LeaseControl): Promise<void>;
  /** The keeper renewed `control`'s lease until `expiresAt`. */
  leaseRenewed(control: LeaseControl, expiresAt: Date): void;
  /** The keeper found `control`'s lease lost. */
  leaseLost(control: LeaseControl, reason: LostReason, holder?: LockInfo): void;
  /** A renewal failed and is retried. */
  reportError(error: Error): void;
}

/** What a `Singleton` knows of a lease it has just acquired. @internal */
export interface LeaseInit {
  name: string;
  token: string;
  fencingToken: bigint | number | undefined;
  acquiredAt: Date;
  expiresAt: Date;
  ttlMs: number;
  renewIntervalMs: number;
  /** Monotonic time the acquire was sent. */
  sentAt: number;
  /** Round trip of the acquire, ms. */
  roundTripMs: number;
}

/**
 * The library's side of a {@link Lease}: token, abort controller, the work running under
 * it, and the keeper's view of it (it is the {@link KeptLease} the keeper renews, so a lease
 * costs one object, not one per concern). Never handed to users. @internal
 */
export class LeaseControl implements KeptLease {
  readonly name: string;
  readonly token: string;
  readonly fencingToken: bigint | number | undefined;
  readonly acquiredAt: Date;
  /**
   * The store's expiry, ms since the epoch; moves with each renewal. A number, not a Date:
   * a Date stored at each renewal would outlive a few collections of the young generation
   * and be promoted, and thousands of held leases would then keep the old generation
   * growing (and its collector busy) for nothing.
   */
  expiresAtMs: number;
  readonly ttlMs: number;
  readonly renewIntervalMs: number;
  sentAt: number;
  roundTripMs: number;
  /** The keeper's bookkeeping (see {@link KeptLease.keeperEntry}). */
  keeperEntry: unknown = undefined;
  /** A store release in flight. */
  releasing: Promise<void> | undefined;
  /** A loss that arrived while a release was in flight (applied if the release fails). */
  pendingLoss: { reason: LostReason; holder?: LockInfo } | undefined;
  /** Made when someone first asks for the signal (most `lock()` users never do). */
  private controller: AbortController | undefined;
  /** Made when someone first asks for the lease (`acquire()`, `run()`; not `lock()`). */
  private leaseObject: Lease | undefined;
  /** Why the lease ended other than by its own release, once it has. */
  private ending: { reason: LeaseEndReason; holder?: LockInfo; error?: LockLostError } | undefined;
  private endedFlag = false;
  private ended$: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Work running under the lease (made for the first piece). */
  private work: Set<Promise<unknown>> | undefined;
  private readonly host: LeaseHost;

  constructor(init: LeaseInit, host: LeaseHost) {
    this.name = init.name;
    this.token = init.token;
    this.fencingToken = init.fencingToken;
    this.acquiredAt = init.acquiredAt;
    this.expiresAtMs = init.expiresAt.getTime();
    this.ttlMs = init.ttlMs;
    this.renewIntervalMs = init.renewIntervalMs;
    this.sentAt = init.sentAt;
    this.roundTripMs = init.roundTripMs;
    this.host = host;
  }

  /** The store's expiry (the keeper reads it when the lease is added: the expiry as acquired). */
  get expiresAt(): Date {
    return new Date(this.expiresAtMs);
  }

  /** The user's handle on this lease, made on first use. */
  get lease(): Lease {
    return (this.leaseObject ??= new Lease(this));
  }

  /** The keeper renewed it (see {@link KeptLease.onRenewed}). */
  onRenewed(expiresAt: Date): void {
    this.host.leaseRenewed(this, expiresAt);
  }

  /** The keeper found it lost (see {@link KeptLease.onLost}). */
  onLost(reason: LostReason, holder?: LockInfo): void {
    this.host.leaseLost(this, reason, holder);
  }

  /** A renewal failed and is retried (see {@link KeptLease.onError}). */
  onError(error: Error): void {
    this.host.reportError(error);
  }

  get ended(): boolean {
    return this.endedFlag;
  }

  /** The store release, deduplicated; a no-op once ended. */
  release(): Promise<void> {
    if (this.endedFlag) return Promise.resolve();
    return this.host.endLease(this);
  }

  /** The lease's signal, made on first use (already aborted if the lease ended meanwhile). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.ending) this.controller.abort(this.reason());
    }
    return this.controller.signal;
  }

  /** Aborts the signal (first reason wins). */
  abort(reason: LeaseEndReason, holder?: LockInfo): void {
    if (this.ending) return;
    this.ending = { reason, holder };
    if (this.controller) this.controller.abort(this.reason());
  }

  /** The signal's reason, built once (without a stack: it is a notice, and its message says what happened). */
  private reason(): LockLostError {
    const ending = this.ending as NonNullable<LeaseControl['ending']>;
    if (!ending.error) {
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try {
        ending.error = new LockLostError(this.name, ending.reason, ending.holder);
      } finally {
        Error.stackTraceLimit = limit;
      }
    }
    return ending.error;
  }

  /** Resolves once the lease has ended, however it ended (made when first asked for). */
  get whenEnded(): Promise<void> {
    if (this.endedFlag) return Promise.resolve();
    if (!this.ended$) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.ended$ = { promise, resolve };
    }
    return this.ended$.promise;
  }

  /** Marks the lease ended and wakes whoever waits for that. */
  markEnded(): void {
    if (this.endedFlag) return;
    this.endedFlag = true;
    this.ended$?.resolve();
  }

  /** Work running under this lease (a `run()` callback, a standby task, a Coalescer run). */
  track(promise: Promise<unknown>): void {
    const settled = promise.then(noop, noop);
    const work = (this.work ??= new Set());
    work.add(settled);
    void settled.then(() => work.delete(settled));
  }

  /** Resolves once every piece of work tracked under this lease has settled. */
  async settled(): Promise<void> {
    while (this.work && this.work.size > 0) await Promise.all([...this.work]);
  }

  /** The lease as others see it (for a `conflict` answer naming this instance). */
  info(owner: { owner: string; hostname: string; pid: number }): LockInfo {
    return {
      name: this.name,
      owner: owner.owner,
      hostname: owner.hostname,
      pid: owner.pid,
      fencingToken: this.fencingToken ?? 0,
      acquiredAt: this.acquiredAt,
      expiresAt: this.expiresAt,
    };
  }
}

/**
 * Tracks `work` as running under `lease`, so the process hooks wait for it to settle
 * (bounded by `shutdownTimeoutMs`) before they hand the lock over. @internal
 */
export function trackWork(lease: Lease, work: Promise<unknown>): void {
  controlOf(lease)?.track(work);
}

/** Resolves once `lease` has ended, however it ended. @internal */
export function whenEnded(lease: Lease): Promise<void> {
  return controlOf(lease)?.whenEnded ?? Promise.resolve();
}

function noop(): void {}
