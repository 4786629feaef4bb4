import Redis from 'ioredis';
import type { LostEvent } from '../../lib/events';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { Singleton } from '../../lib/Singleton';
import { recordingLogger } from '../helpers/recordingLogger';
import { SENTINEL_MASTER_NAME, startRedisSentinel, type RedisSentinelSetup } from '../setup/redisSentinel';
import { waitUntil } from './conformance';

// A RedisPersister over an ioredis Sentinel client, across a forced failover (SENTINEL FAILOVER):
// a lease held through it is kept or reported lost, never silently held twice; new acquisitions
// work on the new primary; fencing tokens keep increasing.

jest.setTimeout(120_000);

let setup: RedisSentinelSetup;
const clients: Redis[] = [];
const persisters: RedisPersister[] = [];

function sentinelClient(): Redis {
  const client = new Redis({
    sentinels: setup.sentinels,
    name: SENTINEL_MASTER_NAME,
    retryStrategy: () => 50,
    sentinelRetryStrategy: () => 50,
    maxRetriesPerRequest: null,
    // Leave the old primary at +switch-master, rather than when Sentinel gets round to demoting it
    // (until then it still takes writes): the reconnect check then renews on the new primary at once.
    failoverDetector: true,
    // The detector's own sentinel connections: no reconnecting to sentinels the test has stopped.
    sentinelReconnectStrategy: () => null,
  });
  client.on('error', () => undefined); // the failover drops connections on purpose
  clients.push(client);
  return client;
}

function singleton(persister: RedisPersister, name: string, ttlMs = 10_000): Singleton {
  return new Singleton(name, persister, {
    ttlMs,
    handleSignals: false,
    handleErrors: false,
    onLost: 'emit',
    retryIntervalMs: 100,
    logger: recordingLogger().logger,
  });
}

beforeAll(async () => {
  setup = await startRedisSentinel();
});

/** A persister over a new Sentinel client; both are closed after the tests. */
function sentinelPersister(): RedisPersister {
  const persister = new RedisPersister(sentinelClient(), { keyPrefix: 'sentinel:' });
  persisters.push(persister);
  return persister;
}

afterAll(async () => {
  await Promise.all(persisters.map((p) => p.close()));
  for (const c of clients) c.disconnect();
  // ioredis closes its failover detector's sentinel connections asynchronously after disconnect().
  await waitUntil(() => clients.every((c) => c.status === 'end'), 5_000, 'every Sentinel client closed');
  await new Promise((resolve) => setTimeout(resolve, 200));
  await setup?.stop();
});

describe('RedisPersister over Redis Sentinel', () => {
  it('keeps working across a forced failover: the held lease is kept or reported lost, never held twice; the fence increases', async () => {
    const persister = sentinelPersister();
    const other = sentinelPersister();

    const holder = singleton(persister, 'held', 30_000); // renewals every 10 s: only the reconnect check renews sooner
    const lost: LostEvent[] = [];
    holder.on('lost', (event) => lost.push(event));
    const renewedAt: number[] = [];
    holder.on('renewed', () => renewedAt.push(Date.now()));
    expect(await holder.lock()).toBe(true);
    const acquiredAt = Date.now();
    const before = holder.fencingToken as number;
    // Let the lease reach the replica before the failover (replication is asynchronous: see the README).
    await (persister.redisClient as Redis).wait(1, 1_000);

    const t0 = Date.now();
    const { from, to } = await setup.failover();
    if (process.env.DEBUG_SENTINEL) process.stderr.write(`failover ${Date.now() - t0} ms\n`);
    expect(to).not.toBe(from);
    const failedOverAt = Date.now();

    // The reconnect check renews at once on the new primary: the holder learns where it stands
    // within moments, not at its next renewal (10 s after the acquire).
    await waitUntil(() => lost.length > 0 || renewedAt.length > 0, 5_000, 'the holder renewed on the new primary or was told lost');
    expect(Date.now() - acquiredAt).toBeLessThan(9_000);

    if (process.env.DEBUG_SENTINEL) process.stderr.write(`told ${Date.now() - failedOverAt} ms after; lost=${lost.length}\n`);
    const rival = singleton(other, 'held');
    const rivalGot = await rival.lock();
    if (lost.length === 0) {
      // Kept: the lease was replicated, the holder still holds it, and nobody else can take it.
      expect(holder.state).toBe('locked');
      expect(rivalGot).toBe(false);
      expect(rival.holder?.fencingToken).toBe(before);
    } else {
      // Lost with the old primary: the holder was told before the rival could hold it.
      expect(holder.state).toBe('lost');
      expect(rivalGot).toBe(true);
      expect(rival.fencingToken as number).toBeGreaterThan(before);
      await rival.release();
    }

    // New acquisitions work on the new primary, and the fence keeps increasing.
    if (holder.state === 'locked') await holder.release();
    const next = singleton(other, 'held');
    expect(await next.lock()).toBe(true);
    expect(next.fencingToken as number).toBeGreaterThan(before);
    const fresh = singleton(other, 'fresh-after-failover');
    expect(await fresh.lock()).toBe(true);
    await Promise.all([next.release(), fresh.release()]);
    expect(await setup.primaryPort()).toBe(to);
  });

  it('hands over to a waiter after a failover (release notifications follow the new primary)', async () => {
    const persister = sentinelPersister();
    const first = singleton(persister, 'handover');
    expect(await first.lock()).toBe(true);
    const firstFence = first.fencingToken as number;
    const t0 = Date.now();
    await setup.failover();
    if (process.env.DEBUG_SENTINEL) process.stderr.write(`second failover ${Date.now() - t0} ms\n`);

    const waiter = singleton(sentinelPersister(), 'handover');
    const waiting = waiter.waitForLock({ timeoutMs: 30_000 });
    await waitUntil(() => waiter.state === 'conflict' || first.state === 'lost', 15_000, 'the waiter saw the holder');
    if (first.state === 'locked') await first.release();
    await waiting;
    expect(waiter.state).toBe('locked');
    expect(waiter.fencingToken as number).toBeGreaterThan(firstFence);
    await waiter.release();
  });
});
