/**
 * How persisters describe themselves for the keep-alive thread (`threadDescriptor()`),
 * and the refusal of stores no other thread can reach, at construction.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis, { Cluster, type RedisOptions } from 'ioredis';
import { MongoClient } from 'mongodb';
import { threadDescriptorOf, type ThreadDescriptor } from '../../lib/keepAlive/descriptor';
import { openDescriptor } from '../../lib/keepAlive/openDescriptor';
import { FilePersister } from '../../lib/persisters/FilePersister';
import { fromCallbackPersister } from '../../lib/persisters/fromCallbackPersister';
import { persisterFromUrl } from '../../lib/persisters/fromUrl';
import { MemoryPersister } from '../../lib/persisters/MemoryPersister';
import { MongoPersister } from '../../lib/persisters/MongoPersister';
import type { Persister } from '../../lib/persisters/Persister';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { Singleton } from '../../lib/Singleton';
import { newToken } from '../../lib/time';

const REDIS_URL = process.env.REDIS_URL as string;
const OWNER = { owner: 'descriptor-spec', hostname: 'spec', pid: process.pid };
const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function lazyRedis(options: RedisOptions): Redis {
  const client = new Redis({ lazyConnect: true, ...options });
  cleanups.push(() => client.disconnect());
  return client;
}

/** A description must cross to a worker: structured clone accepts it (Buffers arrive as Uint8Arrays, which TLS takes too). */
function crossesThreads(descriptor: ThreadDescriptor): ThreadDescriptor {
  const copy = structuredClone(descriptor);
  expect(JSON.stringify(copy, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v))).toBe(
    JSON.stringify(descriptor, function (this: Record<string, unknown>, k, v: unknown) {
      const raw = this[k];
      return raw instanceof Uint8Array ? [...raw] : v;
    }),
  );
  return copy;
}

describe('threadDescriptor()', () => {
  test('Redis: host, port, db, credentials and TLS options, nothing dropped', () => {
    const ca = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const client = lazyRedis({ host: 'redis.internal', port: 6380, db: 2, username: 'app', password: 's3cret', tls: { ca, servername: 'redis.internal' } });
    const d = threadDescriptorOf(new RedisPersister(client, { keyPrefix: 'app:', operationTimeoutMs: 1234 }));
    expect(d).toMatchObject({ kind: 'redis', keyPrefix: 'app:', operationTimeoutMs: 1234 });
    if (d.kind !== 'redis') throw new Error('not a redis descriptor');
    expect(d.options).toMatchObject({ host: 'redis.internal', port: 6380, db: 2, username: 'app', password: 's3cret', tls: { servername: 'redis.internal' } });
    expect(d.dropped).toBeUndefined();
    const copy = crossesThreads(d) as typeof d;
    expect(Buffer.from((copy.options.tls as { ca: Uint8Array }).ca).equals(ca)).toBe(true);
  });

  test('Redis: an option that is a function cannot cross threads and is named in `dropped`', () => {
    const client = lazyRedis({ port: 6379, retryStrategy: () => 10 });
    const d = threadDescriptorOf(new RedisPersister(client));
    expect(d.dropped).toEqual(['retryStrategy']);
    crossesThreads(d);
  });

  test('Redis Sentinel: the sentinels and the master name', () => {
    const client = lazyRedis({ sentinels: [{ host: '10.0.0.1', port: 26379 }], name: 'mymaster', sentinelPassword: 'sp' });
    const d = threadDescriptorOf(new RedisPersister(client));
    if (d.kind !== 'redis') throw new Error('not a redis descriptor');
    expect(d.options).toMatchObject({ sentinels: [{ host: '10.0.0.1', port: 26379 }], name: 'mymaster', sentinelPassword: 'sp' });
    crossesThreads(d);
  });

  test('Redis Cluster: the startup nodes and options, with their redisOptions', () => {
    const cluster = new Cluster([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true, redisOptions: { password: 'cp', tls: {} } });
    cleanups.push(() => cluster.disconnect());
    const d = threadDescriptorOf(new RedisPersister(cluster));
    expect(d).toMatchObject({ kind: 'redis-cluster', startupNodes: [{ host: '127.0.0.1', port: 7000 }] });
    if (d.kind !== 'redis-cluster') throw new Error('not a cluster descriptor');
    expect(d.options.redisOptions).toMatchObject({ password: 'cp', tls: {} });
    expect(d.dropped).toBeUndefined();
    crossesThreads(d);
  });

  test('a persister made from a URL is described by that URL and its options', async () => {
    const persister = await persisterFromUrl(`${REDIS_URL}?keyPrefix=url:`, { operationTimeoutMs: 900 });
    cleanups.push(() => persister.close());
    const d = threadDescriptorOf(persister);
    expect(d).toEqual({ kind: 'url', url: `${REDIS_URL}?keyPrefix=url:`, options: { operationTimeoutMs: 900 } });
    crossesThreads(d);
  });

  test('the file store: its directory', () => {
    const persister = new FilePersister({ dir: 'relative/locks' });
    expect(threadDescriptorOf(persister)).toEqual({ kind: 'file', dir: persister.dir });
  });

  test('MongoDB: the connection string, database, collection and write concern', () => {
    const client = new MongoClient('mongodb://db1.internal:27017,db2.internal:27017/?replicaSet=rs0');
    cleanups.push(() => client.close());
    const d = threadDescriptorOf(new MongoPersister(client.db('app'), { collection: 'locks' }));
    expect(d).toEqual({
      kind: 'mongodb',
      url: 'mongodb://db1.internal:27017,db2.internal:27017/?replicaSet=rs0',
      database: 'app',
      collection: 'locks',
      writeConcern: { w: 'majority' },
    });
    crossesThreads(d);
  });
});

