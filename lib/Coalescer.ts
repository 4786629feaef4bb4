import './polyfills';
import { decodeOutcome, encodeError, encodeValue, type Jsonified, type RunInfo } from './coalescer/outcome';
import { type OutcomeStore, outcomeStoreFor } from './coalescer/OutcomeStore';
import { abortError, LockLostError, SingletonError, timeoutError, toPersisterError } from './errors';
import { type Lease, trackWork } from './Lease';
import { raceAbort } from './abortable';
import { childLogger, getDefaultLogger, type Logger } from './logger';
import { threadDescriptorOf } from './keepAlive/descriptor';
import { MAX_TTL_MS, normalizeOptions, normalizeTtl, type SingletonOptions } from './options';
import type { LockInfo, OwnerInfo, Persister } from './persisters/Persister';
import { isPersister, notAPersister, Singleton } from './Singleton';
import { backoffMs, monotonicNow, newToken, withJitter } from './time';
import { checkInteger, checkKnownOptions, checkName, checkWaitLimits, expected } from './validate';
import { Waker } from './Waker';

/** Options of `new Coalescer(persister, options)`. Every one is optional. */
export interface CoalescerOptions extends Pick<SingletonOptions, 'keepAlive' | 'maxBlockMs'> {
  /**
   * Lease length of a run: renewed while `fn` runs; if the runner dies, a waiter takes
   * the work over this long after its last renewal.
   * @default 30000
   */
  ttlMs?: number;
  /**
   * How long a finished run's outcome (value or error) stays readable, so a caller that
   * arrives just after completion, or a waiter that missed the broadcast, gets it instead
   * of starting a second run.
   * @default 5000
   */
  resultTtlMs?: number;
  /**
   * Longest a run may take. After it, the run's signal aborts (a `SingletonError` with code
   * `SINGLETON_RUN_TIMEOUT`), every caller that joined the run gets that error, and the
   * lease is let go whether or not `fn` stopped, so a hung job never blocks its key.
   * @default 10 × ttlMs
   */
  maxRunMs?: number;
  /**
   * Upper bound between a waiter's checks (lease and stored outcome). Outcome broadcasts,
   * release notifications and the runner's known expiry usually wake it sooner. Must be
   * below `resultTtlMs`, so a waiter always sees a stored outcome before it expires.
   * @default min(1000, resultTtlMs / 4)
   */
  retryIntervalMs?: number;
  /**
   * Human-readable identity of this process, shown to the others as the runner.
   * @default `${hostname}:${pid}`
   */
  owner?: string;
  /**
   * While this process runs `fn` under a lease: release it on SIGINT, SIGTERM, SIGHUP (or
   * the signals listed), then exit as the signal would have, so a waiter takes over at
   * once. Waiting callers hold nothing and install nothing.
   * @default true
   */
  handleSignals?: boolean | readonly NodeJS.Signals[];
  /**
   * While this process runs `fn` under a lease: on `uncaughtException` /
   * `unhandledRejection`, release, print the error, exit 1.
   * @default true
   */
  handleErrors?: boolean;
  /**
   * Longest wait for releases during a signal-driven shutdown.
   * @default 5000
   */
  shutdownTimeoutMs?: number;
  /**
   * Any pino-compatible logger.
   * @default pino on stderr, level from SINGLETON_LOG_LEVEL or 'warn'
   */
  logger?: Logger;
  /**
   * Where outcomes are kept and broadcast. Built from the persister when left out
   * (RedisPersister, FilePersister, MemoryPersister); required for any other persister.
   * A store passed in here is not closed by `close()`.
   */
  outcomes?: OutcomeStore;
}

/** Options of {@link Coalescer.run}: limits for this caller only. */
export interface CoalesceOptions {
  /** Stop waiting when this signal aborts (rejects with an `AbortError`). The run itself goes on for the others. */
  signal?: AbortSignal;
  /** Stop waiting after this many ms (rejects with a `TimeoutError`). The run itself goes on for the others. */
  timeoutMs?: number;
}

