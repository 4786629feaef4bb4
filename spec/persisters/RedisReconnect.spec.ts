import Redis from 'ioredis';
import type { LostEvent } from '../../lib/events';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { Singleton } from '../../lib/Singleton';
import { recordingLogger } from '../helpers/recordingLogger';
import { startRedisServer, type RedisServer } from '../setup/redisServer';
import { waitUntil } from './conformance';

// A forgetful store is noticed at once (DESIGN.md "Safety rules"): when the connection comes
// back after a drop, every held lease is renewed right away. The renew interval here is far
// longer than the test, so only that reconnect check can explain a prompt `lost`.
const TTL_MS = 120_000;
const RENEW_INTERVAL_MS = 60_000;

let server: RedisServer;
const clients: Redis[] = [];

function connect(): Redis {
  // Reconnect every 20 ms, so the bound below measures the check, not ioredis's backoff.
  const client = new Redis(server.url, { retryStrategy: () => 20, maxRetriesPerRequest: null });
  client.on('error', () => undefined); // the outage is the point of the test
  clients.push(client);
  return client;
}

function holder(persister: RedisPersister, name: string): Singleton {
  return new Singleton(name, persister, {
    ttlMs: TTL_MS,
    renewIntervalMs: RENEW_INTERVAL_MS,
    handleSignals: false,
    handleErrors: false,
    onLost: 'emit',
    logger: recordingLogger().logger,
  });
}

/** kill -9 the server and start an empty one on the same port (no persistence: every lease is gone). */
async function crashAndRestartEmpty(): Promise<number> {
  const { port } = server;
  const exited = new Promise((resolve) => server.process.once('exit', resolve));
  server.process.kill('SIGKILL');
  await exited;
  server = await startRedisServer(port);
  return Date.now();
}

beforeAll(async () => {
  server = await startRedisServer();
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await server.stop();
});

describe('RedisPersister.onReconnect', () => {
  it('is called after a reconnect, not on the first connect, and stops when asked', async () => {
    const client = new Redis(server.url, { lazyConnect: true, retryStrategy: () => 20 });
    client.on('error', () => undefined);
    clients.push(client);
    const persister = new RedisPersister(client);
    let calls = 0;
    const stop = persister.onReconnect(() => (calls += 1));
    await client.connect();
    await client.ping();
    expect(calls).toBe(0);

    const admin = connect();
    await admin.client('KILL', 'ID', String(await client.client('ID')));
    await waitUntil(() => calls === 1, 5_000, 'the reconnect listener was called');
    await client.ping();

    stop();
    await admin.client('KILL', 'ID', String(await client.client('ID')));
    await waitUntil(async () => (await client.ping().catch(() => '')) === 'PONG', 5_000, 'reconnected again');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(calls).toBe(1);
  });

  it('refuses a listener that is not a function', () => {
    const persister = new RedisPersister(connect());
    expect(() => persister.onReconnect('soon' as unknown as () => void)).toThrow(/listener.*function.*soon/);
  });
});

describe('a holder on a Redis that restarts empty', () => {
  it('is told `lost` (expired) within a second of the server being back, long before its next renewal', async () => {
    const singleton = holder(new RedisPersister(connect()), 'forgotten');
    const lost: Array<{ event: LostEvent; at: number }> = [];
    singleton.on('lost', (event) => lost.push({ event, at: Date.now() }));
    expect(await singleton.lock()).toBe(true);

    const backAt = await crashAndRestartEmpty();
    await waitUntil(() => lost.length > 0, 10_000, 'the holder was told its lease is gone');
    expect(lost[0].event.reason).toBe('expired');
    expect(lost[0].at - backAt).toBeLessThan(1_000);
    expect(singleton.state).toBe('lost');
    // The lock is free in the restarted store: another instance takes it with a higher fence.
  });

  it('keeps a lease that survived the drop, renewing it at once instead of losing it', async () => {
    const client = connect();
    const singleton = holder(new RedisPersister(client), 'remembered');
    const renewed: number[] = [];
    singleton.on('renewed', () => renewed.push(Date.now()));
    singleton.on('lost', () => {
      throw new Error('a lease that is still in the store must not be reported lost');
    });
    expect(await singleton.lock()).toBe(true);

    const admin = connect();
    const droppedAt = Date.now();
    await admin.client('KILL', 'ID', String(await client.client('ID')));
    await waitUntil(() => renewed.length > 0, 5_000, 'the lease was renewed after the reconnect');
    expect(renewed[0] - droppedAt).toBeLessThan(1_000);
    expect(singleton.state).toBe('locked');
    await singleton.release();
  });

  it('stops listening within one renew interval once nothing is held, and keeps one listener across lock cycles', async () => {
    const client = connect();
    const renewIntervalMs = 500;
    const singleton = new Singleton('listeners', new RedisPersister(client), {
      ttlMs: 3_000,
      renewIntervalMs,
      handleSignals: false,
      handleErrors: false,
      onLost: 'emit',
      logger: recordingLogger().logger,
    });
    const before = client.listenerCount('ready');
    await singleton.lock();
    expect(client.listenerCount('ready')).toBe(before + 1);
    await singleton.release();
    // Locked again before the keeper's next tick: the same subscription serves.
    await singleton.lock();
    expect(client.listenerCount('ready')).toBe(before + 1);
    await singleton.release();
    const releasedAt = Date.now();
    await waitUntil(() => client.listenerCount('ready') === before, 10_000, 'the reconnect listener was removed');
    expect(Date.now() - releasedAt).toBeLessThanOrEqual(renewIntervalMs + 1_000);
  });
});

describe('the release subscriber across a reconnect', () => {
  it('leaves no unhandled rejection when re-subscribing after a reconnect fails', async () => {
    // Found by `npm run chaos` (a worker died of "Connection is closed." during store restarts):
    // ioredis re-subscribes on its own after a reconnect and does not handle that SUBSCRIBE's
    // failure; the persister re-subscribes itself (handled), so ioredis's must be off. Made
    // deterministic here with an ACL change: Redis drops the subscriber, and the re-SUBSCRIBE fails.
    const admin = connect();
    await admin.acl('SETUSER', 'watcher', 'on', '>secret', '~*', '&*', '+@all');
    const client = new Redis(server.port, '127.0.0.1', { username: 'watcher', password: 'secret', retryStrategy: () => 20 });
    client.on('error', () => undefined);
    clients.push(client);
    const persister = new RedisPersister(client);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let woken = 0;
      const unwatch = await persister.watch('resubscribe', () => (woken += 1));
      // Redis 7 disconnects a subscriber whose channel permission is withdrawn; it reconnects, and
      // every SUBSCRIBE now fails with NOPERM.
      await admin.acl('SETUSER', 'watcher', 'resetchannels');
      await waitUntil(() => woken > 0, 5_000, 'the watcher was woken after the reconnect');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(unhandled).toEqual([]);
      await unwatch();
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await admin.acl('DELUSER', 'watcher');
    }
  });
});
