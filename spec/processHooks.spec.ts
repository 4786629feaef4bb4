/**
 * Process hooks (DESIGN.md §4) observed from outside: real child processes
 * holding real Redis leases get signals, crash, or are killed with SIGKILL,
 * and this test process checks what the store and the exit status say.
 */
import Redis from 'ioredis';
import { constants as osConstants } from 'node:os';
import type { Logger } from '../lib/logger';
import type { LockInfo } from '../lib/persisters/Persister';
import { RedisPersister } from '../lib/persisters/RedisPersister';
import { Singleton } from '../lib/Singleton';
import { type FixtureChild, killAllChildren, listenerCounts, pollUntil, spawnHolder, uniqueName } from './helpers/child';
import { type RedisServer, startRedisServer } from './setup/redisServer';

const REDIS_URL = process.env.REDIS_URL as string;
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

let client: Redis;
let store: RedisPersister;

beforeAll(() => {
  if (!REDIS_URL) throw new Error('REDIS_URL is not set: the jest global setup should have started redis-server');
  client = new Redis(REDIS_URL);
  store = new RedisPersister(client);
});

afterEach(async () => {
  await killAllChildren();
});

afterAll(async () => {
  await store.close();
  await client.quit();
});

/** Spawns a holder on the shared Redis and waits until it holds the lock. */
async function holder(name: string, config: Partial<Parameters<typeof spawnHolder>[0]> = {}, label = 'holder') {
  const child = spawnHolder({ redisUrl: REDIS_URL, name, ttlMs: 30_000, ...config }, label);
  const holding = await child.waitForEvent('holding');
  return { child, holding };
}

function expectHeldBy(info: LockInfo | null, child: FixtureChild): void {
  expect(info).not.toBeNull();
  expect(info?.pid).toBe(child.pid);
}

describe('a holder that gets a signal', () => {
  test.each(SIGNALS)('%s: releases the lock at once (ttl 30 s) and dies by that signal', async (signal) => {
    const name = uniqueName(`sig-${signal}`);
    const { child } = await holder(name);
    expectHeldBy(await store.inspect(name), child);

    const sentAt = child.kill(signal);
    const exit = await child.waitForExit(10_000);

    expect(exit).toMatchObject({ code: null, signal });
    expect(exit.at - sentAt).toBeLessThan(5_000); // far inside the 30 s lease: it was released, not left to expire
    expect(await store.inspect(name)).toBeNull();
    const order = child.events.map((e) => e.event).filter((e) => ['holding', 'releasing', 'released'].includes(e));
    expect(order).toEqual(['holding', 'releasing', 'released']);
  });

  test('SIGTERM: a shell sees exit status 143 (128 + SIGTERM)', async () => {
    const name = uniqueName('sig-143');
    const child = spawnHolder({ redisUrl: REDIS_URL, name, ttlMs: 30_000 }, 'holder under bash', { viaShell: true });
    const holding = await child.waitForEvent('holding');
    process.kill(holding.pid, 'SIGTERM'); // the node process, not the shell around it
    const status = await child.waitForEvent('shell-status');
    expect(status.status).toBe(128 + osConstants.signals.SIGTERM);
    expect(status.status).toBe(143);
    expect(await store.inspect(name)).toBeNull();
  });

  describe('while the store is slow (CLIENT PAUSE on a separate redis-server)', () => {
    let server: RedisServer;
    let admin: Redis;

    beforeAll(async () => {
      server = await startRedisServer();
      admin = new Redis(server.url);
    });
    afterEach(async () => {
      await admin.call('CLIENT', 'UNPAUSE');
    });
    afterAll(async () => {
      await killAllChildren();
      await admin.quit();
      await server.stop();
    });

    test('a second SIGTERM during the release exits at once, by SIGTERM', async () => {
      const name = uniqueName('second-sigterm');
      const child = spawnHolder({ redisUrl: server.url, name, ttlMs: 30_000, options: { shutdownTimeoutMs: 20_000 } });
      await child.waitForEvent('holding');
      await admin.call('CLIENT', 'PAUSE', '20000', 'WRITE'); // scripts (release) now block on the server

      child.kill('SIGTERM');
      await child.waitForEvent('releasing', { timeoutMs: 5_000 });
      expect(child.exited).toBe(false); // the first SIGTERM waits for the release (up to 20 s)

      const secondAt = child.kill('SIGTERM');
      const exit = await child.waitForExit(5_000);
      expect(exit).toMatchObject({ code: null, signal: 'SIGTERM' });
      expect(exit.at - secondAt).toBeLessThan(1_500);
      expect(child.all('released')).toHaveLength(0); // it did not wait for the release to finish
    });

    test('shutdownTimeoutMs bounds a release that hangs: exits by the signal after it, and says so', async () => {
      const name = uniqueName('shutdown-timeout');
      const shutdownTimeoutMs = 800;
      const child = spawnHolder({ redisUrl: server.url, name, ttlMs: 30_000, options: { shutdownTimeoutMs } });
      await child.waitForEvent('holding');
      await admin.call('CLIENT', 'PAUSE', '20000', 'WRITE');

      const sentAt = child.kill('SIGTERM');
      const exit = await child.waitForExit(10_000);
      expect(exit).toMatchObject({ code: null, signal: 'SIGTERM' });
      expect(exit.at - sentAt).toBeGreaterThanOrEqual(shutdownTimeoutMs - 20);
      expect(exit.at - sentAt).toBeLessThan(shutdownTimeoutMs + 3_000);
      expect(child.stderr).toContain(`not released within ${shutdownTimeoutMs} ms`);
    });
  });
});

