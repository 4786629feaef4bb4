import './polyfills';
import { EventEmitter } from 'node:events';
import { raceAbort, waitController } from './abortable';
import { diagnosticsChannel, publishEvent } from './diagnostics'; // [diagnostics] issue 15
import { abortError, type LeaseEndReason, type LostReason, SingletonError, timeoutError, toPersisterError } from './errors';
import type { EventBase, SingletonEvents } from './events';
import { type Keeper, threadKeeperFor } from './keepAlive/threadKeeper'; // keepAlive: 'thread' (issue 11)
import { type Lease, LeaseControl } from './Lease';
import { keeperFor } from './LeaseKeeper';
import { childLogger, type Logger } from './logger';
import { type NormalizedOptions, normalizeOptions, type SingletonOptions } from './options';
import { CallbackPersisterAdapter, type CallbackPersister, fromCallbackPersister } from './persisters/fromCallbackPersister';
import { FORCED_RELEASE_OWNER } from './persisters/adminSupport';
import type { LockInfo, OwnerInfo, Persister, WatchEnd } from './persisters/Persister';
import { type HookEntry, processHooks } from './processHooks';
import { safeEmit } from './safeEmit';
import { canTransition, type State } from './states';
import { backoffMs, leaseDeadline, monotonicNow, newToken, sentAtForDeadline, withJitter } from './time';
import { checkName, checkWaitLimits, expected } from './validate';
import { Waker } from './Waker';

/** Options of {@link Singleton.waitForLock}. */
export interface WaitOptions {
  /** Stop waiting when this signal aborts (rejects with an `AbortError`). */
  signal?: AbortSignal;
  /** Stop waiting after this many ms (rejects with a `TimeoutError`). */
  timeoutMs?: number;
}

/** Options of {@link Singleton.acquire} and {@link Singleton.run}. */
export interface AcquireOptions extends WaitOptions {
  /**
   * Stand by until the lock is held (hot standby) instead of answering `conflict` at once.
   * While this instance holds a lease itself, a waiting call waits until that lease ends.
   * @default false
   */
  wait?: boolean;
}

/** Options of {@link Singleton.run}. */
export type RunOptions = AcquireOptions;

/** What {@link Singleton.run} did: ran `fn` under the lock, or found it held elsewhere. */
export type RunResult<T> =
  | {
      /** `fn` ran under the lock. */
      status: 'done';
      /** What `fn` returned. */
      value: T;
    }
  | {
      /** The lock was held elsewhere (or by this instance already); `fn` did not run. */
      status: 'conflict';
      /** Who holds it. */
      holder: LockInfo;
    };

/** A node-style callback, as the seed's `lock(cb)`, `release(cb)` and `exists(cb)` take. */
export type NodeCallback<T> = (error: Error | null, value?: T) => void;

type EventPayload<E extends keyof SingletonEvents> = Omit<SingletonEvents[E][0], 'name'>;

/** Who an acquire attempt is for: the instance (`lock()`, `waitForLock()`), or one `acquire()` call. */
type AttemptKind = 'instance' | 'lease';

interface Attempt {
  readonly kind: AttemptKind;
  /** The token of a waiter in line (`standBy` on a store that keeps a queue); otherwise each attempt makes its own. */
  readonly token: string | undefined;
  readonly promise: Promise<LeaseControl | null>;
  /** Callers that still want the outcome; a lease nobody wants any more is given back at once. */
  claims: number;
}

const WARN_STATES: ReadonlySet<string> = new Set(['conflict', 'lost']);

/**
 * One named lock, held by at most one instance across every process and host
 * that shares the persister. An EventEmitter driving the state machine of
 * `states.ts`; every transition goes through one `setState`.
 *
 * A held lock is a {@link Lease}: `acquire()` hands it out, and `lock()`, `run()`,
 * `standby()`, the `Coalescer` and the CLI all hold the lock through it. One instance
 * holds at most one lease at a time.
 *
 * @example
 * ```ts
 * const singleton = new Singleton('nightly-report', new RedisPersister(redis), { ttlMs: 15_000 });
 * singleton.on('locked', ({ fencingToken }) => startWork(fencingToken));
 * singleton.on('conflict', () => process.exit(0));
 * await singleton.lock();
 * ```
 */
export class Singleton extends EventEmitter<SingletonEvents> {
  /** The lock name. */
  readonly name: string;
  /** This instance's human-readable identity, as others see it. */
  readonly owner: string;

  private readonly persister: Persister;
  private readonly options: NormalizedOptions;
  private childLog: Logger | undefined;
  private readonly ownerInfo: OwnerInfo;
  private readonly keeper: Keeper; // LeaseKeeper, or the keep-alive thread's keeper (issue 11)
  private readonly fences: boolean;
  private hooks: HookEntry | undefined;
  /** Whether the process hooks handle anything for it (signals or fatal errors). */
  private readonly hooked: boolean;
  private currentState: State = 'idle';
  private held: LeaseControl | undefined;
  private lastHolder: LockInfo | undefined;
  private attemptInFlight: Attempt | undefined;
  /** Waits in progress (made on the first wait). */
  private waits: Set<AbortController> | undefined;
  /** Aborted by each `release()` call (made when first asked for). */
  private releaseCalls: AbortController | undefined;

