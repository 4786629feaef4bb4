/**
 * The Singleton against real Redis: why a lease is lost, what an outage does,
 * what a restart without persistence does, and that renewal keeps a lease alive
 * and leaves nothing behind. Outage and restart tests run their own
 * redis-server (startRedisServer), so stopping it never disturbs other suites.
 */
import Redis, { type RedisOptions } from 'ioredis';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { LockLostError, PersisterError } from '../lib/errors';
import { keeperFor } from '../lib/LeaseKeeper';
import type { SingletonEvents } from '../lib/events';
import type { Logger } from '../lib/logger';
import type { SingletonOptions } from '../lib/options';
import type { LockInfo, Persister } from '../lib/persisters/Persister';
import { RedisPersister } from '../lib/persisters/RedisPersister';
import { Singleton } from '../lib/Singleton';
import { killAllChildren, pollUntil, spawnHolder, uniqueName } from './helpers/child';
import { freePort, type RedisServer, startRedisServer } from './setup/redisServer';

const REDIS_URL = process.env.REDIS_URL as string;

/** A pino-compatible logger that keeps what it is given, so a test can read the log. */
function recordingLogger() {
  const lines: Array<{ level: string; msg?: string; obj: object }> = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, msg, obj });
    };
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { logger, lines, errors: () => lines.filter((l) => l.level === 'error') };
}

const clients: Redis[] = [];
const persisters: RedisPersister[] = [];
const singletons: Singleton[] = [];

/** A client we close after the test; `error` events are expected here (outages) and only swallowed. */
function redis(url: string, options: RedisOptions = {}): Redis {
  const c = new Redis(url, options);
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

function persisterOn(c: Redis, options: ConstructorParameters<typeof RedisPersister>[1] = {}): RedisPersister {
  const p = new RedisPersister(c, options);
  persisters.push(p);
  return p;
}

/** In-process Singletons never touch this process's signal or error handling. */
function singleton(name: string, persister: Persister, options: SingletonOptions = {}): Singleton {
  const s = new Singleton(name, persister, {
    handleSignals: false,
    handleErrors: false,
    logger: recordingLogger().logger,
    ...options,
  });
  singletons.push(s);
  return s;
}

/** Wraps a persister so the test knows when each renewal that succeeded was sent (`Date.now()`). */
function recordingRenewals(inner: Persister): { persister: Persister; okSentAt: number[]; failures: number[] } {
  const okSentAt: number[] = [];
  const failures: number[] = [];
  const persister: Persister = {
    capabilities: inner.capabilities,
    acquire: (r) => inner.acquire(r),
    release: (r) => inner.release(r),
    inspect: (n) => inner.inspect(n),
    renew: async (r) => {
      const sentAt = Date.now();
      try {
        const result = await inner.renew(r);
        if (result.renewed) okSentAt.push(sentAt);
        return result;
      } catch (error) {
        failures.push(Date.now());
        throw error;
      }
    },
  };
  return { persister, okSentAt, failures };
}

/** The next `event` of `s`; rejects, saying what was awaited and the state, if it does not come within 15 s. */
function next<E extends 'lost' | 'locked' | 'renewed' | 'conflict'>(s: Singleton, event: E) {
  return new Promise<{ at: number; payload: SingletonEvents[E][0] }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' from "${s.name}" within 15 s (state: ${s.state})`)), 15_000);
    (s.once as (e: string, l: (p: SingletonEvents[E][0]) => void) => Singleton)(event, (payload) => {
      clearTimeout(timer);
      resolve({ at: Date.now(), payload });
    });
  });
}

const leaseKey = (name: string) => `singleton:{${name}}`;

/** Kills children, releases what is still held and closes every client; idempotent. */
async function cleanUp(): Promise<void> {
  await killAllChildren();
  await Promise.all(singletons.splice(0).map((s) => s.release().catch(() => undefined)));
  await Promise.all(persisters.splice(0).map((p) => p.close().catch(() => undefined)));
  for (const c of clients.splice(0)) c.disconnect();
}

