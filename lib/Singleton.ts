import './polyfills';
import { EventEmitter } from 'node:events';
import { diagnosticsChannel, publishEvent } from './diagnostics'; // [diagnostics] issue 15
import { abortError, LockLostError, type LostReason, SingletonError, timeoutError, toPersisterError } from './errors';
import type { EventBase, SingletonEvents } from './events';
import { keeperFor, type KeptLease, type LeaseKeeper } from './LeaseKeeper';
import { childLogger, type Logger } from './logger';
import { type NormalizedOptions, normalizeOptions, type SingletonOptions } from './options';
import type { LockInfo, OwnerInfo, Persister } from './persisters/Persister';
import { type HookEntry, processHooks } from './processHooks';
import { canTransition, type State } from './states';
import { monotonicNow, newToken, withJitter } from './time';
import { checkName, checkWaitLimits, expected } from './validate';
import { Waker } from './Waker';

/** Options of {@link Singleton.waitForLock}. */
export interface WaitOptions {
  /** Stop waiting when this signal aborts (rejects with an `AbortError`). */
  signal?: AbortSignal;
  /** Stop waiting after this many ms (rejects with a `TimeoutError`). */
  timeoutMs?: number;
}

/** Options of {@link Singleton.run}. */
export interface RunOptions extends WaitOptions {
  /** Wait for the lock (hot standby) instead of answering `conflict` at once. @default false */
  wait?: boolean;
}

/** What {@link Singleton.run} did: ran `fn` under the lock, or found it held elsewhere. */
export type RunResult<T> = { status: 'done'; value: T } | { status: 'conflict'; holder: LockInfo };

interface HeldLease {
  token: string;
  fencingToken: bigint | number;
  expiresAt: Date;
  kept: KeptLease;
}

type EventPayload<E extends keyof SingletonEvents> = Omit<SingletonEvents[E][0], 'name'>;

const WARN_STATES: ReadonlySet<string> = new Set(['conflict', 'lost']);

