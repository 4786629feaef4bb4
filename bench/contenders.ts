/**
 * Every contender behind the same small shape, so a scenario is written once:
 *
 * - `acquire(name)`: one attempt; the lock, or `null` when someone else holds it;
 * - `waitFor(name, { signal, onWaiting })`: wait with the contender's OWN waiting
 *   mechanism at its defaults (ours: `waitForLock` in line: the release hands the lease to the first waiter over pub/sub;
 *   redis-semaphore: `Mutex.acquire`, polling every 10 ms; node-redlock:
 *   `acquire` retrying every 200 ± 100 ms);
 * - `hold(name)`: take it and keep it alive with the contender's own renewal
 *   (ours: the lease keeper; redis-semaphore: its refresh interval; node-redlock:
 *   `using()` with automatic extension), for the crash-takeover fixture.
 *
 * Ours is loaded from the JavaScript the TypeScript compiler makes of lib/ (see
 * {@link library}), as users run it from dist/.
 *
 * Each contender gets its own ioredis connection, as separate processes would.
 * The only non-default settings are the ones that make the comparison equal:
 * the same lease length for all (`ttlMs`), and callbacks that record a lost
 * lock instead of crashing or exiting the benchmark.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type Redis from 'ioredis';
import pino from 'pino';
import { Mutex, TimeoutError as SemaphoreTimeoutError } from 'redis-semaphore';
import Redlock, { ExecutionError, type Lock as RedlockLock } from 'redlock';
import type * as PersisterModule from '../lib/persisters/RedisPersister';
import type { RedisPersister } from '../lib/persisters/RedisPersister';
import type * as KeepAliveModule from '../lib/keepAlive/KeepAliveThread';
import type * as SingletonModule from '../lib/Singleton';
import type { Singleton } from '../lib/Singleton';

/** Where bench/index.ts put the compiled library (inherited by the fixtures). */
export const LIB_ENV = 'SINGLETON_BENCH_LIB';

/**
 * Our library as users run it: the CommonJS that TypeScript makes of lib/
 * (bench/index.ts transpiles it into bench/results/lib and names the folder
 * in `SINGLETON_BENCH_LIB`). Without that variable (a fixture run by hand,
 * or `--source`), lib/ itself through tsx — which adds esbuild's `__name`
 * helper to every function it defines, a cost users do not pay.
 */
export function library(): {
  Singleton: typeof SingletonModule.Singleton;
  RedisPersister: typeof PersisterModule.RedisPersister;
  keepAliveThread: typeof KeepAliveModule.keepAliveThread;
} {
  const dir = process.env[LIB_ENV];
  /* eslint-disable @typescript-eslint/no-require-imports */
  const singleton = (dir ? require(join(dir, 'Singleton.js')) : require('../lib/Singleton')) as typeof SingletonModule;
  const persister = (dir ? require(join(dir, 'persisters', 'RedisPersister.js')) : require('../lib/persisters/RedisPersister')) as typeof PersisterModule;
  const keepAlive = (dir ? require(join(dir, 'keepAlive', 'KeepAliveThread.js')) : require('../lib/keepAlive/KeepAliveThread')) as typeof KeepAliveModule;
  /* eslint-enable @typescript-eslint/no-require-imports */
  return { Singleton: singleton.Singleton, RedisPersister: persister.RedisPersister, keepAliveThread: keepAlive.keepAliveThread };
}

/** Who competes. `persister` and `raw` only take part in the throughput scenario (they have no waiting of their own). */
export type ContenderId = 'singleton' | 'singleton-thread' | 'persister' | 'redis-semaphore' | 'redlock' | 'raw';

/** Human labels for the table. */
export const LABELS: Readonly<Record<ContenderId, string>> = Object.freeze({
  singleton: 'ours: Singleton',
  'singleton-thread': "ours: Singleton, keepAlive 'thread'",
  persister: 'ours: RedisPersister',
  'redis-semaphore': 'redis-semaphore Mutex',
  redlock: 'node-redlock',
  raw: 'raw floor (SET NX PX + EVALSHA)',
});

/** A held lock. */
export interface Held {
  release(): Promise<void>;
}

/** How to wait. */
export interface WaitForOptions {
  /** Stop waiting (the returned promise rejects). Contenders without abort support finish their current wait. */
  signal?: AbortSignal;
  /** Called once the waiter is known to be waiting (ours: after its first `conflict`; peers: after their first attempt was sent). */
  onWaiting?: () => void;
}

/** One contender on its own connection. */
export interface Contender {
  readonly id: ContenderId;
  readonly label: string;
  /** The Redis key its lease of `name` lives at (for PTTL). */
  key(name: string): string;
  acquire(name: string): Promise<Held | null>;
  waitFor(name: string, options?: WaitForOptions): Promise<Held>;
  hold(name: string): Promise<Held>;
  /** Forgets per-name state kept for waiting (ours keeps one Singleton per name). */
  forget?(name: string): void;
  /** Locks this contender found lost (should stay 0). */
  readonly lost: number;
  close(): Promise<void>;
}