describe('a holder that crashes', () => {
  test('uncaught exception: releases the lock, prints the error on stderr, exits 1', async () => {
    const name = uniqueName('uncaught');
    const child = spawnHolder({ redisUrl: REDIS_URL, name, ttlMs: 30_000, then: 'throw' });
    const exit = await child.waitForExit(10_000);
    expect(exit).toMatchObject({ code: 1, signal: null });
    expect(child.stderr).toContain('boom: uncaught exception from the holder fixture');
    expect(child.all('released')).toHaveLength(1);
    expect(await store.inspect(name)).toBeNull();
  });

  test('unhandled rejection: releases the lock, prints the error on stderr, exits 1', async () => {
    const name = uniqueName('rejection');
    const child = spawnHolder({ redisUrl: REDIS_URL, name, ttlMs: 30_000, then: 'reject' });
    const exit = await child.waitForExit(10_000);
    expect(exit).toMatchObject({ code: 1, signal: null });
    expect(child.stderr).toContain('boom: unhandled rejection from the holder fixture');
    expect(child.all('released')).toHaveLength(1);
    expect(await store.inspect(name)).toBeNull();
  });

  test('kill -9: the lease runs out and a waiting instance takes over within ttl + 500 ms, reporting the dead holder as expired', async () => {
    const name = uniqueName('kill9');
    const ttlMs = 1_000;
    const { child, holding } = await holder(name, { ttlMs });

    const persister = new RedisPersister(client);
    const standby = new Singleton(name, persister, { ttlMs, handleSignals: false, handleErrors: false, logger: silent });
    const expired: LockInfo[] = [];
    standby.on('expired', (e) => expired.push(e.previous));
    let lockedAt = 0;
    standby.on('locked', () => {
      lockedAt = Date.now();
    });
    const firstConflict = new Promise<LockInfo>((resolve) => standby.once('conflict', (e) => resolve(e.holder)));
    const waiting = standby.waitForLock({ timeoutMs: 10_000 });
    try {
      expect((await firstConflict).pid).toBe(child.pid);
      await child.waitForEvent('renewed'); // it has been renewing: the lease is alive, not merely young

      const killedAt = child.kill('SIGKILL');
      const exit = await child.waitForExit(5_000);
      expect(exit.signal).toBe('SIGKILL');
      await waiting;

      const takeoverMs = lockedAt - killedAt;
      const lastExpiry = Math.max(...child.events.filter((e) => 'expiresAt' in e).map((e) => Number(e.expiresAt)));
      console.log(
        `kill -9 takeover: ${takeoverMs} ms after SIGKILL (ttl ${ttlMs} ms); ` +
          `${lockedAt - lastExpiry} ms after the dead holder's last known expiry`,
      );
      // Never before the store's expiry of the last renewal we saw (same host, same clock; 5 ms for rounding).
      expect(lockedAt).toBeGreaterThanOrEqual(lastExpiry - 5);
      // The lease had been renewed at most renewIntervalMs (ttl / 3) before the kill.
      expect(takeoverMs).toBeGreaterThanOrEqual(ttlMs - Math.ceil(ttlMs / 3) - 50);
      expect(takeoverMs).toBeLessThanOrEqual(ttlMs + 500);

      expect(expired).toHaveLength(1);
      expect(expired[0]).toMatchObject({ pid: child.pid });
      expect(String(expired[0].fencingToken)).toBe(String(holding.fencingToken));
      expect(BigInt(standby.fencingToken as number)).toBeGreaterThan(BigInt(String(holding.fencingToken)));
    } finally {
      await standby.release();
      await persister.close();
    }
  });
});

