/**
 * RedisPersister on a real 3-master Redis Cluster (started by the test on
 * loopback): the conformance suite through an ioredis `Cluster`, hash-tagged
 * keys of a lock in one slot, renewals across slots, and the pub/sub hand-over.
 */
import { Cluster } from 'ioredis';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { Singleton } from '../../lib/Singleton';
import { recordingLogger } from '../helpers/ControllablePersister';
import { startRedisCluster, type RedisCluster } from '../setup/redisCluster';
import { describePersister, newToken, testOwner, waitUntil } from './conformance';

let cluster: RedisCluster;
const clients: Cluster[] = [];
const persisters: RedisPersister[] = [];

function connect(): Cluster {
  const client = new Cluster(cluster.nodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  clients.push(client);
  return client;
}

function persister(): RedisPersister {
  const p = new RedisPersister(connect(), { keyPrefix: 'cluster:' });
  persisters.push(p);
  return p;
}

beforeAll(async () => {
  cluster = await startRedisCluster();
}, 60_000);

afterAll(async () => {
  await Promise.all(persisters.map((p) => p.close()));
  await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
  await cluster?.stop();
});

describePersister('RedisPersister on a Redis Cluster (conformance)', async () => ({ persister: persister() }));

describe('RedisPersister on a Redis Cluster', () => {
  it('keeps a lock’s keys in one slot, and renews many leases that span every node', async () => {
    const p = persister();
    const names = Array.from({ length: 60 }, (_, i) => `spread-${Date.now()}-${i}`);
    const tokens = names.map(() => newToken());
    for (let i = 0; i < names.length; i++) {
      expect((await p.acquire({ name: names[i], token: tokens[i], ttlMs: 5_000, owner: testOwner(i) })).acquired).toBe(true);
    }
    const slots = new Set<number>();
    const admin = connect();
    for (const name of names.slice(0, 10)) {
      const lease = Number(await admin.cluster('KEYSLOT', `cluster:{${name}}`));
      expect(Number(await admin.cluster('KEYSLOT', `cluster:{${name}}:fence`))).toBe(lease);
      slots.add(lease);
    }
    expect(slots.size).toBeGreaterThan(1);
    const results = await p.renewMany(names.map((name, i) => ({ name, token: tokens[i], ttlMs: 5_000 })));
    expect(results.every((r) => !(r instanceof Error) && r.renewed)).toBe(true);
    for (let i = 0; i < names.length; i++) expect(await p.release({ name: names[i], token: tokens[i] })).toBe(true);
  });

  it('lists the leases of every master (SCAN on each), and force-releases one on any node', async () => {
    const p = persister();
    const base = `list-${Date.now()}-`;
    const names = Array.from({ length: 30 }, (_, i) => `${base}${String(i).padStart(2, '0')}`);
    const tokens = names.map(() => newToken());
    for (let i = 0; i < names.length; i++) await p.acquire({ name: names[i], token: tokens[i], ttlMs: 10_000, owner: testOwner(i) });
    const admin = connect();
    const slots = await admin.cluster('SLOTS');
    const owners = new Set<string>();
    for (const name of names) owners.add(nodeOf(slots, Number(await admin.cluster('KEYSLOT', `cluster:{${name}}`))));
    expect(owners.size).toBeGreaterThan(1); // the leases live on more than one master
    expect((await p.list({ prefix: base })).map((l) => l.name)).toEqual(names);
    // A fresh client knows no node yet: list() connects it before scanning every master.
    expect((await persister().list({ prefix: base })).map((l) => l.name)).toEqual(names);
    const evicted = await p.forceRelease(names[7]);
    expect(evicted?.owner).toBe(testOwner(7).owner);
    const told = await p.renew({ name: names[7], token: tokens[7], ttlMs: 10_000 });
    expect(told.renewed === false && told.holder?.owner).toBe('release --force');
    expect((await p.list({ prefix: base })).map((l) => l.name)).toEqual(names.filter((_, i) => i !== 7));
  });

  it('keeps a name that starts with "}" in one slot too', async () => {
    const p = persister();
    const name = `}odd-${Date.now()}`;
    const token = newToken();
    const got = await p.acquire({ name, token, ttlMs: 5_000, owner: testOwner(1) });
    expect(got.acquired).toBe(true);
    expect((await p.renew({ name, token, ttlMs: 5_000 })).renewed).toBe(true);
    expect((await p.inspect(name))?.owner).toBe(testOwner(1).owner);
    expect(await p.release({ name, token })).toBe(true);
  });

  it('hands over to a waiting Singleton through the release notification', async () => {
    const name = `cluster-handover-${Date.now()}`;
    const quiet = recordingLogger().logger;
    const a = new Singleton(name, persister(), { owner: 'A', logger: quiet });
    const b = new Singleton(name, persister(), { owner: 'B', retryIntervalMs: 60_000, logger: quiet });
    expect(await a.lock()).toBe(true);
    const waiting = b.waitForLock({ timeoutMs: 20_000 });
    await waitUntil(() => b.state === 'conflict', 5_000, 'B standing by');
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await a.release();
    await waiting;
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect((await b.inspect())?.fencingToken).toBe(b.fencingToken);
    await b.release();
  });
});

/** The `host:port` of the master serving `slot`, from a CLUSTER SLOTS reply. */
function nodeOf(slots: unknown, slot: number): string {
  for (const [from, to, master] of slots as Array<[number, number, [string, number]]>) {
    if (slot >= from && slot <= to) return `${master[0]}:${master[1]}`;
  }
  return 'none';
}