  /**
   * @param name 1..200 printable characters.
   * @param persister the store, e.g. `new RedisPersister(redis)` or `new FilePersister()`; a
   *   seed-style callback persister is wrapped with `fromCallbackPersister` (logged once).
   * @param options see {@link SingletonOptions}; every bad value throws here.
   */
  constructor(name: string, persister: Persister | CallbackPersister, options?: SingletonOptions) {
    super();
    this.name = checkName(name);
    this.options = normalizeOptions(options);
    this.persister = asPersister(persister, this.options);
    this.owner = this.options.owner;
    this.ownerInfo = { owner: this.owner, hostname: this.options.hostname, pid: this.options.pid };
    // keepAlive: 'thread' (issue 11): the keep-alive thread's keeper; it refuses (TypeError) a store no other thread can reach.
    this.keeper =
      this.options.keepAlive === 'thread'
        ? threadKeeperFor(this.persister, { ...this.options, owner: this.owner, exitOnLost: () => this.exitsOnLost(), logger: this.log })
        : keeperFor(this.persister);
    this.fences = this.persister.capabilities?.fencing !== false;
    this.hooked = this.options.signals.length > 0 || this.options.handleErrors;
  }

  /** Whether a loss ends the process now: `onLost: 'exit'`, or no `onLost` and no `lost` listener. */
  private exitsOnLost(): boolean {
    return this.options.onLost === 'exit' || (this.options.onLost === undefined && this.listenerCount('lost') === 0);
  }

  /** One pino child per instance with `{ lock, owner }` bound, made on first use. */
  private get log(): Logger {
    return (this.childLog ??= childLogger(this.options.logger, { lock: this.name, owner: this.owner }));
  }

  /** Whether the logger would write at `level` (pino's `isLevelEnabled`; assumed for other loggers). */
  private logs(level: 'debug' | 'info' | 'warn' | 'error'): boolean {
    return this.options.logger.isLevelEnabled?.(level) ?? true;
  }

  /** What the process-wide registry needs from this instance, made on the first lock. */
  private get hookEntry(): HookEntry {
    return (this.hooks ??= {
      name: this.name,
      signals: this.options.signals,
      handleErrors: this.options.handleErrors,
      shutdownTimeoutMs: this.options.shutdownTimeoutMs,
      logger: () => this.log,
      stopWork: () => this.held?.abort('shutdown'),
      workSettled: () => this.held?.settled() ?? Promise.resolve(),
      release: () => this.release(),
    });
  }

  /** Where this instance is in its lifecycle (see `states.ts`). */
  get state(): State {
    return this.currentState;
  }

  /**
   * The fencing token of the lease held now; `undefined` when nothing is held, or when the
   * store does not fence (`capabilities.fencing` false).
   */
  get fencingToken(): bigint | number | undefined {
    return this.held?.fencingToken;
  }

  /** The lease held now, if any. */
  get lease(): Lease | undefined {
    return this.held?.lease;
  }

  /** Lease length in ms, after defaults. */
  get ttlMs(): number {
    return this.options.ttlMs;
  }

  /** Upper bound between attempts while waiting, ms, after defaults. */
  get retryIntervalMs(): number {
    return this.options.retryIntervalMs;
  }

  /** The holder seen by the last attempt that found the lock taken, if any. */
  get holder(): LockInfo | undefined {
    return this.lastHolder;
  }

  /**
   * Aborts each time `release()` is called on this instance (a fresh signal afterwards).
   * @internal lets `standby()` stop standing by without wrapping `release()`.
   */
  get releaseRequested(): AbortSignal {
    return (this.releaseCalls ??= new AbortController()).signal;
  }

  /**
   * Takes the lock and hands out the {@link Lease}: the primitive every other way of
   * holding it is built on.
   *
   * - Without `wait`: one attempt; `null` when someone else holds it, or when this
   *   instance holds a lease already (one instance, one lease).
   * - With `wait: true`: stands by until this call holds a lease of its own (as
   *   {@link waitForLock}); rejects with an `AbortError`/`TimeoutError` on `signal`/`timeoutMs`.
   *
   * A store failure emits `error` and rejects with a `PersisterError`, never `null`.
   */
  async acquire(options: AcquireOptions = {}): Promise<Lease | null> {
    const { wait, ...limits } = checkAcquireOptions(options);
    if (wait) return (await this.standBy(limits, 'lease')).lease;
    limits.signal?.throwIfAborted();
    if (limits.signal === undefined && limits.timeoutMs === undefined) return this.tryOnce();
    // One attempt, bounded: the caller who gave up never gets a lease (nor has its work run).
    const { controller, dispose } = waitController(
      limits,
      () => timeoutError(`Timed out after ${limits.timeoutMs} ms trying to lock "${this.name}"`),
      (reason) => abortError(reason),
    );
    try {
      return await this.tryOnce(controller.signal);
    } finally {
      dispose();
    }
  }

  /** One attempt for a lease of the caller's own (`acquire()` without `wait`), given up on `signal`. */
  private async tryOnce(signal?: AbortSignal): Promise<Lease | null> {
    for (;;) {
      if (this.held) return null;
      const other = this.attemptInFlight;
      if (other) {
        // Someone else's attempt on this instance: its lease would not be ours.
        const theirs = other.promise.catch(() => null);
        const got = await (signal ? raceAbort(theirs, signal) : theirs);
        if (got) return null;
        continue;
      }
      const attempt = this.startAttempt('lease', 'debug');
      attempt.claims += 1;
      if (!signal) return (await attempt.promise)?.lease ?? null;
      try {
        return (await raceAbort(attempt.promise, signal))?.lease ?? null;
      } catch (err) {
        if (signal.aborted) this.dropClaim(attempt);
        throw err;
      }
    }
  }