/** The defaults of {@link CoalescerOptions}, frozen. */
export const COALESCER_DEFAULTS = Object.freeze({
  /** Lease length of a run. */
  ttlMs: 30_000,
  /** How long an outcome stays readable. */
  resultTtlMs: 5_000,
  /** `maxRunMs` defaults to this many lease lengths. */
  maxRunTtls: 10,
  /** `retryIntervalMs` defaults to the smaller of this and `resultTtlMs / 4`. */
  maxRetryIntervalMs: 1_000,
});

const KNOWN_OPTIONS = new Set([
  'ttlMs',
  'maxRunMs',
  'resultTtlMs',
  'retryIntervalMs',
  'owner',
  'handleSignals',
  'handleErrors',
  'shutdownTimeoutMs',
  'logger',
  'outcomes',
  'keepAlive', // issue 11: runs renewed from the keep-alive thread
  'maxBlockMs',
]);

/** One key's work in this process, shared by every local caller (the singleflight). */
interface Flight {
  readonly key: string;
  /** Resolves the outcome envelope (JSON); rejects with a library error (store, lost lease, close). */
  promise: Promise<string>;
  /** Ends the waiting phase: every local caller left, or `close()`. */
  readonly stop: AbortController;
  /** The signal handed to `fn` while this process runs it. */
  running: AbortController | undefined;
  callers: number;
  settled: boolean;
}

/**
 * Coalesces identical work across processes (DESIGN.md §2): every caller, in any process,
 * that asks for the same key while a run is in flight gets that run's outcome instead of
 * starting its own.
 *
 * - In one process, concurrent callers of a key share one flight without touching the store.
 * - Across processes, one caller takes the key's lease (a {@link Singleton} named after
 *   the key, renewed while `fn` runs) and runs `fn(signal)`; the others wait for that run.
 * - The runner stores the outcome for `resultTtlMs` before it releases the lease, and
 *   broadcasts it where the store can (Redis pub/sub, one channel per key); stores without
 *   notifications are polled.
 * - Values travel as JSON, for local callers too; errors as their name, message, code,
 *   JSON-safe own properties and stack, rebuilt as a {@link CoalescedError}.
 * - A caller gets the outcome of the run it joined (by the run's fencing token); a caller
 *   arriving after a run completed starts a fresh one: no stale results, no re-runs.
 * - If the runner dies, its lease expires and exactly one waiter runs `fn` instead.
 *
 * Keys share the lock namespace of the persister: a key is also the lease's lock name.
 *
 * @example
 * ```ts
 * const coalescer = new Coalescer(new RedisPersister(redis), { ttlMs: 30_000, resultTtlMs: 5_000 });
 * const report = await coalescer.run('report:2026-11', async (signal) => buildReport({ signal }));
 * ```
 */
export class Coalescer {
  /** The store of the leases. */
  readonly persister: Persister;
  /** Lease length of a run, ms. */
  readonly ttlMs: number;
  /** How long an outcome stays readable after its run, ms. */
  readonly resultTtlMs: number;
  /** Longest a run may take, ms. */
  readonly maxRunMs: number;
  /** Upper bound between a waiter's checks, ms. */
  readonly retryIntervalMs: number;
  /** This process's identity as a runner. */
  readonly owner: string;

  private readonly outcomes: OutcomeStore;
  private readonly ownsOutcomes: boolean;
  private readonly singletonOptions: SingletonOptions;
  private readonly ownerInfo: OwnerInfo;
  private readonly log: Logger;
  private readonly flights = new Map<string, Flight>();
  private readonly sweeps = new Map<string, NodeJS.Timeout>();
  private readonly background = new Set<Promise<unknown>>();
  private closing: Promise<void> | undefined;