/** Settings shared by every contender of one scenario. */
export interface ContenderSettings {
  /** Lease length, equal for all. */
  ttlMs: number;
}

/** The silent logger the brief asks for: the benchmark measures locking, not log I/O. */
const silentLogger = pino({ level: 'silent' });
let loaded: ReturnType<typeof library> | undefined;
/** {@link library}, loaded on first use (after bench/index.ts has compiled it). */
function lib(): ReturnType<typeof library> {
  loaded ??= library();
  return loaded;
}

/** Builds contender `id` on `redis` (a connection it may use alone). */
export function createContender(id: ContenderId, redis: Redis, settings: ContenderSettings): Contender {
  switch (id) {
    case 'singleton':
      return new OursSingleton(redis, settings);
    case 'singleton-thread':
      return new OursSingleton(redis, settings, 'thread');
    case 'persister':
      return new OursPersister(redis, settings);
    case 'redis-semaphore':
      return new SemaphoreContender(redis, settings);
    case 'redlock':
      return new RedlockContender(redis, settings);
    case 'raw':
      return new RawFloor(redis, settings);
  }
}

function token(): string {
  return randomBytes(16).toString('hex');
}

function notSupported(id: ContenderId, what: string): never {
  throw new Error(`${id} has no ${what} of its own; it only takes part in the throughput scenario`);
}

class OursSingleton implements Contender {
  readonly id: 'singleton' | 'singleton-thread';
  readonly label: string;
  lost = 0;
  private readonly persister: RedisPersister;
  /** One Singleton per name for waiting (a Singleton can lock again after `released`). */
  private readonly waiters = new Map<string, Singleton>();

  constructor(
    redis: Redis,
    private readonly settings: ContenderSettings,
    /** Where held leases are renewed (the crash scenario's "thread mode" row). */
    private readonly keepAlive: 'loop' | 'thread' = 'loop',
  ) {
    this.id = keepAlive === 'thread' ? 'singleton-thread' : 'singleton';
    this.label = LABELS[this.id];
    this.persister = new (lib().RedisPersister)(redis);
  }

  key(name: string): string {
    return `${this.persister.keyPrefix}{${name}}`;
  }

  private create(name: string): Singleton {
    const singleton = new (lib().Singleton)(name, this.persister, {
      ttlMs: this.settings.ttlMs,
      handleSignals: false,
      handleErrors: false,
      logger: silentLogger,
      keepAlive: this.keepAlive,
    });
    singleton.on('lost', () => {
      this.lost += 1;
    });
    singleton.on('error', () => undefined); // store errors would show as failed operations
    return singleton;
  }

  async acquire(name: string): Promise<Held | null> {
    const singleton = this.create(name);
    return (await singleton.lock()) ? { release: () => singleton.release() } : null;
  }

  async waitFor(name: string, { signal, onWaiting }: WaitForOptions = {}): Promise<Held> {
    let singleton = this.waiters.get(name);
    if (!singleton) {
      singleton = this.create(name);
      this.waiters.set(name, singleton);
    }
    const s = singleton;
    const onConflict = () => onWaiting?.();
    if (onWaiting) s.once('conflict', onConflict);
    try {
      await s.waitForLock({ signal });
    } finally {
      s.off('conflict', onConflict);
    }
    return {
      release: async () => {
        await s.release();
      },
    };
  }

  async hold(name: string): Promise<Held> {
    const held = await this.waitFor(name);
    // Thread mode: held once the keep-alive thread renews it (it starts with the first lease).
    await lib().keepAliveThread().whenReady();
    return held;
  }

  /** Drops the cached waiter of `name` (after a scenario is done with that name). */
  forget(name: string): void {
    this.waiters.delete(name);
  }

  async close(): Promise<void> {
    await Promise.all([...this.waiters.values()].map((s) => s.release().catch(() => undefined)));
    this.waiters.clear();
    await this.persister.close();
  }
}

class OursPersister implements Contender {
  readonly id = 'persister' as const;
  readonly label = LABELS.persister;
  readonly lost = 0;
  private readonly persister: RedisPersister;
  private readonly owner = { owner: `${hostname()}:${process.pid}`, hostname: hostname(), pid: process.pid };

  constructor(
    redis: Redis,
    private readonly settings: ContenderSettings,
  ) {
    this.persister = new (lib().RedisPersister)(redis);
  }

  key(name: string): string {
    return `${this.persister.keyPrefix}{${name}}`;
  }

  async acquire(name: string): Promise<Held | null> {
    const t = token();
    const result = await this.persister.acquire({ name, token: t, ttlMs: this.settings.ttlMs, owner: this.owner });
    if (!result.acquired) return null;
    return {
      release: async () => {
        await this.persister.release({ name, token: t });
      },
    };
  }

  waitFor(): Promise<Held> {
    return notSupported(this.id, 'waiting');
  }

  hold(): Promise<Held> {
    return notSupported(this.id, 'renewal');
  }

  async close(): Promise<void> {
    await this.persister.close();
  }
}