  /**
   * One attempt to take the lock. Emits `locking`, then `locked` (after `expired` when it
   * took over a lease that ran out) or `conflict`. Resolves `true` when held, also when
   * this instance already holds it (the seed's idempotent `lock()`). A store failure emits
   * `error` and rejects with a `PersisterError` — it is never reported as a conflict.
   * Takes the seed's optional node-style callback as well.
   */
  lock(callback?: NodeCallback<boolean>): Promise<boolean> {
    return withCallback(this.lockOnce(), callback, 'lock');
  }

  private lockOnce(): Promise<boolean> {
    // The common case without an async frame: nothing held, no attempt in flight.
    if (!this.held && !this.attemptInFlight) {
      const own = this.startAttempt('instance', 'warn');
      own.claims += 1;
      return own.promise.then(isHeld);
    }
    return this.lockWhenBusy();
  }

  private async lockWhenBusy(): Promise<boolean> {
    for (;;) {
      if (this.held && !this.held.releasing) return true;
      const attempt = this.attemptInFlight;
      if (attempt?.kind === 'instance') {
        attempt.claims += 1;
        return (await attempt.promise) !== null;
      }
      if (attempt) {
        // An acquire() call's attempt: if it wins, that lease is this instance's too.
        await attempt.promise.catch(() => null);
        continue;
      }
      if (this.held?.releasing) {
        await this.held.releasing.catch(() => undefined);
        continue;
      }
      const own = this.startAttempt('instance', 'warn');
      own.claims += 1;
      return (await own.promise) !== null;
    }
  }

  /**
   * Stand by until the lock is held (hot standby); resolves at once when this instance
   * holds it already. Wakes on a release notification where the persister can `watch`,
   * at the holder's known expiry, and at the latest every `retryIntervalMs`. Emits
   * `conflict` each time the holder changes. Store errors are logged (and emitted as
   * `error`) and retried with backoff. Rejects with an `AbortError` or `TimeoutError`
   * within a few ms of the abort or deadline, also while an attempt is in flight.
   */
  async waitForLock(options: WaitOptions = {}): Promise<void> {
    const limits = checkWaitLimits(options);
    if (this.currentState === 'locked') return;
    await this.standBy(limits, 'instance');
  }

  /**
   * Gives the lease up: emits `releasing`, `released`. Owner-checked — it never deletes
   * someone else's lease. It ends the current lease, so that lease's `signal` aborts
   * (reason `released`: a `run()` in progress is told), and it ends every wait in progress
   * on this instance. A no-op when nothing is held. A release the store did not confirm
   * emits `error` (not `released`), rejects, and keeps the lease held and renewed, so that
   * `release()` can be retried. Takes the seed's optional node-style callback as well.
   */
  release(callback?: NodeCallback<void>): Promise<void> {
    return withCallback(this.releaseAll(), callback, 'release');
  }

  private releaseAll(): Promise<void> {
    const calls = this.releaseCalls;
    this.releaseCalls = undefined;
    calls?.abort(abortError());
    if (this.waits) for (const wait of this.waits) wait.abort(abortError(releasedWhileWaiting(this.name)));
    if (this.attemptInFlight) return this.releaseAfterAttempt(this.attemptInFlight);
    return this.endHeld();
  }

  /** An attempt in flight may end up holding a lease: release that too. */
  private async releaseAfterAttempt(attempt: Attempt): Promise<void> {
    await attempt.promise.catch(() => null);
    await this.endHeld();
  }

  /** Ends the lease held now, if any (its signal aborts: reason `released`). */
  private endHeld(): Promise<void> {
    const held = this.held;
    if (!held) return Promise.resolve();
    held.abort('released');
    return this.endLease(held);
  }

  /** Whether anyone (this instance included) holds the lock now. Takes the seed's optional callback. */
  exists(callback?: NodeCallback<boolean>): Promise<boolean> {
    return withCallback(
      this.inspect().then((info) => info !== null),
      callback,
      'exists',
    );
  }

  /** The current holder (never its token), or `null` when free. */
  async inspect(): Promise<LockInfo | null> {
    try {
      return await this.persister.inspect(this.name);
    } catch (err) {
      throw toPersisterError(`Inspecting lock "${this.name}"`, err);
    }
  }