  /**
   * @param persister the store of the leases: a `RedisPersister`, `FilePersister` or
   *   `MemoryPersister`, or any persister together with `options.outcomes`.
   * @param options see {@link CoalescerOptions}; every bad value throws here.
   * @throws TypeError / RangeError naming the bad value; TypeError for a persister whose
   *   outcomes the Coalescer cannot keep (pass `outcomes` then).
   */
  constructor(persister: Persister, options: CoalescerOptions = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError(expected('options', 'an object or undefined', options));
    checkKnownOptions(options, KNOWN_OPTIONS);
    if (!isPersister(persister)) throw notAPersister('a Persister (acquire, renew, release, inspect)', persister);
    if (persister.capabilities?.fencing !== true) {
      // A waiter knows the run it joined, and its outcome, by the runner's fencing token.
      throw new TypeError(
        'The Coalescer needs a persister with fencing tokens (capabilities.fencing), to tell the run a caller joined from a later one; this one has none (a seed-style callback persister?). Use RedisPersister, PostgresPersister, MongoPersister, FilePersister or MemoryPersister',
      );
    }
    this.persister = persister;
    this.ttlMs = normalizeTtl({ ttlMs: options.ttlMs ?? COALESCER_DEFAULTS.ttlMs });
    this.maxRunMs =
      options.maxRunMs === undefined
        ? this.ttlMs * COALESCER_DEFAULTS.maxRunTtls
        : checkInteger('maxRunMs', options.maxRunMs, 1, Number.MAX_SAFE_INTEGER);
    this.resultTtlMs =
      options.resultTtlMs === undefined ? COALESCER_DEFAULTS.resultTtlMs : checkInteger('resultTtlMs', options.resultTtlMs, 2, MAX_TTL_MS);
    this.retryIntervalMs =
      options.retryIntervalMs === undefined
        ? Math.max(1, Math.min(COALESCER_DEFAULTS.maxRetryIntervalMs, Math.floor(this.resultTtlMs / 4)))
        : checkInteger('retryIntervalMs', options.retryIntervalMs, 1, this.resultTtlMs - 1);
    const logger = options.logger ?? getDefaultLogger();
    this.singletonOptions = {
      ttlMs: this.ttlMs,
      retryIntervalMs: this.retryIntervalMs,
      owner: options.owner,
      handleSignals: options.handleSignals,
      handleErrors: options.handleErrors,
      shutdownTimeoutMs: options.shutdownTimeoutMs,
      keepAlive: options.keepAlive, // issue 11
      maxBlockMs: options.maxBlockMs,
      // A lost lease aborts `fn`'s signal; it never exits the process.
      onLost: 'emit',
      logger,
    };
    const normalized = normalizeOptions(this.singletonOptions); // checks owner, signals, logger… now
    if (normalized.keepAlive === 'thread') threadDescriptorOf(persister); // issue 11: refuses, now, a store no other thread can reach
    this.owner = normalized.owner;
    this.ownerInfo = { owner: normalized.owner, hostname: normalized.hostname, pid: normalized.pid };
    this.log = childLogger(normalized.logger, { coalescer: this.owner });
    if (options.outcomes !== undefined) {
      if (!isOutcomeStore(options.outcomes)) {
        throw new TypeError(expected('outcomes', 'an OutcomeStore (put, get)', options.outcomes));
      }
      this.outcomes = options.outcomes;
      this.ownsOutcomes = false;
    } else {
      const { store, owned } = outcomeStoreFor(persister);
      this.outcomes = store;
      this.ownsOutcomes = owned;
    }
  }