class SemaphoreContender implements Contender {
  readonly id = 'redis-semaphore' as const;
  readonly label = LABELS['redis-semaphore'];
  lost = 0;

  constructor(
    private readonly redis: Redis,
    private readonly settings: ContenderSettings,
  ) {}

  key(name: string): string {
    return `mutex:${name}`;
  }

  private mutex(name: string, attempts?: number): Mutex {
    return new Mutex(this.redis, name, {
      lockTimeout: this.settings.ttlMs,
      ...(attempts === undefined ? {} : { acquireAttemptsLimit: attempts }),
      // Its default throws from a timer (crashing the benchmark); count instead.
      onLockLost: () => {
        this.lost += 1;
      },
    });
  }

  async acquire(name: string): Promise<Held | null> {
    const mutex = this.mutex(name, 1);
    return (await mutex.tryAcquire()) ? { release: () => mutex.release() } : null;
  }

  async waitFor(name: string, { signal, onWaiting }: WaitForOptions = {}): Promise<Held> {
    const mutex = this.mutex(name);
    queueMicrotask(() => onWaiting?.());
    for (;;) {
      try {
        await mutex.acquire(signal); // polls every retryInterval (10 ms) until acquireTimeout (10 s)
        return { release: () => mutex.release() };
      } catch (error) {
        if (!(error instanceof SemaphoreTimeoutError)) throw error; // abort
      }
    }
  }

  hold(name: string): Promise<Held> {
    return this.waitFor(name);
  }

  async close(): Promise<void> {}
}

class RedlockContender implements Contender {
  readonly id = 'redlock' as const;
  readonly label = LABELS.redlock;
  lost = 0;
  private readonly redlock: Redlock;

  constructor(
    redis: Redis,
    private readonly settings: ContenderSettings,
  ) {
    this.redlock = new Redlock([redis]); // defaults: retryDelay 200, retryJitter 100, driftFactor 0.01
    this.redlock.on('error', () => undefined); // it emits every failed attempt; already silenced by default
  }

  key(name: string): string {
    return name;
  }

  async acquire(name: string): Promise<Held | null> {
    try {
      const lock = await this.redlock.acquire([name], this.settings.ttlMs, { retryCount: 0 });
      return this.held(lock);
    } catch (error) {
      if (error instanceof ExecutionError) return null;
      throw error;
    }
  }

  async waitFor(name: string, { signal, onWaiting }: WaitForOptions = {}): Promise<Held> {
    queueMicrotask(() => onWaiting?.());
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      try {
        // Its own retry loop at its defaults (200 ± 100 ms); the default retryCount (10)
        // only bounds one call, so calling again is the same as retrying without end.
        return this.held(await this.redlock.acquire([name], this.settings.ttlMs));
      } catch (error) {
        if (!(error instanceof ExecutionError)) throw error;
      }
    }
  }

  private held(lock: RedlockLock): Held {
    return {
      release: async () => {
        await lock.release();
      },
    };
  }

  /** `using()` keeps extending the lock while the routine runs; the routine ends at release. */
  hold(name: string): Promise<Held> {
    return new Promise<Held>((resolve, reject) => {
      let finish: () => void = () => undefined;
      const routineDone = new Promise<void>((r) => {
        finish = r;
      });
      const done = this.redlock.using([name], this.settings.ttlMs, { retryCount: -1 }, async (signal) => {
        signal.addEventListener('abort', () => {
          this.lost += 1;
        });
        resolve({
          release: async () => {
            finish();
            await done;
          },
        });
        await routineDone;
      });
      done.catch(reject);
    });
  }

  async close(): Promise<void> {}
}

/** The floor: what any Redis lock must do at least — SET NX PX with a random token, and a compare-and-delete script. */
class RawFloor implements Contender {
  readonly id = 'raw' as const;
  readonly label = LABELS.raw;
  readonly lost = 0;
  private static readonly RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
  private sha: string | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly settings: ContenderSettings,
  ) {}

  key(name: string): string {
    return `raw:${name}`;
  }

  async acquire(name: string): Promise<Held | null> {
    const key = this.key(name);
    const t = token();
    const ok = await this.redis.set(key, t, 'PX', this.settings.ttlMs, 'NX');
    if (ok !== 'OK') return null;
    return {
      release: async () => {
        this.sha ??= (await this.redis.script('LOAD', RawFloor.RELEASE)) as string;
        await this.redis.evalsha(this.sha, 1, key, t);
      },
    };
  }

  /**
   * The floor of waiting: `SET NX` again as soon as the last try answered (no sleep, no
   * notification), so the lock is taken the moment it is free, at the cost of one request
   * in flight per waiter all the time — what no waiting mechanism can beat.
   */
  async waitFor(name: string, { signal, onWaiting }: WaitForOptions = {}): Promise<Held> {
    for (let tries = 0; ; tries++) {
      signal?.throwIfAborted();
      const held = await this.acquire(name);
      if (held) return held;
      if (tries === 0) onWaiting?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  hold(): Promise<Held> {
    return notSupported(this.id, 'renewal');
  }

  async close(): Promise<void> {}
}
