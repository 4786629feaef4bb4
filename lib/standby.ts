import { sleep } from './abortable';
import { SingletonError } from './errors';
import { backoffMs } from './time';
import { trackWork, whenEnded } from './Lease';
import { KNOWN_OPTIONS, MAX_TTL_MS, MIN_TTL_MS, type SingletonOptions } from './options';
import type { Persister } from './persisters/Persister';
import { RedisPersister } from './persisters/RedisPersister';
import type { Cluster, Redis } from 'ioredis';
import { Singleton } from './Singleton';
import { checkKnownOptions, expected } from './validate';

/** Options of {@link standby}: the lock name plus any `Singleton` option. */
export interface StandbyOptions extends SingletonOptions {
  /** The lock name shared by every replica, or a function returning it (node-standby accepts one). */
  name: string | (() => string);
  /** node-standby's name for `ttlMs / 1000`. Give either, not two different values. */
  ttlSeconds?: number;
  /** node-standby's name for `retryIntervalMs / 1000`. Give either, not two different values. */
  pollingIntervalSeconds?: number;
}

/** The part of an ioredis client `standby()` recognises one by (node-standby took the client itself). */
function isRedisClient(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  const c = value as Record<string, unknown>;
  return typeof c.evalsha === 'function' && typeof c.duplicate === 'function' && typeof c.defineCommand === 'function';
}

/** The range of each node-standby alias, in ms (the option it stands for allows the same). */
const ALIAS_RANGE_MS = { ttlSeconds: [MIN_TTL_MS, MAX_TTL_MS], pollingIntervalSeconds: [1, MAX_TTL_MS] } as const;

/** A node-standby alias in seconds as the ms option it stands for, checked under its own name. */
function secondsAlias(options: StandbyOptions, alias: 'ttlSeconds' | 'pollingIntervalSeconds', target: 'ttlMs' | 'retryIntervalMs'): number | undefined {
  const seconds = options[alias];
  if (seconds === undefined) return options[target];
  const [min, max] = ALIAS_RANGE_MS[alias];
  const allowed = `a number of seconds from ${min / 1000} to ${max / 1000}`;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) throw new TypeError(expected(alias, allowed, seconds));
  const ms = Math.round(seconds * 1000);
  if (ms < min || ms > max) throw new RangeError(expected(alias, allowed, seconds));
  if (options[target] !== undefined && options[target] !== ms) {
    throw new RangeError(`Expected \`${alias}\` (${seconds}) and \`${target}\` (${options[target]}) to agree; give only one of them`);
  }
  return ms;
}

/** The names {@link StandbyOptions} allows: the lock name, node-standby's aliases, and every `Singleton` option. */
const STANDBY_OPTIONS: ReadonlySet<string> = new Set(['name', 'ttlSeconds', 'pollingIntervalSeconds', ...KNOWN_OPTIONS]);

/** The longest pause before a task that keeps failing is run again, ms (unless `retryIntervalMs` is longer). */
export const MAX_TASK_BACKOFF_MS = 30_000;

/**
 * Hot standby in one call (the node-standby use case): stands by, runs `task(signal)` once
 * when this instance becomes the active one, and keeps the lease (renewed) after `task()`
 * returns, until `release()` or process exit.
 *
 * - `signal` is the lease's: it aborts when the lease ends, which is how the task stops
 *   the work it started. Return a promise that settles when that work has stopped, and a
 *   shutdown (SIGTERM…) waits for it before handing the lock over.
 * - `release()` gives the lease up and stops standing by.
 * - A lost lease follows the `onLost` policy of any `Singleton`: with no `lost` listener
 *   of yours, the process logs and exits 70. If you listen for `lost` (or set
 *   `onLost: 'emit'`), the instance stands by again once the previous task's promise has
 *   settled, so an old and a new task never run side by side in one process.
 * - A task that throws (or whose promise rejects) is reported (`error`), its lease is
 *   released so a healthy replica can take over, and it is not run again before a backoff:
 *   `retryIntervalMs`, doubling with each failure in a row up to 30 s.
 *
 * `persister` may also be an ioredis client (wrapped in a `RedisPersister`), and the options
 * take node-standby's `ttlSeconds` and `pollingIntervalSeconds` as aliases, so node-standby's
 * `standby(redis, task, { name, ttlSeconds, pollingIntervalSeconds })` runs as it is.
 *
 * @example
 * ```ts
 * const s = standby(new RedisPersister(redis), (signal) => startConsumer({ signal }), { name: 'orders-consumer' });
 * s.on('conflict', ({ holder }) => console.log('standing by; active:', holder.owner));
 * ```
 */
export function standby(persister: Persister | Redis | Cluster, task: (signal: AbortSignal) => unknown, options: StandbyOptions): Singleton {
  if (typeof task !== 'function') throw new TypeError(expected('task', 'a function', task));
  if (options === null || typeof options !== 'object') throw new TypeError(expected('options', 'an object with a `name`', options));
  checkKnownOptions(options, STANDBY_OPTIONS);
  const { name, ttlSeconds: _t, pollingIntervalSeconds: _p, ...rest } = options;
  const singletonOptions: SingletonOptions = {
    ...rest,
    ttlMs: secondsAlias(options, 'ttlSeconds', 'ttlMs'),
    retryIntervalMs: secondsAlias(options, 'pollingIntervalSeconds', 'retryIntervalMs'),
  };
  for (const key of ['ttlMs', 'retryIntervalMs'] as const) if (singletonOptions[key] === undefined) delete singletonOptions[key];
  const lockName = typeof name === 'function' ? name() : name;
  const store = isRedisClient(persister) ? new RedisPersister(persister as Redis | Cluster) : (persister as Persister);
  const singleton = new Singleton(lockName, store, singletonOptions);
  void standByLoop(singleton, task);
  return singleton;
}

async function standByLoop(singleton: Singleton, task: (signal: AbortSignal) => unknown): Promise<void> {
  const stopped = singleton.releaseRequested;
  let failures = 0;
  while (!stopped.aborted) {
    let lease;
    try {
      lease = await singleton.acquire({ wait: true, signal: stopped });
    } catch (err) {
      if (stopped.aborted || isShutdown(err)) return;
      singleton.reportError(err as Error);
      continue;
    }
    if (!lease) continue;
    let running: Promise<unknown>;
    try {
      running = Promise.resolve(task(lease.signal));
    } catch (err) {
      running = Promise.reject(err);
    }
    trackWork(lease, running);
    const failed = await Promise.race([
      running.then(
        () => undefined,
        (err: unknown) => ({ err }),
      ),
      whenEnded(lease).then(() => undefined),
    ]);
    if (failed && !lease.ended) {
      failures += 1;
      singleton.reportError(failed.err instanceof Error ? failed.err : new Error(String(failed.err)));
      await lease.release().catch(() => undefined);
      const delayMs = backoffMs(failures - 1, singleton.retryIntervalMs, Math.max(singleton.retryIntervalMs, MAX_TASK_BACKOFF_MS));
      await sleep(delayMs, stopped).catch(() => undefined);
      continue;
    }
    if (!failed) failures = 0;
    await whenEnded(lease);
    // Lost (and the user handles it), released or shut down: the old task must have stopped
    // before a new one may start in this process.
    await running.catch(() => undefined);
  }
}

function isShutdown(err: unknown): boolean {
  return err instanceof SingletonError && err.code === 'SINGLETON_SHUTTING_DOWN';
}
