import { type LeaseEndReason, LockLostError, type LostReason } from './errors';
import type { KeptLease } from './LeaseKeeper';
import type { LockInfo } from './persisters/Persister';

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

/** What a `Singleton` keeps about the lease it holds. @internal */
export interface LeaseInit {
  name: string;
  token: string;
  fencingToken: bigint | number | undefined;
  acquiredAt: Date;
  expiresAt: Date;
  /** Ends this lease in the store (the owning Singleton's code path). */
  release(control: LeaseControl): Promise<void>;
}

/**
 * The library's side of a {@link Lease}: token, renewal entry, abort controller and the
 * work running under it. Never handed to users. @internal
 */
export class LeaseControl {
  readonly name: string;
  readonly token: string;
  readonly fencingToken: bigint | number | undefined;
  readonly acquiredAt: Date;
  expiresAt: Date;
  readonly lease: Lease;
  /** Made when someone first asks for the signal (most `lock()` users never do). */
  private controller: AbortController | undefined;
  /** Why the lease ended other than by its own release, once it has. */
  private ending: { reason: LeaseEndReason; holder?: LockInfo; error?: LockLostError } | undefined;
  /** The keeper's entry for this lease, set once it is being renewed. */
  kept: KeptLease | undefined;
  /** A store release in flight. */
  releasing: Promise<void> | undefined;
  /** A loss that arrived while a release was in flight (applied if the release fails). */
  pendingLoss: { reason: LostReason; holder?: LockInfo } | undefined;
  private endedFlag = false;
  private ended$: { promise: Promise<void>; resolve: () => void } | undefined;
  private readonly work = new Set<Promise<unknown>>();
  private readonly releaseFn: (control: LeaseControl) => Promise<void>;

  constructor(init: LeaseInit) {
    this.name = init.name;
    this.token = init.token;
    this.fencingToken = init.fencingToken;
    this.acquiredAt = init.acquiredAt;
    this.expiresAt = init.expiresAt;
    this.releaseFn = init.release;
    this.lease = new Lease(this);
  }

  get ended(): boolean {
    return this.endedFlag;
  }

  /** The store release, deduplicated; a no-op once ended. */
  release(): Promise<void> {
    if (this.endedFlag) return Promise.resolve();
    return this.releaseFn(this);
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
    this.work.add(settled);
    void settled.then(() => this.work.delete(settled));
  }

  /** Resolves once every piece of work tracked under this lease has settled. */
  async settled(): Promise<void> {
    while (this.work.size > 0) await Promise.all([...this.work]);
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

const controls = new WeakMap<Lease, LeaseControl>();

/** Registers the control of a lease (done by the Singleton). @internal */
export function bindControl(control: LeaseControl): Lease {
  controls.set(control.lease, control);
  return control.lease;
}

/**
 * Tracks `work` as running under `lease`, so the process hooks wait for it to settle
 * (bounded by `shutdownTimeoutMs`) before they hand the lock over. @internal
 */
export function trackWork(lease: Lease, work: Promise<unknown>): void {
  controls.get(lease)?.track(work);
}

/** Resolves once `lease` has ended, however it ended. @internal */
export function whenEnded(lease: Lease): Promise<void> {
  return controls.get(lease)?.whenEnded ?? Promise.resolve();
}

function noop(): void {}