describe('a process that holds nothing keeps Node’s default signal behaviour', () => {
  const NONE = { SIGTERM: 0, SIGINT: 0, SIGHUP: 0, uncaughtException: 0, unhandledRejection: 0 };
  const ALL = { SIGTERM: 1, SIGINT: 1, SIGHUP: 1, uncaughtException: 1, unhandledRejection: 1 };

  test('constructed but never locked: no listener; SIGTERM kills it at once', async () => {
    const child = spawnHolder({ redisUrl: REDIS_URL, name: uniqueName('never-locked'), ttlMs: 30_000, acquire: 'none' });
    const ready = await child.waitForEvent('ready');
    expect(ready.listeners).toEqual(NONE);
    const sentAt = child.kill('SIGTERM');
    const exit = await child.waitForExit(5_000);
    expect(exit).toMatchObject({ code: null, signal: 'SIGTERM' });
    expect(exit.at - sentAt).toBeLessThan(1_000);
  });

  test('locked then released: listeners back to none; SIGTERM kills it at once', async () => {
    const child = spawnHolder({ redisUrl: REDIS_URL, name: uniqueName('released'), ttlMs: 30_000, then: 'release' });
    const holding = await child.waitForEvent('holding');
    expect(holding.listeners).toEqual(ALL);
    const after = await child.waitForEvent('after-release');
    expect(after.listeners).toEqual(NONE);
    const sentAt = child.kill('SIGTERM');
    const exit = await child.waitForExit(5_000);
    expect(exit).toMatchObject({ code: null, signal: 'SIGTERM' });
    expect(exit.at - sentAt).toBeLessThan(1_000);
    expect(child.all('releasing')).toHaveLength(1); // only the explicit release, none on the signal
  });

  test('handleSignals: false adds no signal listener; SIGTERM kills the holder without release and the lease stays until its ttl', async () => {
    const name = uniqueName('no-signals');
    const ttlMs = 2_000;
    const { child } = await holder(name, { ttlMs, options: { handleSignals: false } });
    const holding = child.all('holding')[0];
    expect(holding.listeners).toEqual({ ...NONE, uncaughtException: 1, unhandledRejection: 1 });

    child.kill('SIGTERM');
    const exit = await child.waitForExit(5_000);
    const diedAt = exit.at;
    expect(exit).toMatchObject({ code: null, signal: 'SIGTERM' });
    expect(child.all('releasing')).toHaveLength(0);
    const left = await store.inspect(name);
    expectHeldBy(left, child);

    const freedAt = await pollUntil(async () => (await store.inspect(name)) === null, {
      timeoutMs: ttlMs + 2_000,
      what: 'the abandoned lease to expire',
    });
    expect(freedAt).toBeGreaterThanOrEqual((left as LockInfo).expiresAt.getTime() - 5);
    expect(freedAt - diedAt).toBeLessThanOrEqual(ttlMs + 500);
  });

  describe('in this process', () => {
    const singletons: Singleton[] = [];
    const make = (name: string, options: ConstructorParameters<typeof Singleton>[2] = {}) => {
      const s = new Singleton(name, store, { ttlMs: 600, logger: silent, ...options });
      singletons.push(s);
      return s;
    };
    afterEach(async () => {
      await Promise.all(singletons.splice(0).map((s) => s.release().catch(() => undefined)));
    });

    test('listeners: one set for all holders, back to the baseline after release and after lost', async () => {
      const baseline = listenerCounts();
      const plusOne = Object.fromEntries(Object.entries(baseline).map(([k, v]) => [k, v + 1]));
      const a = make(uniqueName('hooks-a'));
      const b = make(uniqueName('hooks-b'));

      expect(await a.lock()).toBe(true);
      expect(listenerCounts()).toEqual(plusOne);
      expect(await b.lock()).toBe(true);
      expect(listenerCounts()).toEqual(plusOne); // one process-wide registry, not one listener per Singleton
      await a.release();
      expect(listenerCounts()).toEqual(plusOne); // b still holds
      await b.release();
      expect(listenerCounts()).toEqual(baseline);

      // Lost: delete the lease behind its back; the next renewal finds nobody.
      const lost = new Promise<string>((resolve) => a.once('lost', (e) => resolve(e.reason)));
      expect(await a.lock()).toBe(true);
      expect(listenerCounts()).toEqual(plusOne);
      await client.del(`singleton:{${a.name}}`);
      expect(await lost).toBe('expired');
      expect(listenerCounts()).toEqual(baseline);
    });

    test('handleSignals: false and handleErrors: false add no listener at all while held', async () => {
      const baseline = listenerCounts();
      const s = make(uniqueName('hooks-off'), { handleSignals: false, handleErrors: false });
      expect(await s.lock()).toBe(true);
      expect(listenerCounts()).toEqual(baseline);
      await s.release();
      expect(listenerCounts()).toEqual(baseline);
    });

    test('handleSignals: [SIGTERM] adds only that signal', async () => {
      const baseline = listenerCounts();
      const s = make(uniqueName('hooks-some'), { handleSignals: ['SIGTERM'], handleErrors: false });
      expect(await s.lock()).toBe(true);
      expect(listenerCounts()).toEqual({ ...baseline, SIGTERM: baseline.SIGTERM + 1 });
      await s.release();
      expect(listenerCounts()).toEqual(baseline);
    });
  });
});