  /**
   * Acquire (or, with `wait: true`, wait for) a lease, run `fn(lease.signal)`, and release
   * that lease in every case. While this instance holds a lease already (another `run()`,
   * `lock()`), it answers `conflict` naming this instance without running `fn`; with
   * `wait: true` it waits until that lease ends. If the lease ends while `fn` runs (lost,
   * ended by the instance's `release()`, ended by the process hooks), `signal` has aborted
   * and `run` rejects with that `LockLostError`: the work may have overlapped with the next
   * holder.
   */
  async run<T>(fn: (signal: AbortSignal) => T | Promise<T>, options: RunOptions = {}): Promise<RunResult<T>> {
    if (typeof fn !== 'function') throw new TypeError(expected('fn', 'a function', fn));
    const lease = await this.acquire(options);
    if (!lease) {
      const holder = this.held ? this.held.info(this.ownerInfo) : (this.lastHolder as LockInfo);
      return { status: 'conflict', holder };
    }
    const work = (async () => fn(lease.signal))();
    this.held?.track(work);
    let outcome: { ok: true; value: T } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await work };
    } catch (error) {
      outcome = { ok: false, error };
    }
    const endedEarly = lease.signal.aborted;
    try {
      await lease.release();
    } catch (err) {
      // Already reported (`error`); the lease is renewed no longer and expires by itself.
      this.abandon(lease, err);
    }
    if (endedEarly) throw lease.signal.reason;
    if (!outcome.ok) throw outcome.error;
    return { status: 'done', value: outcome.value };
  }

  /** Releases the lock, so `await using s = new Singleton(...)` frees it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /**
   * Emits `error` when someone listens; otherwise logs it. Never throws.
   * @internal used by `standby()` and the `Coalescer`.
   */
  reportError(error: Error): void {
    if (diagnosticsChannel.hasSubscribers) publishEvent(this.name, 'error', this.owner, { fencingToken: this.held?.fencingToken }); // [diagnostics] issue 15
    if (this.listenerCount('error') > 0) safeEmit(this, 'error', error);
    else this.log.error({ err: error }, error.message);
  }

  // ——— internals: state ————————————————————————————————————————————

  /**
   * The one door for state: checks the move against the table, commits it, logs it, and
   * then emits the event of that name. Listeners run after the state is committed, each
   * on its own (a throwing one cannot wedge the instance; its error is re-thrown later).
   */
  private setState<S extends State>(
    next: S,
    payload: S extends keyof SingletonEvents ? EventPayload<S> : { message: string },
    how: { emit?: boolean; level?: 'debug' | 'info' | 'warn'; durationMs?: number; fencingToken?: bigint | number } = {},
  ): void {
    const from = this.currentState;
    if (!canTransition(from, next)) {
      throw new Error(`singleton-process internal error: transition ${from} → ${next} is not allowed`);
    }
    this.currentState = next;
    const emit = how.emit ?? true;
    const level = how.level ?? (WARN_STATES.has(next) && emit ? 'warn' : 'debug');
    // [diagnostics] issue 15: every transition but idle (and locked, published with its event), also when not emitted
    if (diagnosticsChannel.hasSubscribers && next !== 'idle' && next !== 'locked') publishEvent(this.name, next as 'lost', this.owner, { fencingToken: how.fencingToken ?? this.held?.fencingToken, reason: (payload as { reason?: LostReason }).reason, durationMs: how.durationMs });
    const logging = this.logs(level);
    const listening = emit && next !== 'idle' && this.listenerCount(next) > 0;
    if (!logging && !listening) return; // the hot path: nobody reads this transition
    const event = { name: this.name, ...payload } as EventBase;
    if (logging) this.log[level]({ from, to: next, ...loggable(event) }, event.message);
    if (listening) safeEmit(this, next, event);
  }

  /**
   * The hot path of `setState`: commits `next` without building an event, when nothing would
   * read it (no log line at `level`, no listener, no diagnostics subscriber). Returns
   * false, having changed nothing, when something would: then call `setState`.
   */
  private commitQuietly(next: State, emit = true, level: 'debug' | 'info' | 'warn' = 'debug'): boolean {
    if (diagnosticsChannel.hasSubscribers || this.logs(level) || (emit && this.listenerCount(next) > 0)) return false;
    if (!canTransition(this.currentState, next)) {
      throw new Error(`singleton-process internal error: transition ${this.currentState} → ${next} is not allowed`);
    }
    this.currentState = next;
    return true;
  }

  private emitExpired(previous: LockInfo): void {
    this.emitEvent('expired', {
      previous,
      message: `took "${this.name}" out of the store from ${describeHolder(previous)}, whose lease had expired`,
    });
  }

  private emitEvent<E extends 'expired' | 'renewed'>(event: E, payload: EventPayload<E>): void {
    const full = { name: this.name, ...payload } as SingletonEvents[E][0];
    if (event === 'expired' && diagnosticsChannel.hasSubscribers) publishEvent(this.name, 'expired', this.owner); // [diagnostics] issue 15
    if (event === 'expired' && this.logs('warn')) this.log.warn(loggable(full), full.message);
    safeEmit(this, event, full);
  }

  // ——— internals: acquiring ————————————————————————————————————————

  private startAttempt(kind: AttemptKind, conflictLevel: 'warn' | 'debug' | 'wait', token?: string): Attempt {
    const attempt: { kind: AttemptKind; token: string | undefined; claims: number; promise: Promise<LeaseControl | null> } = { kind, token, claims: 0, promise: RESOLVED_NULL };
    this.attemptInFlight = attempt;
    attempt.promise = this.acquireOnce(conflictLevel, attempt);
    return attempt;
  }

  /**
   * A claimant gives up on `attempt`. When it was the last one, the lease the attempt brings
   * is given back: by the attempt itself if it is still in flight, or here if it had already
   * handed the lease out (settled just before the claimant heard of the abort).
   */
  private dropClaim(attempt: Attempt): void {
    attempt.claims -= 1;
    if (attempt.claims === 0) void attempt.promise.then((got) => got?.release(), () => undefined).catch(() => undefined);
  }

  private clearAttempt(attempt: Attempt): void {
    if (this.attemptInFlight === attempt) this.attemptInFlight = undefined;
  }

  /**
   * Stands by until a lease is held: for the instance (`waitForLock`: any lease of this
   * instance will do) or for one caller (`acquire({ wait })`: a lease of its own).
   */
  private async standBy(limits: WaitOptions, kind: AttemptKind): Promise<LeaseControl> {
    const { controller, dispose } = waitController(
      limits,
      () => timeoutError(`Timed out after ${limits.timeoutMs} ms waiting for lock "${this.name}"`),
      (reason) => abortError(reason),
    );
    const { signal } = controller;
    (this.waits ??= new Set()).add(controller);
    const waker = new Waker();
    let unwatch: ((end?: WatchEnd) => Promise<void>) | undefined;
    // Where the store keeps waiters in line, this wait's place in it: one token for all its attempts.
    let turnToken: string | undefined;
    let ownAttempt: Attempt | undefined;
    // One abort listener for the whole wait (not one per attempt and per sleep: a standby
    // woken by every release of a busy lock would add and remove them all the time).
    let rejectRace: ((reason: unknown) => void) | undefined;
    const onAbort = () => {
      rejectRace?.(signal.reason);
      waker.fail(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const race = <T>(promise: Promise<T>): Promise<T> => {
      if (signal.aborted) return Promise.reject(signal.reason);
      return new Promise<T>((resolve, reject) => {
        rejectRace = reject;
        promise.then(resolve, reject);
      });
    };
    try {
      let failures = 0;
      let watching = false;
      for (;;) {
        signal.throwIfAborted();
        waker.clearPending();
        const held = this.held;
        if (held) {
          if (kind === 'instance' && !held.releasing) return held;
          await race(held.whenEnded);
          continue;
        }
        const other = this.attemptInFlight;
        if (other && !(kind === 'instance' && other.kind === 'instance')) {
          await race(other.promise.catch(() => null));
          continue;
        }
        let delayMs: number;
        const attempt = other ?? (ownAttempt = this.startAttempt(kind, 'wait', turnToken));
        attempt.claims += 1;
        try {
          const got = await race(attempt.promise);
          if (got) return got;
          failures = 0;
          delayMs = this.delayUntilNextAttempt();
        } catch (err) {
          if (signal.aborted) {
            this.dropClaim(attempt);
            throw signal.reason;
          }
          if (err instanceof SingletonError && err.code === 'SINGLETON_SHUTTING_DOWN') throw err;
          failures += 1;
          delayMs = withJitter(backoffMs(failures, 50, this.options.retryIntervalMs), 0.5);
        }
        if (!watching) {
          // Tried before listening, so a free lock costs no subscription. Taken: listen for its
          // release now, then try once more at once (a release between that attempt and the
          // subscription wakes nobody; the lease was marked by the attempt, so later ones do).
          watching = true;
          const token = this.persister.capabilities.queue === true ? newToken() : undefined;
          const watched = this.watchReleases(waker, token);
          try {
            unwatch = await race(watched);
          } catch (err) {
            void watched.then((stop) => stop?.()).catch(() => undefined); // subscribed after all: let go
            throw err;
          }
          if (unwatch) turnToken = token; // the next attempts wait in line
          if (failures === 0) continue;
        }
        signal.throwIfAborted();
        await waker.sleep(delayMs);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      dispose();
      waker.dispose();
      this.waits?.delete(controller);
      if (unwatch) this.stopWatching(unwatch, turnToken, ownAttempt);
    }
  }

  /**
   * One attempt for `attempt`'s claimants (one async step: no wrapper around it). The
   * attempt is over (cleared) before its promise settles; a lease nobody claims any more
   * (every claimant gave up meanwhile) is given back at once.
   */
  private async acquireOnce(conflictLevel: 'warn' | 'debug' | 'wait', attempt: Attempt): Promise<LeaseControl | null> {
    try {
      if (processHooks.shuttingDown) throw shuttingDownError(this.name);
      if (!this.commitQuietly('locking')) this.setState('locking', { message: `locking "${this.name}"` });
      const token = attempt.token ?? newToken();
      const sentAt = monotonicNow();
      let result;
      try {
        result = await this.persister.acquire({ name: this.name, token, ttlMs: this.options.ttlMs, owner: this.ownerInfo });
      } catch (err) {
        const error = toPersisterError(`Acquiring lock "${this.name}"`, err);
        // The store may have applied the acquire after we gave up on its answer (a timeout):
        // free that lease at once rather than leave it to expire. Owner-checked, so harmless
        // otherwise. A waiter in line keeps its token: its next attempt takes such a lease, and
        // leaving the line gives it back.
        if (attempt.token === undefined) this.persister.release({ name: this.name, token }).catch(() => undefined);
        this.setState('idle', { message: `could not reach the store to lock "${this.name}"` });
        if (error.expired) this.emitExpired(error.expired);
        this.reportError(error);
        throw error;
      }
      if (!result.acquired) {
        if (result.expired) this.emitExpired(result.expired);
        const changed = !this.lastHolder || !sameHolder(this.lastHolder, result.holder);
        this.lastHolder = result.holder;
        // A one-shot lock() that finds the lock taken is worth a warning; acquire() callers
        // handle `null` themselves; a standby seeing a new leader is normal operation (info),
        // and the same leader again is not news (debug).
        const waiting = conflictLevel === 'wait';
        const level = waiting ? (changed ? 'info' : 'debug') : conflictLevel;
        const emit = !waiting || changed;
        if (!this.commitQuietly('conflict', emit, level)) {
          this.setState('conflict', { holder: result.holder, message: `"${this.name}" is held by ${describeHolder(result.holder)}` }, { emit, level });
        }
        return null;
      }
      if (processHooks.shuttingDown) {
        // A signal arrived while the acquire was in flight: the shutdown already chose
        // what to release, so give this lease back now instead of holding it into exit.
        await this.persister.release({ name: this.name, token }).catch(() => undefined);
        this.setState('idle', { message: `gave "${this.name}" back at once: the process is shutting down` });
        throw shuttingDownError(this.name);
      }
      const { lease: info } = result;
      const { ttlMs } = this.options;
      const roundTripMs = monotonicNow() - sentAt;
      // The keeper counts a lease's deadline as `keptFrom + ttl − margin`.
      let keptFrom = sentAt;
      if (result.handedOver === true) {
        // Handed over by a release: it began before this attempt, by `leaseAgeMs` at most (the
        // store's clock since the waiter's last exchange with it), or, unknown, a renewal
        // interval ago; and it may last less than ttl until its first renewal (a store's claim
        // on a waiter: the answer's expiresAt − acquiredAt).
        const now = monotonicNow();
        const startedAt = result.leaseAgeMs !== undefined ? now - result.leaseAgeMs : sentAt - this.options.renewIntervalMs;
        const lastsMs = Math.min(ttlMs, info.expiresAt.getTime() - info.acquiredAt.getTime());
        const deadline = leaseDeadline(startedAt, lastsMs, roundTripMs);
        if (!(deadline > now)) {
          // Handed over while this process was stopped or busy for longer than the lease lasts:
          // it has run out (someone else may hold the lock by now). Not held; owner-checked, so
          // giving it back is harmless if it is still there.
          this.persister.release({ name: this.name, token }).catch(() => undefined);
          this.setState('idle', { message: `a lease of "${this.name}" handed over ${Math.round(now - startedAt)} ms ago, while this process was stopped or busy, had run out; waiting on` }, { level: 'warn' });
          return null;
        }
        // The keeper counts every lease as lasting ttl: kept from the moment that gives it this
        // deadline. A lease shorter than ttl (or of unknown start) then falls due for renewal at once.
        keptFrom = sentAtForDeadline(deadline, ttlMs, roundTripMs);
      }
      if (attempt.claims === 0) {
        // Everyone who wanted this lease gave up while the attempt was in flight: give it back
        // before anyone is told it is held (no `locked` for a lease nobody will use). The attempt
        // stays in flight until the store confirms, so the next one does not meet this lease.
        if (result.expired) this.emitExpired(result.expired);
        await this.persister.release({ name: this.name, token }).catch(() => undefined);
        this.setState('idle', { message: `nobody waits for "${this.name}" any more; gave the new lease back` });
        return null;
      }
      const fencingToken = this.fences ? info.fencingToken : undefined;
      const held = new LeaseControl(
        {
          name: this.name,
          token,
          fencingToken,
          acquiredAt: info.acquiredAt,
          expiresAt: info.expiresAt,
          ttlMs: this.options.ttlMs,
          renewIntervalMs: this.options.renewIntervalMs,
          sentAt: keptFrom,
          roundTripMs,
        },
        this,
      );
      this.held = held;
      this.lastHolder = undefined;
      if (this.hooked) processHooks.register(this.hookEntry);
      this.keeper.add(held);
      // Commit first, then tell: listeners see the state they are told about.
      if (!this.commitQuietly('locked', false)) {
        this.setState(
          'locked',
          { fencingToken, expiresAt: info.expiresAt, message: `locked "${this.name}"${fencingToken === undefined ? '' : ` with fencing token ${String(fencingToken)}`}` },
          { emit: false },
        );
      }
      if (result.expired) this.emitExpired(result.expired);
      if (this.held === held) {
        if (diagnosticsChannel.hasSubscribers) publishEvent(this.name, 'locked', this.owner, { fencingToken, durationMs: held.roundTripMs }); // [diagnostics] issue 15
        if (this.listenerCount('locked') > 0) safeEmit(this, 'locked', {
          name: this.name,
          fencingToken,
          expiresAt: info.expiresAt,
          message: `locked "${this.name}"${fencingToken === undefined ? '' : ` with fencing token ${String(fencingToken)}`}`,
        });
      }
      return held;
    } finally {
      this.clearAttempt(attempt);
    }
  }

  // ——— internals: ending a lease ————————————————————————————————————

  /** Ends `held` in the store (owner-checked), deduplicated. The signal is left as it is. @internal */
  endLease(held: LeaseControl): Promise<void> {
    if (held.ended) return Promise.resolve();
    held.releasing ??= this.releaseInStore(held); // it clears `releasing` when done (after its first await)
    return held.releasing;
  }

  private async releaseInStore(held: LeaseControl): Promise<void> {
    if (!this.commitQuietly('releasing')) this.setState('releasing', { message: `releasing "${this.name}"` }, { fencingToken: held.fencingToken }); // [diagnostics] issue 15: fencingToken
    let deleted: boolean;
    const sentAt = diagnosticsChannel.hasSubscribers ? monotonicNow() : 0; // [diagnostics] issue 15
    let call: Promise<boolean>;
    try {
      call = this.persister.release({ name: this.name, token: held.token });
    } catch (err) {
      call = Promise.reject(err); // settled after endLease has recorded this release
    }
    try {
      deleted = await call;
    } catch (err) {
      held.releasing = undefined;
      const error = toPersisterError(`Releasing lock "${this.name}"`, err);
      // Not confirmed: the lease is still ours as far as we know. Keep it (still renewed), so
      // release() can be retried — unless its deadline passed meanwhile.
      this.setState('locked', { fencingToken: held.fencingToken, expiresAt: held.expiresAt, message: `release of "${this.name}" failed; still holding it` }, { emit: false, level: 'warn' });
      const loss = held.pendingLoss;
      if (loss) this.lose(held, loss.reason, loss.holder);
      this.reportError(error);
      throw error;
    }
    held.releasing = undefined;
    if (!deleted) this.log.warn({}, `"${this.name}" was no longer held by this instance at release (it had expired or was taken over)`);
    this.keeper.remove(held);
    if (this.held === held) this.held = undefined;
    if (this.hooked) processHooks.unregister(this.hookEntry);
    held.markEnded();
    if (!this.commitQuietly('released')) this.setState('released', { message: `released "${this.name}"` }, { durationMs: sentAt === 0 ? undefined : monotonicNow() - sentAt, fencingToken: held.fencingToken }); // [diagnostics] issue 15
  }

  /** Stops renewing a lease whose release could not be confirmed: it expires by itself. */
  private abandon(lease: Lease, err: unknown): void {
    const held = this.held;
    if (!held || held.lease !== lease) return;
    this.keeper.remove(held);
    this.held = undefined;
    if (this.hooked) processHooks.unregister(this.hookEntry);
    held.markEnded();
    this.log.warn({ err }, `"${this.name}" could not be released; it is no longer renewed and expires within ${this.options.ttlMs} ms`);
    this.setState('releasing', { message: `giving up "${this.name}"` }, { emit: false });
    this.setState('released', { message: `gave up "${this.name}"; it expires by itself` });
  }

  /** The keeper renewed `held` until `expiresAt`. @internal */
  leaseRenewed(held: LeaseControl, expiresAt: Date): void {
    if (this.held !== held) return;
    held.expiresAtMs = expiresAt.getTime();
    if (diagnosticsChannel.hasSubscribers) publishEvent(this.name, 'renewed', this.owner, { fencingToken: held.fencingToken, durationMs: held.roundTripMs }); // [diagnostics] issue 15
    // The hot path of a process holding thousands of leases: no event object nobody reads.
    if (this.listenerCount('renewed') === 0) return;
    this.emitEvent('renewed', { expiresAt, message: `renewed "${this.name}" until ${expiresAt.toISOString()}` });
  }

  /** The keeper found `held` lost. @internal */
  leaseLost(held: LeaseControl, reason: 'expired' | 'taken-over' | 'store-unreachable', holder?: LockInfo): void {
    if (this.held !== held || held.ended) return;
    if (this.currentState === 'releasing') {
      // A release is in flight: tell the work now; the state follows the release's outcome.
      held.abort(reason, holder);
      held.pendingLoss = { reason, holder };
      return;
    }
    this.lose(held, reason, holder);
  }

  private lose(held: LeaseControl, reason: 'expired' | 'taken-over' | 'store-unreachable', holder?: LockInfo): void {
    this.held = undefined;
    this.keeper.remove(held);
    if (this.hooked) processHooks.unregister(this.hookEntry);
    // The work is told first, before anything else runs.
    held.abort(reason, holder);
    held.markEnded();
    const exit = this.exitsOnLost();
    if (reason === 'store-unreachable') {
      // Best effort: if the store comes back before expiry, free it for the next holder at once.
      this.persister.release({ name: this.name, token: held.token }).catch(() => undefined);
    }
    const by = holder ? `; ${describeTakeover(holder)}` : '';
    // When exiting, the one error line below says it all (DESIGN.md: 'exit' logs one line).
    this.setState('lost', { reason, holder, message: `lost "${this.name}" (${reason}${by})` }, { emit: !exit || this.listenerCount('lost') > 0, fencingToken: held.fencingToken }); // [diagnostics] issue 15: fencingToken
    if (exit) {
      this.log.error(
        { reason, exitCode: 70 },
        `exiting with code 70: lock "${this.name}" was lost (${reason}) and no 'lost' listener handles it; listen for 'lost' or set onLost: 'emit' to handle it yourself`,
      );
      process.exit(70);
    }
  }

  // ——— internals: waiting ———————————————————————————————————————————

  private async watchReleases(waker: Waker, token: string | undefined): Promise<((end?: WatchEnd) => Promise<void>) | undefined> {
    if (!this.persister.watch) return undefined;
    try {
      return await this.persister.watch(this.name, () => waker.notify(), token === undefined ? undefined : { token });
    } catch (err) {
      this.reportError(toPersisterError(`Watching lock "${this.name}" for releases (falling back to polling)`, err));
      return undefined;
    }
  }

  /**
   * Ends a wait's watch. In line (`turnToken`), once the wait's last attempt settled: a lease
   * it got under that token is kept; otherwise the store takes the waiter out of the line and
   * gives a lease handed to it meanwhile to the next one.
   */
  private stopWatching(unwatch: (end?: WatchEnd) => Promise<void>, turnToken: string | undefined, last: Attempt | undefined): void {
    const failed = (err: unknown) => this.log.debug({ err }, 'unwatch failed');
    if (turnToken === undefined || !last) {
      unwatch().catch(failed);
      return;
    }
    last.promise.then(
      (lease) => unwatch({ keep: lease !== null && lease.token === turnToken }),
      () => unwatch(),
    ).catch(failed);
  }

  /** Next attempt: at the holder's known expiry (plus jitter), and at the latest after `retryIntervalMs`. */
  private delayUntilNextAttempt(): number {
    const retry = this.options.retryIntervalMs;
    if (!this.lastHolder) return retry;
    // A hint only: a wrong guess costs one early or late attempt, never safety.
    const untilExpiry = this.lastHolder.expiresAt.getTime() - Date.now();
    return Math.min(retry, Math.max(1, untilExpiry + 2) + Math.random() * 10);
  }
}

/** Whether `value` is a seed-style callback persister (singleton-process v1). */
function isCallbackPersister(value: unknown): value is CallbackPersister {
  if (value === null || typeof value !== 'object') return false;
  const p = value as Record<string, unknown>;
  return ['persistLock', 'deleteLock', 'lockExists'].every((m) => typeof p[m] === 'function');
}

const wrappedLegacy = new WeakMap<object, Persister>();

/**
 * The persister a Singleton runs on: a {@link Persister} as it is; a seed-style callback
 * persister wrapped once with `fromCallbackPersister` (logged once), its staleness the
 * Singleton's lease length. Anything else is a TypeError.
 */
function asPersister(value: unknown, options: NormalizedOptions): Persister {
  if (isPersister(value)) {
    if (value instanceof CallbackPersisterAdapter) value.adoptLeaseLength(options.ttlMs);
    return value;
  }
  if (isCallbackPersister(value)) {
    let wrapped = wrappedLegacy.get(value);
    if (!wrapped) {
      wrapped = fromCallbackPersister(value, { staleAfterMs: options.ttlMs });
      wrappedLegacy.set(value, wrapped);
      options.logger.warn(
        { staleAfterMs: options.ttlMs },
        'a seed-style callback persister (persistLock, deleteLock, lockExists) was wrapped with fromCallbackPersister(): ' +
          'it has no server clock, no fencing and no release notifications, and a lock older than the lease length ' +
          `(${options.ttlMs} ms) is taken over; see the README's "Migrating from singleton-process"`,
      );
    } else if (wrapped instanceof CallbackPersisterAdapter) wrapped.adoptLeaseLength(options.ttlMs);
    return wrapped;
  }
  throw notAPersister('a Persister (acquire, renew, release, inspect), or a seed-style callback persister (persistLock, deleteLock, lockExists) to wrap with fromCallbackPersister()', value);
}

/**
 * The TypeError for a `persister` argument that is none: what is `allowed`, what was given,
 * and what to do with it when it is a likely mistake (a client, a URL, a promise, a class).
 * @internal also used by the Coalescer.
 */
export function notAPersister(allowed: string, value: unknown): TypeError {
  const hint = persisterHint(value);
  return new TypeError(`${expected('persister', allowed, value)}${hint ? `. ${hint}` : ''}`);
}

/** What the likely mistake is, for a value that is no persister. */
function persisterHint(value: unknown): string | undefined {
  if (typeof value === 'string') return 'A store URL? Make the persister from it: `await persisterFromUrl(url)`';
  if (typeof value === 'function') return 'A class or factory? Pass an instance, e.g. `new FilePersister()`';
  if (value === null || typeof value !== 'object') return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.then === 'function') return 'A promise? `persisterFromUrl()` resolves the persister: `await` it first';
  if (typeof v.evalsha === 'function' && typeof v.duplicate === 'function') return 'An ioredis client? Wrap it: `new RedisPersister(client)`';
  if (typeof v.findOneAndUpdate === 'function') return 'A MongoDB collection? Wrap it: `new MongoPersister(collection)`';
  if (typeof v.query === 'function' && typeof v.connect === 'function') return 'A pg Pool or Client? Wrap it: `new PostgresPersister(pool)`';
  return undefined;
}

/** Whether `value` has the four methods of a {@link Persister}. */
export function isPersister(value: unknown): value is Persister {
  if (value === null || typeof value !== 'object') return false;
  const p = value as Record<string, unknown>;
  return ['acquire', 'renew', 'release', 'inspect'].every((m) => typeof p[m] === 'function');
}

function checkAcquireOptions(options: AcquireOptions): AcquireOptions {
  const limits = checkWaitLimits(options);
  if (options.wait !== undefined && typeof options.wait !== 'boolean') {
    throw new TypeError(expected('wait', 'true or false', options.wait));
  }
  return { ...limits, wait: options.wait };
}

/** Settles a seed-style callback from `promise` when one is given; the promise is returned either way. */
const RESOLVED_NULL: Promise<null> = Promise.resolve(null);

/** Whether an attempt ended holding a lease. */
function isHeld(held: LeaseControl | null): boolean {
  return held !== null;
}

function withCallback<T>(promise: Promise<T>, callback: NodeCallback<T> | undefined, method: string): Promise<T> {
  if (callback === undefined) return promise;
  if (typeof callback !== 'function') {
    throw new TypeError(expected(`${method}(callback)`, 'a function (error, result) => void, or nothing to use the promise', callback));
  }
  promise.then(
    (value) => callback(null, value),
    (error: Error) => callback(error),
  );
  // The callback receives the error: the returned promise must not also raise it as unhandled.
  promise.catch(() => undefined);
  return promise;
}

function shuttingDownError(name: string): SingletonError {
  return new SingletonError('SINGLETON_SHUTTING_DOWN', `Not locking "${name}": the process is shutting down.`);
}

function releasedWhileWaiting(name: string): Error {
  return new DOMException(`Stopped waiting for lock "${name}": release() was called on this instance`, 'AbortError');
}

function sameHolder(a: LockInfo, b: LockInfo): boolean {
  return a.owner === b.owner && a.hostname === b.hostname && a.pid === b.pid && a.fencingToken === b.fencingToken;
}

/** "owner (pid 12 on host-a) since 2026-…" — for messages and the CLI. */
export function describeHolder(h: LockInfo): string {
  return `${h.owner} (pid ${h.pid} on ${h.hostname}, fencing token ${String(h.fencingToken)}, since ${h.acquiredAt.toISOString()})`;
}

/**
 * Who took a lost lease, for a message: `now held by <holder>`, or, when an operator's
 * `release --force` ended it and nobody holds the lock since, `freed by release --force …`
 * (that holder's fence is the evicted lease's own).
 * @internal also used by singleton-run.
 */
export function describeTakeover(h: LockInfo): string {
  if (h.owner !== FORCED_RELEASE_OWNER) return `now held by ${describeHolder(h)}`;
  const operator = h.pid > 0 ? ` (pid ${h.pid}${h.hostname ? ` on ${h.hostname}` : ''})` : '';
  return `freed by ${FORCED_RELEASE_OWNER}${operator} at ${h.acquiredAt.toISOString()}`;
}

function loggable(event: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(event)) {
    if (k === 'message' || k === 'name') continue;
    out[k] = typeof v === 'bigint' ? String(v) : v;
  }
  return out;
}

export type { LeaseEndReason };