  /**
   * Runs `fn` once for every caller, in any process, that asks for `key` while a run is
   * in flight, and resolves the same value for all of them. A caller gets the outcome of
   * the run it joined; one that arrives after a run completed starts a fresh run.
   *
   * - The value goes through JSON for every caller, this process's included: a `Date`
   *   becomes its ISO string; `undefined` stays `undefined`; a value JSON cannot carry
   *   (BigInt, circular) rejects every caller with a `SingletonError`
   *   (`SINGLETON_NOT_SERIALIZABLE`).
   * - If `fn` throws, every caller rejects with a {@link CoalescedError} carrying its
   *   `name`, `message`, `code`, its other JSON-safe own properties and its stack. Errors
   *   are stored for `resultTtlMs` like values, for the callers that joined the run.
   * - A run longer than `maxRunMs` is cut off: its callers reject with a `SingletonError`
   *   (`SINGLETON_RUN_TIMEOUT`, rebuilt as a {@link CoalescedError} elsewhere).
   * - `fn(signal)`: `signal` aborts (with a `LockLostError`) if the run's lease is lost, or
   *   when `close()` is called. The outcome of such a run is not shared: this process's
   *   callers reject with that reason and the next holder runs the work.
   * - A store error rejects with a `PersisterError`; `fn` does not run then. Waiting
   *   callers retry transient errors for up to `ttlMs` before giving up.
   * - `fn` is the first local caller's; later callers' `fn` is not called while they join.
   *
   * @param key what identifies the work: 1..200 printable characters; also the lock name.
   * @param fn the work; resolves a JSON value.
   * @param options limits for this caller only (`signal`, `timeoutMs`).
   * @example
   * ```ts
   * const coalescer = new Coalescer(new RedisPersister(redis), { resultTtlMs: 5_000 });
   * // Called at once from many processes: buildReport runs once, everyone gets its result.
   * const report = await coalescer.run('report:2026-11', async (signal) => {
   *   const rows = await db.query('select …', { signal });
   *   return { rows, builtAt: new Date() }; // builtAt arrives as an ISO string, everywhere
   * });
   * ```
   */
  async run<T>(
    key: string,
    fn: (signal: AbortSignal) => T | Promise<T>,
    options: CoalesceOptions = {},
  ): Promise<Jsonified<T>> {
    checkName(key, 'key');
    if (typeof fn !== 'function') throw new TypeError(expected('fn', 'a function', fn));
    const { signal, timeoutMs } = checkWaitLimits(options);
    if (this.closing) throw closedError();
    if (signal?.aborted) throw abortError(signal.reason);
    let flight = this.flights.get(key);
    if (!flight) flight = this.startFlight(key, fn as (signal: AbortSignal) => unknown);
    const outcome = await this.follow(flight, signal, timeoutMs);
    const decoded = decodeOutcome(key, outcome);
    if (!decoded.ok) throw decoded.error;
    return decoded.value as Jsonified<T>;
  }

  /**
   * Stops: new `run` calls reject; waiting callers reject with a `SingletonError`
   * (`SINGLETON_SHUTTING_DOWN`); runs in progress here see their signal abort, and `close`
   * waits until they released their lease. Then it ends the outcome subscriptions. It
   * never closes the persister (or an `outcomes` store passed in).
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** Closes, so `await using coalescer = new Coalescer(...)` cleans up at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ——— internals ————————————————————————————————————————————————

  private startFlight(key: string, fn: (signal: AbortSignal) => unknown): Flight {
    const flight: Flight = {
      key,
      promise: Promise.resolve(''),
      stop: new AbortController(),
      running: undefined,
      callers: 0,
      settled: false,
    };
    flight.promise = this.fly(flight, fn).finally(() => {
      flight.settled = true;
      if (this.flights.get(key) === flight) this.flights.delete(key);
    });
    flight.promise.catch(noop); // a flight every caller left may still fail: nobody is waiting for that
    this.flights.set(key, flight);
    return flight;
  }

  /** One caller's view of a flight, with its own signal and timeout. */
  private follow(flight: Flight, signal: AbortSignal | undefined, timeoutMs: number | undefined): Promise<string> {
    flight.callers += 1;
    return new Promise<string>((resolve, reject) => {
      let left = false;
      let timer: NodeJS.Timeout | undefined;
      const leave = () => {
        if (left) return;
        left = true;
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.leave(flight);
      };
      const onAbort = () => {
        leave();
        reject(abortError(signal?.reason));
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          leave();
          reject(timeoutError(`Timed out after ${timeoutMs} ms waiting for the outcome of "${flight.key}"`));
        }, timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      flight.promise.then(
        (outcome) => {
          leave();
          resolve(outcome);
        },
        (error: unknown) => {
          leave();
          reject(error);
        },
      );
    });
  }

  /** A caller left; when the last one leaves a flight that only waits, the waiting stops. */
  private leave(flight: Flight): void {
    flight.callers -= 1;
    if (flight.callers > 0 || flight.settled || flight.running) return;
    flight.stop.abort(abortError());
    if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
  }

