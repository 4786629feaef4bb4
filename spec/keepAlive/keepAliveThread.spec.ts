/**
 * `keepAlive: 'thread'` with real child processes, on real Redis and the file store
 * (DESIGN.md §9): a busy event loop keeps a 1 s lease, a `kill -9`ed holder is replaced
 * within about a second, a loop stuck for good lets the lease go after `maxBlockMs`, and a
 * frozen holder whose lease was taken over ends itself before its loop wakes up.
 *
 * Each holder is spec/fixtures/keepAliveHolder.ts; the competitor is this process. The
 * figures each test measured are printed (`keepAlive figure: …`) for the README.
 */
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { lockPaths } from '../../lib/persisters/file/names';
import { FilePersister } from '../../lib/persisters/FilePersister';
import type { Persister } from '../../lib/persisters/Persister';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { Singleton } from '../../lib/Singleton';
import { newToken } from '../../lib/time';
import type { KeepAliveHolderConfig, StoreConfig } from '../fixtures/keepAliveHolder';
import { type FixtureChild, killAllChildren, REPO_ROOT, spawnFixture, uniqueName } from '../helpers/child';

const FIXTURE = join(REPO_ROOT, 'spec', 'fixtures', 'keepAliveHolder.ts');
const TTL_MS = 1_000;
const RENEW_INTERVAL_MS = Math.floor(TTL_MS / 3);
/** How long the "merely busy" holder busy-loops: eight leases. */
const BUSY_MS = 8_000;

const OWNER = { owner: 'keepAlive-spec', hostname: 'spec', pid: process.pid };
const silent = { debug() {}, info() {}, warn() {}, error() {} };

function figure(text: string): void {
  process.stdout.write(`keepAlive figure: ${text}\n`);
}

function spawnHolder(config: KeepAliveHolderConfig, label: string): FixtureChild {
  return spawnFixture(FIXTURE, { KEEPALIVE_CONFIG: JSON.stringify(config), SINGLETON_LOG_LEVEL: 'error' }, label);
}

interface StoreUnderTest {
  config(): StoreConfig;
  persister(): Persister;
  /** Deletes the lease of `name` behind the holder's back (an operator, a store that forgot). */
  erase(name: string): Promise<void>;
  /** Frees what the store under test opened. */
  close(): void;
}

const redisStore = (): StoreUnderTest => {
  const clients: Redis[] = [];
  const url = process.env.REDIS_URL as string;
  return {
    config: () => ({ kind: 'redis', url }),
    persister: () => {
      const client = new Redis(url);
      clients.push(client);
      return new RedisPersister(client);
    },
    erase: async (name) => {
      const admin = new Redis(url);
      try {
        await admin.del(`singleton:{${name}}`);
      } finally {
        admin.disconnect();
      }
    },
    close: () => clients.forEach((c) => c.disconnect()),
  };
};