describe('an application with its own SIGTERM listener', () => {
  test('the lock is released on SIGTERM, but the process is not killed: the application decides', async () => {
    const name = uniqueName('app-sigterm');
    const { child } = await holder(name, { appSigterm: true, heartbeatMs: 50 });

    child.kill('SIGTERM');
    await child.waitForEvent('app-sigterm', { timeoutMs: 5_000 });
    const released = await child.waitForEvent('released', { timeoutMs: 5_000 });
    expect(await store.inspect(name)).toBeNull();

    // Alive well after the release, with only the application's own SIGTERM listener left.
    const later = await child.waitForEvent('heartbeat', { where: (e) => e.t >= released.t + 300, timeoutMs: 5_000 });
    expect(later.listeners).toEqual({ SIGTERM: 1, SIGINT: 0, SIGHUP: 0, uncaughtException: 0, unhandledRejection: 0 });
    expect(child.exited).toBe(false);

    // A later SIGTERM is the application's alone: nothing of ours runs, and it still lives.
    const index = child.events.length;
    child.kill('SIGTERM');
    const again = await child.waitForEvent('app-sigterm', { from: index });
    await child.waitForEvent('heartbeat', { from: index, where: (e) => e.t >= again.t + 100 });
    expect(child.all('releasing')).toHaveLength(1);
    expect(child.exited).toBe(false);
  });
});