  /**
   * The cross-process part. A caller that finds the key free runs `fn` (a fresh run, even
   * if an earlier run's outcome is still stored); one that finds a run in flight joins that
   * run (remembered by its lease's fencing token) and gets its outcome, or that of a run
   * that began after it (one that took the work over when it died): from the
   * broadcast, from the store (read after the runner released), or, if the runner died and
   * no outcome was left, by taking the work over. Waiters wake on the outcome broadcast,
   * the release notification, the holder's known expiry, and at the latest every
   * `retryIntervalMs`.
   */
  private async fly(flight: Flight, fn: (signal: AbortSignal) => unknown): Promise<string> {
    const { key } = flight;
    const log = childLogger(this.log, { key });
    const singleton = new Singleton(key, this.persister, this.singletonOptions);
    // Lock attempts throw their store errors to us; renewal errors only need a log line.
    singleton.on('error', (err) => log.warn({ err }, err.message));
    const waker = new Waker();
    const broadcasts = new Map<string, string>();
    let joined: string | undefined;
    const [unsubscribe, unwatch] = await Promise.all([
      this.subscribe(key, log, (outcome) => {
        broadcasts.set(fenceOf(outcome), outcome);
        waker.notify();
      }),
      this.watchReleases(key, log, () => waker.notify()),
    ]);
    let failingSince: number | undefined;
    let failures = 0;
    /** The outcome of the run this flight joined, if it is known by now. */
    const joinedOutcome = async (): Promise<string | null> => {
      if (joined === undefined) return null;
      return heardOf(joined) ?? this.readRun(key, joined);
    };
    /** A broadcast outcome of the joined run, or of a run that took its work over after it. */
    const heardOf = (fence: string): string | null => {
      for (const [f, outcome] of broadcasts) if (notBefore(f, fence)) return outcome;
      return null;
    };
    try {
      for (;;) {
        flight.stop.signal.throwIfAborted();
        waker.clearPending();
        const heard = joined === undefined ? null : heardOf(joined);
        if (heard !== null) return heard;
        let delayMs: number;
        try {
          const lease = await singleton.acquire();
          if (lease) {
            // The run we joined may have finished just before this lease: its outcome wins.
            const finished = await joinedOutcome().catch(async (err: unknown) => {
              await lease.release().catch(noop);
              throw err;
            });
            if (finished !== null) {
              await lease.release().catch(noop);
              log.debug({}, `"${key}": the run this caller joined finished; not running it again`);
              return finished;
            }
            return await this.runHolding(flight, lease, fn, log);
          }
          const holderFence = String(singleton.holder?.fencingToken ?? '');
          if (joined !== undefined && holderFence !== joined) {
            // Another run began: either ours finished first (its outcome is stored), or our
            // runner died and someone took the work over (we join that run instead).
            const finished = await joinedOutcome();
            if (finished !== null) return finished;
          }
          joined = holderFence;
          if (!this.outcomes.subscribe) {
            const finished = await joinedOutcome();
            if (finished !== null) return finished;
          }
          failingSince = undefined;
          failures = 0;
          delayMs = this.delayUntilNextCheck(singleton.holder);
        } catch (err) {
          // The first attempt fails fast; a waiter rides out a store outage for up to one lease,
          // after which any runner has given its lease up too.
          if (!isStoreError(err) || joined === undefined) throw err;
          failingSince ??= monotonicNow();
          if (monotonicNow() - failingSince >= this.ttlMs) throw err;
          failures += 1;
          log.warn({ err, failures }, `store error while waiting for "${key}"; retrying`);
          delayMs = withJitter(backoffMs(failures, 50, this.retryIntervalMs), 0.5);
        }
        await waker.sleep(delayMs, flight.stop.signal);
      }
    } finally {
      waker.dispose();
      this.track(unsubscribe?.());
      this.track(unwatch?.());
    }
  }