const fileStore = (): StoreUnderTest => {
  const dir = mkdtempSync(join(tmpdir(), 'singleton-keepalive-'));
  return {
    config: () => ({ kind: 'file', dir }),
    persister: () => new FilePersister({ dir }),
    erase: async (name) => unlinkSync(lockPaths(dir, name).state),
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
};

/** Tries to take `name` every `everyMs` until it succeeds or `untilMs` passes; resolves when (Date.now()) it did, or null. */
async function pollAcquire(persister: Persister, name: string, everyMs: number, untilMs: number): Promise<number | null> {
  const token = newToken();
  const deadline = Date.now() + untilMs;
  while (Date.now() < deadline) {
    const result = await persister.acquire({ name, token, ttlMs: 5_000, owner: OWNER });
    if (result.acquired) return Date.now();
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return null;
}

afterEach(killAllChildren);

describe.each([
  ['Redis', redisStore],
  ['the file store', fileStore],
] as const)("keepAlive: 'thread' on %s", (_label, makeStore) => {
  let store: StoreUnderTest;

  beforeAll(() => {
    store = makeStore();
  });
  afterAll(() => store.close());

  test(`a holder busy-looping for ${BUSY_MS / 1000} s keeps its ${TTL_MS} ms lease: a competitor polling every 200 ms never gets it`, async () => {
    const name = uniqueName('busy');
    const holder = spawnHolder(
      { store: store.config(), name, ttlMs: TTL_MS, options: { keepAlive: 'thread' }, listenLost: true, block: { forMs: BUSY_MS } },
      'busy holder',
    );
    const ready = await holder.waitForEvent('thread-ready', { timeoutMs: 20_000 });
    figure(`thread start under tsx: ${String(ready.startMs)} ms after the first lock (${_label})`);
    const blocking = await holder.waitForEvent('blocking');
    const competitor = store.persister();
    const stolenAt = await pollAcquire(competitor, name, 200, BUSY_MS - 200 - (Date.now() - blocking.t));
    expect(stolenAt).toBeNull();
    const unblocked = await holder.waitForEvent('unblocked', { timeoutMs: BUSY_MS + 10_000 });
    expect(unblocked.t - blocking.t).toBeGreaterThanOrEqual(BUSY_MS);
    expect(unblocked.state).toBe('locked');
    // Still held after the loop came back, and nothing was lost.
    expect((await competitor.acquire({ name, token: newToken(), ttlMs: 1_000, owner: OWNER })).acquired).toBe(false);
    expect(holder.all('lost')).toEqual([]);
    expect(holder.exited).toBe(false);
    await competitor.close?.();
  }, 40_000);

  test('kill -9 of a thread-mode holder: a waiting process holds the lock within about a second', async () => {
    const name = uniqueName('crash');
    const holder = spawnHolder({ store: store.config(), name, ttlMs: TTL_MS, options: { keepAlive: 'thread' }, listenLost: true }, 'crash holder');
    await holder.waitForEvent('thread-ready', { timeoutMs: 20_000 });
    const waiter = new Singleton(name, store.persister(), { ttlMs: TTL_MS, handleSignals: false, handleErrors: false, logger: silent, onLost: 'emit' });
    let conflict!: () => void;
    const waiting = new Promise<void>((resolve) => (conflict = resolve));
    waiter.once('conflict', () => conflict());
    const held = waiter.waitForLock({ timeoutMs: 10_000 }).then(() => Date.now());
    await waiting;
    // A random point of the renewal cycle.
    await new Promise((r) => setTimeout(r, Math.random() * RENEW_INTERVAL_MS));
    const killedAt = holder.kill('SIGKILL');
    const heldAt = await held;
    figure(`kill -9 → waiter holds: ${heldAt - killedAt} ms (${_label}, ttl ${TTL_MS} ms)`);
    expect(heldAt - killedAt).toBeLessThan(3_000);
    await waiter.release();
  }, 40_000);

  test('maxBlockMs: 3000 and a loop stuck for good: another process holds between 3 and 5.5 s after the loop got stuck', async () => {
    const name = uniqueName('stuck');
    const holder = spawnHolder(
      { store: store.config(), name, ttlMs: TTL_MS, options: { keepAlive: 'thread', maxBlockMs: 3_000 }, block: { forMs: 'forever' } },
      'stuck holder',
    );
    const blocking = await holder.waitForEvent('blocking', { timeoutMs: 20_000 });
    const competitor = store.persister();
    const heldAt = await pollAcquire(competitor, name, 50, 10_000);
    expect(heldAt).not.toBeNull();
    const after = (heldAt as number) - blocking.t;
    figure(`loop stuck (maxBlockMs 3000) → another process holds: ${after} ms (${_label}, ttl ${TTL_MS} ms)`);
    expect(after).toBeGreaterThanOrEqual(3_000);
    expect(after).toBeLessThan(5_500);
    // With the default onLost and no listener the frozen holder ended itself, before the lock moved.
    const exit = await holder.waitForExit(5_000);
    expect(exit.signal).toBe('SIGKILL');
    const line = JSON.parse(holder.stderr.trim().split('\n').pop() as string) as { time: number; lock: string; reason: string; msg: string };
    expect(line).toMatchObject({ lock: name, reason: 'expired' });
    expect(line.msg).toContain('killing the process');
    expect(line.time).toBeLessThanOrEqual(heldAt as number);
    expect(holder.all('unblocked')).toEqual([]);
    await competitor.close?.();
  }, 40_000);

  test('SIGTERM: the process hooks release a thread-kept lease as in loop mode', async () => {
    const name = uniqueName('sigterm');
    const holder = spawnHolder({ store: store.config(), name, ttlMs: 10_000, options: { keepAlive: 'thread' }, listenLost: true }, 'sigterm holder');
    await holder.waitForEvent('thread-ready', { timeoutMs: 20_000 });
    holder.kill('SIGTERM');
    const exit = await holder.waitForExit(10_000);
    expect(exit.signal).toBe('SIGTERM');
    expect(holder.all('released')).toHaveLength(1);
    expect(await store.persister().inspect(name)).toBeNull(); // released, not left to expire (ttl 10 s)
  }, 40_000);

  test('a frozen holder whose lease is taken over in the store ends itself within a renewal interval plus a second', async () => {
    const name = uniqueName('seppuku');
    const holder = spawnHolder(
      { store: store.config(), name, ttlMs: TTL_MS, options: { keepAlive: 'thread' }, block: { forMs: 'forever' } },
      'frozen holder',
    );
    await holder.waitForEvent('blocking', { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 500)); // frozen for a while, lease still renewed
    expect(holder.exited).toBe(false);
    await store.erase(name);
    const competitor = store.persister();
    const taken = await competitor.acquire({ name, token: newToken(), ttlMs: 10_000, owner: OWNER });
    const takenAt = Date.now();
    expect(taken.acquired).toBe(true);
    const exit = await holder.waitForExit(RENEW_INTERVAL_MS + 1_000 + 2_000);
    figure(`frozen holder taken over → process gone: ${exit.at - takenAt} ms (${_label}, renew interval ${RENEW_INTERVAL_MS} ms)`);
    expect(exit.signal).toBe('SIGKILL');
    expect(exit.at - takenAt).toBeLessThan(RENEW_INTERVAL_MS + 1_000);
    const line = JSON.parse(holder.stderr.trim().split('\n').pop() as string) as { lock: string; reason: string };
    expect(line).toMatchObject({ lock: name, reason: 'taken-over' });
    expect(holder.all('unblocked')).toEqual([]);
    await competitor.close?.();
  }, 40_000);
});

// The file store only: a Redis client keeps its process alive by itself.
test('the thread never keeps the process alive: a process that only holds a lock (file store) exits by itself', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'singleton-keepalive-idle-'));
  const holder = spawnHolder(
    { store: { kind: 'file', dir }, name: uniqueName('idle'), ttlMs: TTL_MS, options: { keepAlive: 'thread' }, nothingElse: true },
    'idle holder',
  );
  const exit = await holder.waitForExit(20_000);
  expect(exit.code).toBe(0);
  expect(holder.all('thread-ready')).toHaveLength(1);
  rmSync(dir, { recursive: true, force: true });
}, 40_000);