/**
 * One named lock, held by at most one instance across every process and host
 * that shares the persister. An EventEmitter driving the state machine of
 * `states.ts`; every transition goes through {@link Singleton.setState}.
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
  private readonly keeper: LeaseKeeper;
  private hooks: HookEntry | undefined;
  private currentState: State = 'idle';
  private held: HeldLease | undefined;
  private lastHolder: LockInfo | undefined;
  private attemptInFlight: Promise<boolean> | undefined;
  private releaseInFlight: Promise<void> | undefined;
  private waits: Set<AbortController> | undefined;

  /**
   * @param name 1..200 printable characters.
   * @param persister the store, e.g. `new RedisPersister(redis)` or `new FilePersister()`.
   * @param options see {@link SingletonOptions}; every bad value throws here.
   */
  constructor(name: string, persister: Persister, options?: SingletonOptions) {
    super();
    this.name = checkName(name);
    if (!isPersister(persister)) {
      throw new TypeError(
        expected('persister', 'a Persister (acquire, renew, release, inspect); wrap a seed-style callback persister with fromCallbackPersister()', persister),
      );
    }
    this.persister = persister;
    this.options = normalizeOptions(options);
    this.owner = this.options.owner;
    this.ownerInfo = { owner: this.owner, hostname: this.options.hostname, pid: this.options.pid };
    this.keeper = keeperFor(persister);
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
    // A plain literal (no accessors), so V8 keeps it in fast mode: it lives as long as the lease.
    return (this.hooks ??= {
      name: this.name,
      signals: this.options.signals,
      handleErrors: this.options.handleErrors,
      shutdownTimeoutMs: this.options.shutdownTimeoutMs,
      logger: () => this.log,
      release: () => this.release(),
    });
  }

  /** Where this instance is in its lifecycle (see `states.ts`). */
  get state(): State {
    return this.currentState;
  }

  /** The fencing token of the lease held now, or `undefined` when nothing is held. */
  get fencingToken(): bigint | number | undefined {
    return this.held?.fencingToken;
  }

  /** Lease length in ms, after defaults. */
  get ttlMs(): number {
    return this.options.ttlMs;
  }

  /** The holder seen by the last attempt that found the lock taken, if any. */
  get holder(): LockInfo | undefined {
    return this.lastHolder;
  }

  /**
   * One attempt to take the lock. Emits `locking`, then `locked` (after
   * `expired` when it took over a lease that ran out) or `conflict`.
   * Resolves `true` when held. A store failure emits `error` and rejects with a
   * `PersisterError` — it is never reported as a conflict.
   */
  async lock(): Promise<boolean> {
    if (this.currentState === 'locked') return true;
    if (this.attemptInFlight) return this.attemptInFlight;
    if (this.releaseInFlight) await this.releaseInFlight.catch(() => undefined);
    return this.attempt(true);
  }

  /**
   * Stand by until the lock is held (hot standby). Wakes on a release
   * notification where the persister can `watch`, at the holder's known expiry,
   * and at the latest every `retryIntervalMs`. Emits `conflict` each time the
   * holder changes. Store errors are logged (and emitted as `error`) and retried
   * with backoff. Rejects with an `AbortError` or `TimeoutError`.
   */
  async waitForLock(options: WaitOptions = {}): Promise<void> {
    const { signal, timeoutMs } = checkWaitLimits(options);
    if (this.currentState === 'locked') return;
    if (signal?.aborted) throw abortError(signal.reason);
    const controller = new AbortController();
    const onAbort = () => controller.abort(abortError(signal?.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(
            () => controller.abort(timeoutError(`Timed out after ${timeoutMs} ms waiting for lock "${this.name}"`)),
            timeoutMs,
          );
    (this.waits ??= new Set()).add(controller);
    const waker = new Waker();
    let unwatch: (() => Promise<void>) | undefined;
    try {
      unwatch = await this.watchReleases(waker);
      let failures = 0;
      for (;;) {
        if (controller.signal.aborted) throw controller.signal.reason;
        waker.clearPending();
        let delayMs: number;
        try {
          if (await this.attemptShared()) return;
          failures = 0;
          delayMs = this.delayUntilNextAttempt();
        } catch (err) {
          if (err instanceof SingletonError && err.code === 'SINGLETON_SHUTTING_DOWN') throw err;
          failures += 1;
          delayMs = withJitter(Math.min(this.options.retryIntervalMs, 50 * 2 ** failures), 0.5);
        }
        await waker.sleep(delayMs, controller.signal);
      }
    } finally {
      waker.dispose();
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      this.waits?.delete(controller);
      if (unwatch) unwatch().catch((err: unknown) => this.log.debug({ err }, 'unwatch failed'));
    }
  }

  /**
   * Give the lease up: emits `releasing`, `released`. Owner-checked — it never
   * deletes someone else's lease. Also ends any `waitForLock` in progress.
   * A no-op when nothing is held.
   */
  async release(): Promise<void> {
    if (this.waits) for (const wait of this.waits) wait.abort(abortError());
    if (this.attemptInFlight) await this.attemptInFlight.catch(() => false);
    if (this.releaseInFlight) return this.releaseInFlight;
    const held = this.held;
    if (this.currentState !== 'locked' || !held) return;
    this.releaseInFlight = this.releaseHeld(held).finally(() => {
      this.releaseInFlight = undefined;
    });
    return this.releaseInFlight;
  }

  /** Whether anyone (this instance included) holds the lock now. */
  async exists(): Promise<boolean> {
    return (await this.inspect()) !== null;
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
   * Acquire (or, with `wait: true`, wait for) the lock, run `fn(signal)`, and
   * release in every case. `signal` aborts with a `LockLostError` when the lease
   * is lost; `run` then rejects with that error, since the work may have
   * overlapped with the next holder.
   */
  async run<T>(fn: (signal: AbortSignal) => T | Promise<T>, options: RunOptions = {}): Promise<RunResult<T>> {
    if (typeof fn !== 'function') throw new TypeError(expected('fn', 'a function', fn));
    if (options.wait !== undefined && typeof options.wait !== 'boolean') {
      throw new TypeError(expected('wait', 'true or false', options.wait));
    }
    if (options.wait) await this.waitForLock(options);
    else if (!(await this.lock())) return { status: 'conflict', holder: this.lastHolder as LockInfo };
    const controller = new AbortController();
    const onLost = (e: SingletonEvents['lost'][0]) => controller.abort(new LockLostError(this.name, e.reason, e.holder));
    this.on('lost', onLost);
    let value: T;
    try {
      value = await fn(controller.signal);
    } catch (err) {
      this.off('lost', onLost);
      await this.release().catch((releaseErr: unknown) => this.log.error({ err: releaseErr }, 'release after a failed run failed'));
      throw err;
    }
    this.off('lost', onLost);
    if (controller.signal.aborted) throw controller.signal.reason;
    await this.release();
    return { status: 'done', value };
  }

  /** Releases the lock, so `await using s = new Singleton(...)` frees it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  // ——— internals ————————————————————————————————————————————————

  /** The one door for state: checks the move against the table, logs it, emits the event of that name. */
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
    const event = { name: this.name, ...payload } as EventBase;
    const level = how.level ?? (WARN_STATES.has(next) && emit ? 'warn' : 'debug');
    if (this.logs(level)) this.log[level]({ from, to: next, ...loggable(event) }, event.message);
    // [diagnostics] issue 15: every transition but idle, before listeners run (one check when nobody subscribes)
    if (diagnosticsChannel.hasSubscribers && next !== 'idle') publishEvent(this.name, next as 'locked', this.owner, { fencingToken: how.fencingToken ?? (event as { fencingToken?: bigint | number }).fencingToken ?? this.held?.fencingToken, reason: (event as { reason?: LostReason }).reason, durationMs: how.durationMs });
    if (emit && next !== 'idle') (this.emit as (e: string, p: unknown) => boolean)(next, event);
  }

  private emitEvent<E extends 'expired' | 'renewed'>(event: E, payload: EventPayload<E>): void {
    const full = { name: this.name, ...payload } as SingletonEvents[E][0];
    if (event === 'expired' && diagnosticsChannel.hasSubscribers) publishEvent(this.name, 'expired', this.owner); // [diagnostics] issue 15
    if (event === 'expired' && this.logs('warn')) this.log.warn(loggable(full), full.message);
    (this.emit as (e: string, p: unknown) => boolean)(event, full);
  }

  /**
   * Emits `error` when someone listens; otherwise logs it. Never throws.
   * @internal used by `standby()` and the `Coalescer`.
   */
  reportError(error: Error): void {
    if (diagnosticsChannel.hasSubscribers) publishEvent(this.name, 'error', this.owner, { fencingToken: this.held?.fencingToken }); // [diagnostics] issue 15
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else this.log.error({ err: error }, error.message);
  }

  private attemptShared(): Promise<boolean> {
    if (this.currentState === 'locked') return Promise.resolve(true);
    return this.attemptInFlight ?? this.attempt(false);
  }

  private attempt(alwaysEmitConflict: boolean): Promise<boolean> {
    const promise = this.acquireOnce(alwaysEmitConflict).finally(() => {
      this.attemptInFlight = undefined;
    });
    this.attemptInFlight = promise;
    return promise;
  }

  private async acquireOnce(alwaysEmitConflict: boolean): Promise<boolean> {
    if (processHooks.shuttingDown) {
      throw new SingletonError('SINGLETON_SHUTTING_DOWN', `Not locking "${this.name}": the process is shutting down.`);
    }
    if (this.releaseInFlight) await this.releaseInFlight.catch(() => undefined);
    this.setState('locking', { message: `locking "${this.name}"` });
    const token = newToken();
    const sentAt = monotonicNow();
    let result;
    try {
      result = await this.persister.acquire({ name: this.name, token, ttlMs: this.options.ttlMs, owner: this.ownerInfo });
    } catch (err) {
      const error = toPersisterError(`Acquiring lock "${this.name}"`, err);
      // The store may have applied the acquire after we gave up on its answer (a timeout):
      // free that lease at once rather than leave it to expire. Owner-checked, so harmless otherwise.
      this.persister.release({ name: this.name, token }).catch(() => undefined);
      this.setState('idle', { message: `could not reach the store to lock "${this.name}"` });
      this.reportError(error);
      throw error;
    }
    if (!result.acquired) {
      const changed = !this.lastHolder || !sameHolder(this.lastHolder, result.holder);
      this.lastHolder = result.holder;
      // A one-shot lock() that finds the lock taken is worth a warning; a standby seeing a
      // new leader is normal operation (info), and the same leader again is not news (debug).
      const level = alwaysEmitConflict ? 'warn' : changed ? 'info' : 'debug';
      this.setState(
        'conflict',
        { holder: result.holder, message: `"${this.name}" is held by ${describeHolder(result.holder)}` },
        { emit: alwaysEmitConflict || changed, level },
      );
      return false;
    }
    if (processHooks.shuttingDown) {
      // A signal arrived while the acquire was in flight: the shutdown already chose
      // what to release, so give this lease back now instead of holding it into exit.
      await this.persister.release({ name: this.name, token }).catch(() => undefined);
      this.setState('idle', { message: `gave "${this.name}" back at once: the process is shutting down` });
      throw new SingletonError('SINGLETON_SHUTTING_DOWN', `Not locking "${this.name}": the process is shutting down.`);
    }
    const { lease } = result;
    const kept: KeptLease = {
      name: this.name,
      token,
      ttlMs: this.options.ttlMs,
      renewIntervalMs: this.options.renewIntervalMs,
      sentAt,
      roundTripMs: monotonicNow() - sentAt,
      onRenewed: (expiresAt) => this.onRenewed(expiresAt),
      onLost: (reason, holder) => this.onLost(reason, holder),
      onError: (error) => this.reportError(error),
    };
    this.held = { token, fencingToken: lease.fencingToken, expiresAt: lease.expiresAt, kept };
    this.lastHolder = undefined;
    processHooks.register(this.hookEntry);
    this.keeper.add(kept);
    if (result.expired) {
      this.emitEvent('expired', {
        previous: result.expired,
        message: `took over "${this.name}" from ${describeHolder(result.expired)}, whose lease had expired`,
      });
    }
    this.setState('locked', {
      fencingToken: lease.fencingToken,
      expiresAt: lease.expiresAt,
      message: `locked "${this.name}" with fencing token ${String(lease.fencingToken)}`,
    }, { durationMs: kept.roundTripMs }); // [diagnostics] issue 15: the acquire's round trip
    return true;
  }

  private async releaseHeld(held: HeldLease): Promise<void> {
    this.setState('releasing', { message: `releasing "${this.name}"` });
    this.keeper.remove(held.kept);
    let error: Error | undefined;
    const sentAt = monotonicNow(); // [diagnostics] issue 15
    try {
      const deleted = await this.persister.release({ name: this.name, token: held.token });
      if (!deleted) this.log.warn({}, `"${this.name}" was no longer held by this instance at release (it had expired or was taken over)`);
    } catch (err) {
      error = toPersisterError(`Releasing lock "${this.name}"`, err);
    }
    this.held = undefined;
    processHooks.unregister(this.hookEntry);
    this.setState('released', { message: `released "${this.name}"` }, { durationMs: monotonicNow() - sentAt, fencingToken: held.fencingToken }); // [diagnostics] issue 15
    if (error) {
      this.reportError(error);
      throw error;
    }
  }

  private onRenewed(expiresAt: Date): void {
    if (!this.held) return;
    this.held.expiresAt = expiresAt;
    if (diagnosticsChannel.hasSubscribers) publishEvent(this.name, 'renewed', this.owner, { fencingToken: this.held.fencingToken, durationMs: this.held.kept.roundTripMs }); // [diagnostics] issue 15
    // The hot path of a process holding thousands of leases: no event object nobody reads.
    if (this.listenerCount('renewed') === 0) return;
    this.emitEvent('renewed', { expiresAt, message: `renewed "${this.name}" until ${expiresAt.toISOString()}` });
  }

  private onLost(reason: LostReason, holder?: LockInfo): void {
    const held = this.held;
    if (!held || this.currentState !== 'locked') return;
    this.held = undefined;
    processHooks.unregister(this.hookEntry);
    const exit = this.options.onLost === 'exit' || (this.options.onLost === undefined && this.listenerCount('lost') === 0);
    if (reason === 'store-unreachable') {
      // Best effort: if the store comes back before expiry, free it for the next holder at once.
      this.persister.release({ name: this.name, token: held.token }).catch(() => undefined);
    }
    const by = holder ? `; now held by ${describeHolder(holder)}` : '';
    // When exiting, the one error line below says it all (DESIGN.md: 'exit' logs one line): with nobody
    // listening, the transition is logged at debug instead of warn (setState's `emit` flag does both).
    this.setState('lost', { reason, holder, message: `lost "${this.name}" (${reason}${by})` }, { emit: !exit || this.listenerCount('lost') > 0, fencingToken: held.fencingToken }); // [diagnostics] issue 15: fencingToken
    if (exit) {
      this.log.error(
        { reason, exitCode: 70 },
        `exiting with code 70: lock "${this.name}" was lost (${reason}) and no 'lost' listener handles it; listen for 'lost' or set onLost: 'emit' to handle it yourself`,
      );
      process.exit(70);
    }
  }

  private async watchReleases(waker: Waker): Promise<(() => Promise<void>) | undefined> {
    if (!this.persister.watch) return undefined;
    try {
      return await this.persister.watch(this.name, () => waker.notify());
    } catch (err) {
      this.reportError(toPersisterError(`Watching lock "${this.name}" for releases (falling back to polling)`, err));
      return undefined;
    }
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

function isPersister(value: unknown): value is Persister {
  if (value === null || typeof value !== 'object') return false;
  const p = value as Record<string, unknown>;
  return ['acquire', 'renew', 'release', 'inspect'].every((m) => typeof p[m] === 'function');
}


function sameHolder(a: LockInfo, b: LockInfo): boolean {
  return a.owner === b.owner && a.hostname === b.hostname && a.pid === b.pid && a.fencingToken === b.fencingToken;
}

/** "owner (pid 12 on host-a) since 2026-…" — for messages and the CLI. */
export function describeHolder(h: LockInfo): string {
  return `${h.owner} (pid ${h.pid} on ${h.hostname}, fencing token ${String(h.fencingToken)}, since ${h.acquiredAt.toISOString()})`;
}

function loggable(event: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(event)) {
    if (k === 'message' || k === 'name') continue;
    out[k] = typeof v === 'bigint' ? String(v) : v;
  }
  return out;
}