  /**
   * Holding the lease: run `fn`, store the outcome, release. `fn`'s signal aborts when the
   * lease ends (lost, or the process hooks hand it over: they wait for `fn` first), on
   * `close()`, or after `maxRunMs`. On a loss, `close()` or `maxRunMs` the callers are
   * answered without waiting for `fn` (a loss: they reject with its `LockLostError`, and the
   * next caller starts a fresh run), so none of them blocks on a job that ignores its signal.
   */
  private async runHolding(flight: Flight, lease: Lease, fn: (signal: AbortSignal) => unknown, log: Logger): Promise<string> {
    const { key } = flight;
    const closed = new AbortController();
    const overdue = new AbortController();
    const timer = setTimeout(() => overdue.abort(runTimeoutError(key, this.maxRunMs)), this.maxRunMs);
    timer.unref();
    // A loss (not the shutdown, whose hooks wait for fn) answers the callers at once too.
    const lostHere = new AbortController();
    const onLeaseEnd = () => {
      const reason: unknown = lease.signal.reason;
      if (!(reason instanceof LockLostError && reason.reason === 'shutdown')) lostHere.abort(reason);
    };
    if (lease.signal.aborted) onLeaseEnd();
    else lease.signal.addEventListener('abort', onLeaseEnd, { once: true });
    const cutOff = AbortSignal.any([closed.signal, overdue.signal]);
    const signal = AbortSignal.any([lease.signal, cutOff]);
    flight.running = closed;
    try {
      flight.stop.signal.throwIfAborted(); // every caller left (or close()) while the lease was being taken
      const run = (): RunInfo => ({
        key,
        owner: this.owner,
        fencingToken: String(lease.fencingToken ?? ''),
        finishedAt: new Date().toISOString(),
      });
      log.debug({ fencingToken: String(lease.fencingToken) }, `running "${key}"`);
      const work = (async () => fn(signal))();
      trackWork(lease, work);
      let outcome: string;
      try {
        outcome = encodeValue(await raceAbort(work, AbortSignal.any([cutOff, lostHere.signal])), run());
      } catch (err) {
        if (closed.signal.aborted) throw closed.signal.reason;
        if (lostHere.signal.aborted) throw lostHere.signal.reason;
        if (overdue.signal.aborted) log.error({ maxRunMs: this.maxRunMs }, `the run of "${key}" exceeded maxRunMs; letting its lease go`);
        else log.debug({ err }, `the run of "${key}" failed; sharing its error`);
        outcome = encodeError(overdue.signal.aborted ? overdue.signal.reason : err, run());
      }
      // Lease ended: another holder may be running it; this outcome is not shared.
      lease.signal.throwIfAborted();
      try {
        await this.outcomes.put(key, outcome, this.resultTtlMs);
        this.scheduleSweep(key);
      } catch (err) {
        // This process's callers still get the outcome; elsewhere a waiter will run it again.
        log.error({ err }, `could not store the outcome of "${key}"; waiters elsewhere will run it again`);
      }
      return outcome;
    } finally {
      clearTimeout(timer);
      lease.signal.removeEventListener('abort', onLeaseEnd);
      flight.running = undefined;
      await lease.release().catch((err: unknown) => log.warn({ err }, `releasing "${key}" failed; its lease will expire`));
    }
  }

  /**
   * The stored outcome of `key` if it comes from the run with fencing token `fence`, or from
   * a later run (one that took the work over after that run died, or began after it).
   */
  private async readRun(key: string, fence: string): Promise<string | null> {
    const stored = await this.read(key);
    return stored !== null && notBefore(fenceOf(stored), fence) ? stored : null;
  }

  private async read(key: string): Promise<string | null> {
    try {
      return await this.outcomes.get(key);
    } catch (err) {
      throw toPersisterError(`Reading the outcome of "${key}"`, err);
    }
  }

  private async subscribe(
    key: string,
    log: Logger,
    onOutcome: (outcome: string) => void,
  ): Promise<(() => Promise<void>) | undefined> {
    if (!this.outcomes.subscribe) return undefined;
    try {
      return await this.outcomes.subscribe(key, onOutcome);
    } catch (err) {
      log.warn({ err }, `could not subscribe to the outcome of "${key}"; polling instead`);
      return undefined;
    }
  }

  private async watchReleases(key: string, log: Logger, onRelease: () => void): Promise<(() => Promise<void>) | undefined> {
    if (!this.persister.watch) return undefined;
    try {
      return await this.persister.watch(key, onRelease);
    } catch (err) {
      log.debug({ err }, `could not watch "${key}" for releases; polling instead`);
      return undefined;
    }
  }