describe("keepAlive: 'thread' refuses a store no other thread can reach, at construction", () => {
  test('MemoryPersister: TypeError saying why and what to do', () => {
    expect(() => new Singleton('x', new MemoryPersister(), { keepAlive: 'thread' })).toThrow(TypeError);
    expect(() => new Singleton('x', new MemoryPersister(), { keepAlive: 'thread' })).toThrow(
      /MemoryPersister cannot be.*this thread's memory.*keepAlive: 'loop'/,
    );
    expect(() => new Singleton('x', new MemoryPersister())).not.toThrow();
  });

  test('a custom persister without threadDescriptor(), and a seed-style callback persister', () => {
    const inner = new MemoryPersister();
    const custom: Persister = {
      capabilities: inner.capabilities,
      acquire: (r) => inner.acquire(r),
      renew: (r) => inner.renew(r),
      release: (r) => inner.release(r),
      inspect: (n) => inner.inspect(n),
    };
    expect(() => new Singleton('x', custom, { keepAlive: 'thread' })).toThrow(/no threadDescriptor\(\) method.*kind: 'module'/);
    const legacy = fromCallbackPersister({
      persistLock: (_n: string, cb: (e: Error | null) => void) => cb(null),
      deleteLock: (_n: string, cb: (e: Error | null) => void) => cb(null),
      lockExists: (_n: string, cb: (e: Error | null, exists?: boolean) => void) => cb(null, false),
    });
    expect(() => new Singleton('x', legacy, { keepAlive: 'thread' })).toThrow(TypeError);
  });

  test('a threadDescriptor() that returns something else', () => {
    const persister = Object.assign(new MemoryPersister(), { threadDescriptor: () => ({ kind: 'carrier-pigeon' }) });
    expect(() => new Singleton('x', persister as unknown as Persister, { keepAlive: 'thread' })).toThrow(/Expected `MemoryPersister.threadDescriptor\(\)` to be a ThreadDescriptor/);
  });
});

describe('openDescriptor: a persister of its own on the same store', () => {
  test('Redis: the thread-side persister sees and renews the lease the first one took', async () => {
    const client = new Redis(REDIS_URL);
    const original = new RedisPersister(client, { keyPrefix: 'desc:' });
    const copy = await openDescriptor(threadDescriptorOf(original));
    cleanups.push(() => client.disconnect(), () => copy.close());
    const name = `open-${Date.now()}`;
    const token = newToken();
    const taken = await original.acquire({ name, token, ttlMs: 5_000, owner: OWNER });
    expect(taken.acquired).toBe(true);
    expect((await copy.inspect(name))?.owner).toBe(OWNER.owner);
    expect(await copy.renew({ name, token, ttlMs: 5_000 })).toMatchObject({ renewed: true });
    expect(await copy.release({ name, token })).toBe(true);
    expect(await original.inspect(name)).toBeNull();
  });

  test('the file store: the same directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'singleton-desc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const original = new FilePersister({ dir });
    const copy = await openDescriptor(threadDescriptorOf(original));
    const token = newToken();
    expect((await original.acquire({ name: 'f', token, ttlMs: 5_000, owner: OWNER })).acquired).toBe(true);
    expect(await copy.renew({ name: 'f', token, ttlMs: 5_000 })).toMatchObject({ renewed: true });
    await copy.close();
  });
});