afterEach(cleanUp);

beforeAll(() => {
  if (!REDIS_URL) throw new Error('REDIS_URL is not set: the jest global setup should have started redis-server');
});

describe('loss reasons', () => {
  test('the lease deleted in Redis: the holder emits lost with reason "expired" (the renewal finds nobody)', async () => {
    const c = redis(REDIS_URL);
    const name = uniqueName('lost-deleted');
    const s = singleton(name, persisterOn(c), { ttlMs: 900 });
    const lost = next(s, 'lost');
    expect(await s.lock()).toBe(true);
    const deletedAt = Date.now();
    await c.del(leaseKey(name));

    const { at, payload } = await lost;
    expect(payload).toMatchObject({ name, reason: 'expired' });
    expect(payload.holder).toBeUndefined();
    expect(at - deletedAt).toBeLessThanOrEqual(300 + 200); // found at the next renewal (every ttl / 3)
    expect(s.state).toBe('lost');
    expect(s.fencingToken).toBeUndefined();
  });

  test('taken over (deleted, then acquired by another instance): reason "taken-over", naming the new holder', async () => {
    const c = redis(REDIS_URL);
    const name = uniqueName('lost-taken');
    const holder = singleton(name, persisterOn(c), { ttlMs: 3_000 });
    const thief = singleton(name, persisterOn(c), { ttlMs: 3_000, owner: 'thief' });
    const lost = next(holder, 'lost');
    expect(await holder.lock()).toBe(true);
    await next(holder, 'renewed'); // a whole renew interval (1 s) ahead to steal in

    await c.del(leaseKey(name));
    expect(await thief.lock()).toBe(true);

    const { payload } = await lost;
    const { reason, holder: now } = payload;
    expect(reason).toBe('taken-over');
    expect(now).toMatchObject({ name, owner: 'thief', pid: process.pid });
    expect(String(now?.fencingToken)).toBe(String(thief.fencingToken));
    expect(BigInt(String(thief.fencingToken))).toBeGreaterThan(0n);
  });

  test('no lost listener and the default onLost: the process logs one line saying so and exits with code 70', async () => {
    const c = redis(REDIS_URL);
    const name = uniqueName('lost-exit70');
    const child = spawnHolder({ redisUrl: REDIS_URL, name, ttlMs: 900, listenLost: false });
    await child.waitForEvent('holding');
    await c.del(leaseKey(name));
    const exit = await child.waitForExit(5_000);
    expect(exit).toMatchObject({ code: 70, signal: null });
    const lines = child.stderr.split('\n').filter((line) => line.trim() !== '');
    expect(lines).toHaveLength(1); // one line, not a warn for the transition and then the exit
    const exitLines = lines.filter((line) => line.includes('exiting with code 70'));
    expect(exitLines).toHaveLength(1);
    expect(exitLines[0]).toContain(name);
    expect(exitLines[0]).toContain("listen for 'lost'");
  });

  test("run(fn): the signal aborts when the lease is lost and run() rejects with LockLostError", async () => {
    const c = redis(REDIS_URL);
    const name = uniqueName('lost-run');
    // run() keeps the onLost policy: handling the loss is opted into with onLost: 'emit' (or a listener).
    const s = singleton(name, persisterOn(c), { ttlMs: 600, onLost: 'emit' });
    let seen: unknown;
    const running = s.run(async (signal) => {
      expect(signal.aborted).toBe(false);
      await c.del(leaseKey(name));
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      seen = signal.reason;
      return 'finished anyway';
    });
    await expect(running).rejects.toBeInstanceOf(LockLostError);
    await expect(running).rejects.toMatchObject({ code: 'SINGLETON_LOST', reason: 'expired', lockName: name });
    expect(seen).toBeInstanceOf(LockLostError);
    expect(s.state).toBe('lost');
    expect(await s.inspect()).toBeNull();
  });
});