  /** At the holder's known expiry (a dead runner's lease runs out then), at the latest after `retryIntervalMs`. */
  private delayUntilNextCheck(holder: LockInfo | undefined): number {
    const retry = withJitter(this.retryIntervalMs * 0.8, 0.25);
    if (!holder) return retry;
    const untilExpiry = holder.expiresAt.getTime() - Date.now();
    return Math.min(retry, withJitter(Math.max(1, untilExpiry + 2), 0.2));
  }

  /**
   * Stores that do not expire entries by themselves get the outcome removed once it
   * expired, under the key's lease so that no run writes meanwhile. Best effort: a
   * process that exits first leaves the expired file to the next run of the key.
   */
  private scheduleSweep(key: string): void {
    if (!this.outcomes.sweep) return;
    const previous = this.sweeps.get(key);
    if (previous) clearTimeout(previous);
    const timer = setTimeout(() => {
      this.sweeps.delete(key);
      this.track(this.sweep(key));
    }, this.resultTtlMs + 20);
    timer.unref();
    this.sweeps.set(key, timer);
  }

  private async sweep(key: string): Promise<void> {
    if (this.closing || this.flights.has(key) || !this.outcomes.sweep) return;
    const token = newToken();
    try {
      const got = await this.persister.acquire({ name: key, token, ttlMs: this.ttlMs, owner: this.ownerInfo });
      if (!got.acquired) return; // a run holds it; it replaces the outcome anyway
      try {
        await this.outcomes.sweep(key);
      } finally {
        await this.persister.release({ name: key, token });
      }
    } catch (err) {
      this.log.debug({ err, key }, `could not remove the expired outcome of "${key}"`);
    }
  }

  private track(promise: Promise<unknown> | undefined): void {
    if (!promise) return;
    const settled = promise.catch(noop);
    this.background.add(settled);
    void settled.finally(() => this.background.delete(settled));
  }

  private async shutdown(): Promise<void> {
    const reason = closedError();
    const flights = [...this.flights.values()];
    for (const flight of flights) {
      flight.stop.abort(reason);
      flight.running?.abort(reason);
    }
    await Promise.allSettled(flights.map((f) => f.promise));
    for (const timer of this.sweeps.values()) clearTimeout(timer);
    this.sweeps.clear();
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
    if (this.ownsOutcomes) await this.outcomes.close?.();
  }
}

/**
 * Whether a run with fencing token `fence` is the run `joined` or a later one (fences
 * strictly increase per name). Without fences (a store that does not fence) only the same
 * token matches.
 */
function notBefore(fence: string, joined: string): boolean {
  if (fence === joined) return true;
  if (!/^\d+$/.test(fence) || !/^\d+$/.test(joined)) return false;
  return BigInt(fence) > BigInt(joined);
}

/** The fencing token of the run an outcome envelope came from ('' when unreadable). */
function fenceOf(outcome: string): string {
  try {
    return String((JSON.parse(outcome) as { run?: { fencingToken?: unknown } }).run?.fencingToken ?? '');
  } catch {
    return '';
  }
}

function runTimeoutError(key: string, maxRunMs: number): SingletonError {
  return new SingletonError(
    'SINGLETON_RUN_TIMEOUT',
    `The coalesced run of "${key}" took longer than maxRunMs (${maxRunMs} ms): it was cut off and its lease let go. Make the work stop on its signal, or raise maxRunMs.`,
  );
}

function closedError(): SingletonError {
  return new SingletonError('SINGLETON_SHUTTING_DOWN', 'The Coalescer was closed; create a new one to run more work.');
}

function isStoreError(err: unknown): boolean {
  return err instanceof SingletonError && err.code === 'SINGLETON_PERSISTER';
}


function isOutcomeStore(value: unknown): value is OutcomeStore {
  if (value === null || typeof value !== 'object') return false;
  const s = value as Record<string, unknown>;
  return typeof s.put === 'function' && typeof s.get === 'function';
}


function noop(): void {}