describe('store outage', () => {
  test('a store that is down (closed port): lock() rejects with PersisterError, error is emitted, nothing crashes', async () => {
    const port = await freePort(); // nothing listens there
    const c = redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000 });
    const s = singleton(uniqueName('down'), persisterOn(c, { operationTimeoutMs: 2_000 }));
    const errors: Error[] = [];
    s.on('error', (e) => errors.push(e));
    const conflicts: unknown[] = [];
    s.on('conflict', (e) => conflicts.push(e));

    await expect(s.lock()).rejects.toBeInstanceOf(PersisterError);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(PersisterError);
    expect(errors[0].message).toMatch(/Acquiring lock/);
    expect((errors[0] as PersisterError).cause).toBeDefined();
    expect(conflicts).toHaveLength(0); // never reported as "someone else holds it"
    expect(s.state).toBe('idle');
    await expect(s.inspect()).rejects.toBeInstanceOf(PersisterError);
    await expect(s.exists()).rejects.toBeInstanceOf(PersisterError);
    // And it can try again.
    await expect(s.lock()).rejects.toBeInstanceOf(PersisterError);
  });

  test('no error listener: lock() rejects, waitForLock() keeps retrying (logged) until its timeout, nothing throws', async () => {
    const port = await freePort();
    const c = redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000 });
    const log = recordingLogger();
    const s = singleton(uniqueName('down-unheard'), persisterOn(c), { retryIntervalMs: 100, logger: log.logger });

    await expect(s.lock()).rejects.toBeInstanceOf(PersisterError);
    expect(log.errors().length).toBe(1);

    await expect(s.waitForLock({ timeoutMs: 800 })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(log.errors().length).toBeGreaterThanOrEqual(3); // retried with backoff, each failure logged
  });

  test('a process with no error listener survives a store that is down: logged, no crash', async () => {
    const port = await freePort();
    const child = spawnHolder({
      redisUrl: `redis://127.0.0.1:${port}`,
      name: uniqueName('down-child'),
      ttlMs: 1_000,
      acquire: 'wait',
      waitTimeoutMs: 1_000,
      listenError: false,
      noRetry: true,
      heartbeatMs: 100,
    });
    const failed = await child.waitForEvent('wait-failed');
    expect(failed.errorName).toBe('TimeoutError');
    await child.waitForEvent('heartbeat', { where: (e) => e.t > failed.t });
    expect(child.exited).toBe(false);
    expect(child.stderr).toContain('Acquiring lock');
  });

  describe('on a separate redis-server', () => {
    let server: RedisServer;

    beforeEach(async () => {
      server = await startRedisServer();
    });
    afterEach(async () => {
      await cleanUp(); // while the server still runs: a release would otherwise wait for its timeout
      await server.stop();
    });

    test('Redis stopped while held (ttl 1500): lost "store-unreachable" before the ttl runs out from the last successful renewal', async () => {
      const ttlMs = 1_500;
      const name = uniqueName('stopped');
      const { persister, okSentAt, failures } = recordingRenewals(persisterOn(redis(server.url), { operationTimeoutMs: 250 }));
      const s = singleton(name, persister, { ttlMs });
      const renewedAt: number[] = [];
      let lastExpiresAt = 0;
      s.on('locked', (e) => {
        lastExpiresAt = e.expiresAt.getTime();
      });
      s.on('renewed', (e) => {
        renewedAt.push(Date.now());
        lastExpiresAt = e.expiresAt.getTime();
      });
      const errors: Error[] = [];
      s.on('error', (e) => errors.push(e));
      const lost = next(s, 'lost');

      expect(await s.lock()).toBe(true);
      await next(s, 'renewed');
      const stoppedAt = Date.now();
      await server.stop();

      const { at: lostAt, payload } = await lost;
      expect(payload.reason).toBe('store-unreachable');
      const lastOkSent = okSentAt[okSentAt.length - 1];
      const sinceRenewal = lostAt - lastOkSent;
      console.log(
        `Redis stopped: lost ${lostAt - stoppedAt} ms after the stop, ${sinceRenewal} ms after the last successful renewal was sent ` +
          `(ttl ${ttlMs} ms), ${lastExpiresAt - lostAt} ms before the store's expiry; ${failures.length} failed renewals retried first`,
      );
      expect(renewedAt[renewedAt.length - 1]).toBeGreaterThanOrEqual(lastOkSent);
      expect(sinceRenewal).toBeLessThan(ttlMs); // before anyone else could have the lease…
      expect(lostAt).toBeLessThan(lastExpiresAt); // …by the store's own clock, too
      expect(sinceRenewal).toBeGreaterThan(ttlMs - 150); // not at the first failure: retried until the deadline
      expect(failures.length).toBeGreaterThanOrEqual(2);
      expect(errors.length).toBeGreaterThanOrEqual(2);
      expect(errors.every((e) => e instanceof PersisterError)).toBe(true);
      expect(s.state).toBe('lost');
    });

    test('Redis restarted on the same port within the ttl (no persistence: the lease is gone): lost within the ttl, next fence is greater', async () => {
      const ttlMs = 1_500;
      const name = uniqueName('restarted');
      const s = singleton(name, persisterOn(redis(server.url)), { ttlMs });
      const lost = next(s, 'lost');
      expect(await s.lock()).toBe(true);
      const firstFence = s.fencingToken as number;
      await next(s, 'renewed');

      const stoppedAt = Date.now();
      await server.stop();
      server = await startRedisServer(server.port);
      const restartedAt = Date.now();

      const { at: lostAt, payload } = await lost;
      const { reason } = payload;
      console.log(`Redis restarted in ${restartedAt - stoppedAt} ms: holder reported lost (${reason}) ${lostAt - stoppedAt} ms after the stop`);
      expect(['expired', 'store-unreachable']).toContain(reason);
      expect(lostAt - stoppedAt).toBeLessThan(ttlMs);

      const second = singleton(name, persisterOn(redis(server.url)), { ttlMs, owner: 'second' });
      expect(await second.lock()).toBe(true);
      expect(BigInt(String(second.fencingToken))).toBeGreaterThan(BigInt(String(firstFence)));
    });

    test('Redis restarted and another instance acquires at once: the holder learns it by its next renewal (taken-over, or expired when it checked first); fences increase', async () => {
      const ttlMs = 1_500;
      const renewIntervalMs = 500;
      const name = uniqueName('restarted-taken');
      const s = singleton(name, persisterOn(redis(server.url)), { ttlMs, renewIntervalMs });
      const lost = next(s, 'lost');
      expect(await s.lock()).toBe(true);
      const firstFence = s.fencingToken as number;
      await next(s, 'renewed');

      await server.stop();
      server = await startRedisServer(server.port);
      const competitor = singleton(name, persisterOn(redis(server.url)), { ttlMs, owner: 'competitor' });
      expect(await competitor.lock()).toBe(true);
      const competitorAt = Date.now();

      const { at: lostAt, payload } = await lost;
      const { reason, holder } = payload;
      const overlap = lostAt - competitorAt;
      console.log(`Redis restarted, competitor acquired at once: old holder reported lost (${reason}) ${overlap} ms later`);
      // Which comes first after the restart is a race: the holder's retried renewal (it finds
      // nothing: expired) or the competitor's acquire (the holder then finds it: taken-over).
      expect(['taken-over', 'expired']).toContain(reason);
      if (reason === 'taken-over') expect(holder).toMatchObject({ owner: 'competitor' });
      // The restart wiped the lease, so this window is Redis-without-persistence's; fencing tokens cover it.
      expect(overlap).toBeLessThanOrEqual(renewIntervalMs + 300);
      expect(BigInt(String(competitor.fencingToken))).toBeGreaterThan(BigInt(String(firstFence)));
    });
  });

  describe('a holder partitioned from Redis (a TCP proxy that stops forwarding)', () => {
    let proxy: BlackholeProxy;

    beforeEach(async () => {
      proxy = await BlackholeProxy.start(Number(new URL(REDIS_URL).port));
    });
    afterEach(async () => {
      await proxy.close();
    });

    test('it declares itself lost before any other instance can acquire', async () => {
      const ttlMs = 1_500;
      const name = uniqueName('partitioned');
      const holderClient = redis(`redis://127.0.0.1:${proxy.port}`);
      const { persister, okSentAt } = recordingRenewals(persisterOn(holderClient, { operationTimeoutMs: 300 }));
      const holder = singleton(name, persister, { ttlMs });
      holder.on('error', () => undefined);
      const lost = next(holder, 'lost');
      expect(await holder.lock()).toBe(true);
      await next(holder, 'renewed');

      proxy.cut();
      const cutAt = Date.now();
      const other = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs, owner: 'other' });
      const lostAtWhenAcquired: Array<number | undefined> = [];
      let lostAt: number | undefined;
      void lost.then(({ at }) => {
        lostAt = at;
      });
      const acquiredAt = await pollUntil(
        async () => {
          const got = await other.lock();
          if (got) lostAtWhenAcquired.push(lostAt);
          return got;
        },
        { timeoutMs: ttlMs + 2_000, intervalMs: 10, what: 'the other instance to acquire' },
      );

      const { at, payload } = await lost;
      console.log(
        `partition: holder lost ${at - cutAt} ms after the cut, ${at - okSentAt[okSentAt.length - 1]} ms after its last successful renewal; ` +
          `the other instance acquired ${acquiredAt - at} ms after that`,
      );
      expect(payload.reason).toBe('store-unreachable');
      expect(lostAtWhenAcquired[0]).toBeDefined(); // lost had fired when the other got the lease
      expect(at).toBeLessThanOrEqual(acquiredAt);
      expect(at - okSentAt[okSentAt.length - 1]).toBeLessThan(ttlMs);
      expect(BigInt(String(other.fencingToken))).toBeGreaterThan(0n);
    });
  });
});

describe('renewal', () => {
  test('keeps a lease alive for 3× its ttl with the same fencing token, and leaves no timer or handle behind', async () => {
    const ttlMs = 600;
    const c = redis(REDIS_URL);
    const persister = persisterOn(c);
    const name = uniqueName('renewal');
    await c.ping(); // connected: the socket is part of the baseline
    const baseline = [...process.getActiveResourcesInfo()].sort();

    const s = singleton(name, persister, { ttlMs });
    const renewed: number[] = [];
    s.on('renewed', () => renewed.push(Date.now()));
    expect(await s.lock()).toBe(true);
    const lockedAt = Date.now();
    const fence = s.fencingToken;
    expect(keeperFor(persister).size).toBe(1);

    await pollUntil(() => Date.now() - lockedAt >= 3 * ttlMs, { timeoutMs: 5 * ttlMs, intervalMs: 50, what: '3 × ttl to pass' });
    const info = await s.inspect();
    expect(info).toMatchObject({ name, pid: process.pid });
    expect(String(info?.fencingToken)).toBe(String(fence));
    expect(info?.expiresAt.getTime()).toBeGreaterThan(Date.now());
    expect(s.state).toBe('locked');
    expect(renewed.length).toBeGreaterThanOrEqual(6); // every ttl / 3 = 200 ms over 1.8 s: ~9

    await s.release();
    expect(await s.inspect()).toBeNull();
    expect(keeperFor(persister).size).toBe(0);
    // The keeper's unref'd timer goes at its next tick (within ttl / 3), with the rest:
    await pollUntil(() => (keeperFor(persister) as unknown as { timer: unknown }).timer === undefined, { timeoutMs: 1_000, what: 'the keeper timer to go' });
    // Nothing keeps the process alive that was not there before (another client's timer from an
    // earlier test may have ended meanwhile: no more of any kind, not exactly the same list).
    const counts = (list: string[]) => list.reduce((m, r) => m.set(r, (m.get(r) ?? 0) + 1), new Map<string, number>());
    const noMoreThanBaseline = () => [...counts(process.getActiveResourcesInfo())].every(([r, n]) => n <= (counts(baseline).get(r) ?? 0));
    await pollUntil(noMoreThanBaseline, {
      timeoutMs: 1_000,
      what: `active resources back to at most ${JSON.stringify(baseline)} (now ${JSON.stringify([...process.getActiveResourcesInfo()].sort())})`,
    });
  });
});

/**
 * A TCP proxy in front of Redis whose `cut()` makes it drop every byte in both
 * directions while keeping the connections open: a network partition, as the
 * client sees it (requests hang, nothing is refused).
 */
class BlackholeProxy {
  private blackholed = false;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<BlackholeProxy> {
    const server = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
    const proxy = new BlackholeProxy(server, port);
    server.on('connection', (downstream) => {
      const upstream = connect(targetPort, '127.0.0.1');
      for (const [from, to] of [
        [downstream, upstream],
        [upstream, downstream],
      ] as const) {
        proxy.sockets.add(from);
        from.on('data', (chunk) => {
          if (!proxy.blackholed) to.write(chunk);
        });
        from.on('error', () => undefined);
        from.on('close', () => {
          proxy.sockets.delete(from);
          to.destroy();
        });
      }
    });
    return proxy;
  }

  /** From now on, nothing gets through either way. */
  cut(): void {
    this.blackholed = true;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

describe('waiting in line (a release hands the lease to the first waiter)', () => {
  const queueKey = (name: string) => `${leaseKey(name)}:queue`;
  /** Resolves once `n` waiters are in the line of `name` (the Redis sorted set). */
  const inLine = (c: Redis, name: string, n: number) => pollUntil(async () => (await c.zcard(queueKey(name))) === n, { what: `${n} in line` });

  /** `name` held here (30 s lease), and a waiter in line in a process of its own (`acquire: 'wait'`). */
  async function heldWithWaitingProcess(hint: string, waiterTtlMs: number) {
    const admin = redis(REDIS_URL);
    const name = uniqueName(hint);
    const holder = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000 });
    expect(await holder.lock()).toBe(true);
    const child = spawnHolder({ redisUrl: REDIS_URL, name, ttlMs: waiterTtlMs, acquire: 'wait', options: { handleSignals: false } }, 'waiting process');
    await inLine(admin, name, 1);
    return { admin, name, holder, child };
  }

  /** Continues a stopped waiting process and checks that it tries again without ever holding. */
  async function continuedWithoutHolding(child: ReturnType<typeof spawnHolder>): Promise<void> {
    const before = child.events.length;
    child.kill('SIGCONT');
    const since = () => child.events.slice(before).map((e) => e.event);
    await pollUntil(() => since().includes('locking'), { what: 'the continued waiter to try again', timeoutMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(since()).not.toContain('locked');
    expect(since()).not.toContain('holding');
  }

  test('waiters get the lock in the order they came, each with a higher fence, none woken out of turn', async () => {
    const admin = redis(REDIS_URL);
    const name = uniqueName('line-order');
    const holder = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000 });
    expect(await holder.lock()).toBe(true);
    const order: string[] = [];
    const fences: Array<bigint | number> = [];
    const waiters = ['w1', 'w2', 'w3'].map((owner) => {
      const w = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000, owner });
      w.on('locked', ({ fencingToken }) => {
        order.push(owner);
        if (fencingToken !== undefined) fences.push(fencingToken);
      });
      return w;
    });
    const waits: Array<Promise<void>> = [];
    for (const [i, w] of waiters.entries()) {
      waits.push(w.waitForLock());
      await inLine(admin, name, i + 1); // arrival order is the order they queued
    }
    let current = holder;
    for (const w of waiters) {
      await current.release();
      await waits[waiters.indexOf(w)];
      current = w;
    }
    await current.release();
    expect(order).toEqual(['w1', 'w2', 'w3']);
    expect(fences.map(BigInt)).toEqual([...fences.map(BigInt)].sort((a, b) => (a < b ? -1 : 1)));
    expect(new Set(fences.map(String)).size).toBe(3);
    expect(await admin.exists(queueKey(name))).toBe(0);
  });

  /** A lease of `waiterTtlMs` handed over to a waiter in line: how long after it held it its first renewal came. */
  async function firstRenewalAfterHandOver(hint: string, waiterTtlMs: number) {
    const admin = redis(REDIS_URL);
    const name = uniqueName(hint);
    const holder = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000 });
    expect(await holder.lock()).toBe(true);
    const waiter = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: waiterTtlMs, owner: 'waiter' });
    const waiting = waiter.waitForLock();
    await inLine(admin, name, 1);
    const renewed = next(waiter, 'renewed');
    await holder.release();
    await waiting;
    const lockedAt = Date.now();
    const { at } = await renewed;
    expect((await waiter.inspect())?.owner).toBe('waiter');
    return { admin, name, afterMs: at - lockedAt };
  }

  test('a lease handed over counts its length from the release that wrote it: within the claim, renewed on schedule', async () => {
    // No longer than the claim, renewed every 667 ms. Its start is known to within a round trip
    // (the waiter's last exchange with Redis), so its first renewal comes a renewal interval on
    // (less the keeper's batching of a quarter), not at once.
    const { afterMs } = await firstRenewalAfterHandOver('line-renew', 2_000);
    expect(afterMs).toBeGreaterThanOrEqual(300);
    expect(afterMs).toBeLessThan(5_000);
  });

  test('a lease handed over for the claim (2 s) is renewed at once to the waiter\'s ttl', async () => {
    const { admin, name, afterMs } = await firstRenewalAfterHandOver('line-claim', 30_000);
    expect(afterMs).toBeLessThan(1_500); // within the claim, not a renewal interval (10 s) on
    expect(await admin.pttl(leaseKey(name))).toBeGreaterThan(20_000);
  });

  test('a lease handed over while the waiter was busy for longer than the lease is not held: the waiter says so and waits on', async () => {
    const admin = redis(REDIS_URL);
    const name = uniqueName('line-stale');
    const holder = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000 });
    expect(await holder.lock()).toBe(true);
    const { logger, lines } = recordingLogger();
    // A 500 ms lease, and no retry for 30 s: only the hand-over can make it hold.
    const waiter = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 500, owner: 'waiter', retryIntervalMs: 30_000, logger });
    let lockedEvents = 0;
    waiter.on('locked', () => (lockedEvents += 1));
    waiter.on('lost', () => undefined); // were it held, it would be lost at once: say so by the count above, not by exiting
    const waiting = waiter.waitForLock().then(
      () => 'held',
      (error: Error) => error.name,
    );
    await inLine(admin, name, 1);
    void holder.release(); // the release script is on its way: Redis hands the lease to the waiter and tells it
    const busyUntil = performance.now() + 1_200; // busy past the waiter's 500 ms lease: the message waits in its socket
    while (performance.now() < busyUntil);
    await pollUntil(async () => lines.some((l) => l.level === 'warn' && /handed over .* had run out; waiting on/.test(l.msg ?? '')), {
      what: 'the waiter to say its lease had run out',
    });
    expect(lockedEvents).toBe(0);
    expect(waiter.state).not.toBe('locked');
    // Nobody holds it: another instance takes it at once.
    const other = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000, owner: 'other' });
    expect(await other.lock()).toBe(true);
    expect((await other.inspect())?.owner).toBe('other');
    expect(lockedEvents).toBe(0);
    await waiter.release(); // ends the wait
    expect(await waiting).toBe('AbortError');
  });

  test('instances taking the lock in turns share it: nobody starves, never two at once', async () => {
    const name = uniqueName('line-fair');
    const instances = [0, 1, 2, 3].map((i) => singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000, owner: `i${i}` }));
    const counts = instances.map(() => 0);
    let inside = 0;
    let overlaps = 0;
    let total = 0;
    const TOTAL = 60;
    await Promise.all(
      instances.map(async (s, i) => {
        while (total < TOTAL) {
          await s.waitForLock();
          inside += 1;
          if (inside > 1) overlaps += 1;
          await new Promise((r) => setTimeout(r, 2));
          inside -= 1;
          counts[i] += 1;
          total += 1;
          await s.release();
        }
      }),
    );
    expect(overlaps).toBe(0);
    // In turns: each of the four gets about a quarter (the one who released goes to the back of the line).
    for (const c of counts) expect(c).toBeGreaterThanOrEqual(TOTAL / 8);
  });

  test('a waiter that gives up as the lease is handed to it passes it on at once (not after the lease runs out)', async () => {
    const admin = redis(REDIS_URL);
    const name = uniqueName('line-abort');
    const holder = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000 });
    expect(await holder.lock()).toBe(true);
    const quitter = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000, owner: 'quitter' });
    const next = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000, owner: 'next' });
    const controller = new AbortController();
    const quitting = quitter.waitForLock({ signal: controller.signal }).then(
      () => 'locked',
      (error: unknown) => error,
    );
    await inLine(admin, name, 1);
    const waiting = next.waitForLock();
    await inLine(admin, name, 2);
    const releasedAt = Date.now();
    controller.abort(); // in the same tick as the release: the hand-off may reach the quitter first
    await holder.release();
    expect(await quitting).toMatchObject({ name: 'AbortError' });
    await waiting;
    expect(Date.now() - releasedAt).toBeLessThan(5_000); // the lease is 30 s
    expect(next.state).toBe('locked');
    expect(quitter.state).not.toBe('locked');
    expect((await next.inspect())?.owner).toBe('next');
  });

  test('a waiting process stopped (SIGSTOP) past the lease handed to it does not hold it when continued: the lock is the next holder\'s alone', async () => {
    const { name, holder, child } = await heldWithWaitingProcess('line-stopped', 1_000);
    child.kill('SIGSTOP'); // its connection stays open: Redis still counts it listening
    await holder.release(); // handed to the stopped waiter
    // The lease handed to it runs out (1 s); another instance waiting takes the lock then.
    const other = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000, owner: 'other' });
    await other.waitForLock({ timeoutMs: 15_000 });
    // Continued, it reads the hand-over message and tries again: it must not hold the lock.
    await continuedWithoutHolding(child);
    expect(other.state).toBe('locked');
    expect((await other.inspect())?.owner).toBe('other');
  });

  test('a waiting process stopped (SIGSTOP) with a long lease holds the lock up for the claim (2 s), not for its lease (30 s)', async () => {
    const { admin, name, holder, child } = await heldWithWaitingProcess('line-stopped-long', 30_000);
    const other = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000, owner: 'other' });
    const waiting = other.waitForLock({ timeoutMs: 15_000 });
    await inLine(admin, name, 2);
    child.kill('SIGSTOP'); // first in line, its connection open: the release hands it the lease
    const releasedAt = Date.now();
    await holder.release();
    await waiting;
    // The claim ran out, and the other waiter's next try (every retryIntervalMs, 1 s) took it.
    expect(Date.now() - releasedAt).toBeLessThan(10_000);
    expect((await other.inspect())?.owner).toBe('other');
    await continuedWithoutHolding(child);
    expect(other.state).toBe('locked');
  });

  test('a waiting process killed (SIGKILL) is skipped: the next waiter gets the lock at the release', async () => {
    const { admin, name, holder, child } = await heldWithWaitingProcess('line-killed', 30_000);
    const next = singleton(name, persisterOn(redis(REDIS_URL)), { ttlMs: 30_000, owner: 'next' });
    const waiting = next.waitForLock();
    await inLine(admin, name, 2);
    child.kill('SIGKILL');
    await child.waitForExit(10_000);
    const releasedAt = Date.now();
    await holder.release();
    await waiting;
    expect(Date.now() - releasedAt).toBeLessThan(5_000);
    expect((await next.inspect())?.owner).toBe('next');
  });
});
