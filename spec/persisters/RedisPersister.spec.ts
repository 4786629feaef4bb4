import { randomBytes } from 'node:crypto';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import Redis, { type RedisOptions } from 'ioredis';
import { PersisterError } from '../../lib/errors';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { ACQUIRE_SCRIPT } from '../../lib/persisters/redis/acquire';
import { FENCE_RECORD_TTL_MS } from '../../lib/persisters/redis/lua';
import { RENEW_SCRIPT } from '../../lib/persisters/redis/renew';
import { freePort, startRedisServer, type RedisServer } from '../setup/redisServer';
import { describePersister, fenceAfter, newToken, testOwner, waitUntil } from './conformance';

const sharedUrl = (): string => {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set: the jest global setup should have started redis-server');
  return url;
};
const runId = randomBytes(4).toString('hex');
const clients: Redis[] = [];

/** A client that the afterAll below closes. */
function connect(url = sharedUrl(), options: RedisOptions = {}): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1, ...options });
  client.on('error', () => undefined); // failures are asserted through the persister
  clients.push(client);
  return client;
}

afterAll(async () => {
  const close = async (c: Redis) => {
    if (c.status === 'ready') await c.quit().catch(() => c.disconnect());
    else if (c.status !== 'end') c.disconnect();
  };
  await Promise.all(clients.map(close));
});

describePersister('RedisPersister (conformance)', async () => {
  const persister = new RedisPersister(connect(), { keyPrefix: `test:${runId}:conf:` });
  return { persister, cleanup: () => persister.close() };
});

describe('RedisPersister on the shared Redis', () => {
  const keyPrefix = `test:${runId}:redis:`;
  let admin: Redis;
  let persister: RedisPersister;
  let seq = 0;
  const uniqueName = (hint: string) => `${hint}-${++seq}`;

  beforeAll(() => {
    admin = connect();
    persister = new RedisPersister(connect(), { keyPrefix });
  });
  afterAll(() => persister.close());

  it('lays out the lease and the fence record as documented', async () => {
    const name = uniqueName('layout');
    const token = newToken();
    const result = await persister.acquire({ name, token, ttlMs: 10_000, owner: { ...testOwner(7), owner: 'tester 7\nsecond line' } });
    if (!result.acquired) throw new Error('not acquired');
    const lease = `${keyPrefix}{${name}}`;
    expect(await admin.type(lease)).toBe('string');
    expect(await admin.get(lease)).toBe(token);
    const pttl = await admin.pttl(lease);
    expect(pttl).toBeGreaterThan(9_000);
    expect(pttl).toBeLessThanOrEqual(10_000);
    expect(await admin.type(`${lease}:fence`)).toBe('string');
    const { fencingToken, acquiredAt } = result.lease;
    expect(await admin.get(`${lease}:fence`)).toBe(`h-\n${fencingToken}\n${acquiredAt.getTime()}\n40007\nhost-7\ntester 7\nsecond line`);
    expect(result.lease.expiresAt.getTime()).toBe(acquiredAt.getTime() + 10_000);
    // the record expires exactly a day after the lease, which is how the lease's expiry is known after it is gone
    const recordPttl = await admin.pttl(`${lease}:fence`);
    expect(recordPttl - FENCE_RECORD_TTL_MS).toBeLessThanOrEqual(pttl);
    expect(recordPttl - FENCE_RECORD_TTL_MS).toBeGreaterThan(pttl - 50);
    expect(await persister.inspect(name)).toMatchObject({ owner: 'tester 7\nsecond line', hostname: 'host-7', pid: 40007 });
    // released with nobody waiting: the record goes with the lease (nothing is left of a name used once)
    expect(await persister.release({ name, token })).toBe(true);
    expect(await admin.exists(lease, `${lease}:fence`)).toBe(0);
    const next = await persister.acquire({ name, token: newToken(), ttlMs: 10_000, owner: testOwner(8) });
    if (!next.acquired) throw new Error('not acquired again');
    expect(Number(next.lease.fencingToken)).toBeGreaterThan(Number(fencingToken));
    expect(next.expired).toBeUndefined();
  });

  it('keeps the record of a released lease whose fence is ahead of the clock, so the next fence is above it', async () => {
    const name = uniqueName('ahead');
    const lease = `${keyPrefix}{${name}}`;
    const ahead = Date.now() * 1000 + 60_000_000; // a fence a minute ahead of the clock (a failover to a slower clock)
    await admin.set(`${lease}:fence`, `r-\n${ahead}\n${Date.now()}\n1\nh\nold`, 'PX', 60_000);
    const tokens = [newToken(), newToken()];
    const first = await persister.acquire({ name, token: tokens[0], ttlMs: 5_000, owner: testOwner(1) });
    if (!first.acquired) throw new Error('not acquired');
    expect(first.lease.fencingToken).toBe(ahead + 1);
    expect(await admin.get(lease)).toBe(`${tokens[0]}*`); // marked: its release keeps the record
    expect(await persister.release({ name, token: tokens[0] })).toBe(true);
    expect((await admin.get(`${lease}:fence`))?.slice(0, 3)).toBe('r-\n');
    const second = await persister.acquire({ name, token: tokens[1], ttlMs: 5_000, owner: testOwner(2) });
    if (!second.acquired) throw new Error('not acquired again');
    expect(second.lease.fencingToken).toBe(ahead + 2);
    expect(second.expired).toBeUndefined();
    await persister.release({ name, token: tokens[1] });
  });

  it('returns the fence as a safe integer: server time in µs, printed without exponent', async () => {
    const result = await persister.acquire({ name: uniqueName('fence'), token: newToken(), ttlMs: 5_000, owner: testOwner(1) });
    if (!result.acquired) throw new Error('not acquired');
    const fence = result.lease.fencingToken as number;
    expect(Number.isSafeInteger(fence)).toBe(true);
    expect(Math.abs(fence / 1000 - Date.now())).toBeLessThan(2_000);
  });

  it('keeps the record a day past the lease on renew, and reports the renewed expiry of a lease taken over', async () => {
    const name = uniqueName('renew');
    const token = newToken();
    await persister.acquire({ name, token, ttlMs: 5_000, owner: testOwner(1) });
    const renewed = await persister.renew({ name, token, ttlMs: 60_000 });
    if (!renewed.renewed) throw new Error('not renewed');
    const lease = `${keyPrefix}{${name}}`;
    const [leasePttl, recordPttl] = await Promise.all([admin.pttl(lease), admin.pttl(`${lease}:fence`)]);
    expect(leasePttl).toBeGreaterThan(55_000);
    expect(Math.abs(recordPttl - FENCE_RECORD_TTL_MS - leasePttl)).toBeLessThan(50);
    // a short renewal, left to expire: the taker learns when it expired (the renewed expiry, not the first one)
    const short = await persister.renew({ name, token, ttlMs: 150 });
    if (!short.renewed) throw new Error('not renewed');
    await waitUntil(async () => (await admin.exists(lease)) === 0, 5_000, 'the lease to expire');
    const taken = await persister.acquire({ name, token: newToken(), ttlMs: 5_000, owner: testOwner(2) });
    if (!taken.acquired) throw new Error('not taken over');
    // Redis keeps expiries against its per-command millisecond clock, and the scripts read TIME
    // (µs, floored to ms): the two may differ by the millisecond being rounded.
    expect(Math.abs((taken.expired?.expiresAt.getTime() ?? 0) - short.expiresAt.getTime())).toBeLessThanOrEqual(1);
    expect(taken.expired).toMatchObject({ owner: 'tester-1', pid: 40001 });
  });

  it('publishes a release only when the lease is marked: by a conflicting acquire or by watch()', async () => {
    // a plain subscriber (not watch(): that marks the name) hears only marked releases
    const listener = connect();
    const heard: string[] = [];
    listener.on('message', (channel: string) => heard.push(channel));
    const names = [uniqueName('quiet'), uniqueName('conflict'), uniqueName('watched')];
    const channels = names.map((name) => `${keyPrefix}{${name}}:released`);
    await listener.subscribe(...channels);
    const tokens = names.map(() => newToken());
    const stop = await persister.watch(names[2], () => undefined); // before the lease exists: marks the record
    for (let i = 0; i < names.length; i++) await persister.acquire({ name: names[i], token: tokens[i], ttlMs: 5_000, owner: testOwner(1) });
    const conflict = await persister.acquire({ name: names[1], token: newToken(), ttlMs: 5_000, owner: testOwner(2) });
    expect(conflict.acquired).toBe(false);
    expect(await admin.get(`${keyPrefix}{${names[0]}}`)).toBe(tokens[0]);
    expect(await admin.get(`${keyPrefix}{${names[1]}}`)).toBe(`${tokens[1]}*`);
    expect(await admin.get(`${keyPrefix}{${names[2]}}`)).toBe(`${tokens[2]}*`);
    // a marked lease renews and releases with its token as any other
    expect(await persister.renew({ name: names[1], token: tokens[1], ttlMs: 5_000 })).toMatchObject({ renewed: true });
    expect(await persister.acquire({ name: names[2], token: tokens[2], ttlMs: 5_000, owner: testOwner(1) })).toMatchObject({ acquired: true });
    for (let i = 0; i < names.length; i++) expect(await persister.release({ name: names[i], token: tokens[i] })).toBe(true);
    await waitUntil(() => heard.length >= 2, 5_000, 'the two marked releases');
    await admin.ping(); // anything published before this reply has reached the listener too
    await listener.ping();
    expect(heard.sort()).toEqual([channels[1], channels[2]].sort());
    await stop();
  });

  it('marks the current lease when watch() starts, so its release wakes the watcher', async () => {
    const name = uniqueName('watch-held');
    const token = newToken();
    await persister.acquire({ name, token, ttlMs: 5_000, owner: testOwner(1) });
    let calls = 0;
    const stop = await persister.watch(name, () => calls++);
    expect(await admin.get(`${keyPrefix}{${name}}`)).toBe(`${token}*`);
    await persister.release({ name, token });
    await waitUntil(() => calls === 1, 5_000, 'the release notification');
    await stop();
  });

  it('replaces a fence record it cannot read (an older version\'s hash), keeping the fence increasing', async () => {
    const name = uniqueName('old-record');
    const lease = `${keyPrefix}{${name}}`;
    const old = Date.now() * 1000 + 60_000_000; // a fence a minute ahead of the clock
    await admin.hset(`${lease}:fence`, { f: String(old), owner: 'old', rel: '1' });
    const result = await persister.acquire({ name, token: newToken(), ttlMs: 5_000, owner: testOwner(1) });
    if (!result.acquired) throw new Error('not acquired');
    expect(await admin.type(`${lease}:fence`)).toBe('string');
    expect(result.expired).toBeUndefined();
    expect(Number(result.lease.fencingToken)).toBeGreaterThan(0);
  });

  it('leaves no record behind when releasing a lease whose record was deleted', async () => {
    const name = uniqueName('no-record');
    const token = newToken();
    await persister.acquire({ name, token, ttlMs: 5_000, owner: testOwner(1) });
    const lease = `${keyPrefix}{${name}}`;
    await admin.del(`${lease}:fence`);
    expect(await persister.inspect(name)).toMatchObject({ owner: '', fencingToken: 0 });
    expect(await persister.release({ name, token })).toBe(true);
    expect(await admin.exists(lease, `${lease}:fence`)).toBe(0);
  });

  it('refuses a hostname with a line break (the record separates fields by lines)', async () => {
    const owner = { ...testOwner(1), hostname: 'a\nb' };
    await expect(persister.acquire({ name: uniqueName('host'), token: newToken(), ttlMs: 1_000, owner })).rejects.toThrow(
      new TypeError('Expected `owner.hostname` to be a host name without line breaks, got "a\\nb" (string)'),
    );
  });

  it('renews 2000 leases in one renewMany call', async () => {
    const names = Array.from({ length: 2_000 }, () => uniqueName('bulk'));
    const tokens = names.map(() => newToken());
    await Promise.all(names.map((name, i) => persister.acquire({ name, token: tokens[i], ttlMs: 5_000, owner: testOwner(1) })));
    const results = await persister.renewMany(names.map((name, i) => ({ name, token: tokens[i], ttlMs: 30_000 })));
    expect(results.filter((r) => !(r instanceof Error) && r.renewed)).toHaveLength(names.length);
  });

  it('delivers a release made through another connection to a watcher', async () => {
    const name = uniqueName('watch');
    const other = new RedisPersister(connect(), { keyPrefix });
    let calls = 0;
    const stop = await persister.watch(name, () => calls++);
    const token = newToken();
    await other.acquire({ name, token, ttlMs: 5_000, owner: testOwner(2) });
    expect(await other.release({ name, token })).toBe(true);
    await waitUntil(() => calls === 1, 5_000, 'the release notification');
    await stop();
    await other.close();
  });

  it('shares one subscription per channel and unsubscribes with the last watcher', async () => {
    const name = uniqueName('refcount');
    const channel = `${keyPrefix}{${name}}:released`;
    const subscribers = async () => Number(((await admin.pubsub('NUMSUB', channel)) as [string, number])[1]);
    const stopA = await persister.watch(name, () => undefined);
    const stopB = await persister.watch(name, () => undefined);
    expect(await subscribers()).toBe(1);
    await stopA();
    expect(await subscribers()).toBe(1);
    await stopB();
    await stopB(); // a second call is harmless
    // With the last watcher gone the subscriber connection itself is closed; the server sees it go at once or a moment later.
    let left = -1;
    await waitUntil(async () => (left = await subscribers()) === 0, 2_000, `the last subscription to go (still ${left})`);
  });

  it('leaves a client passed in open on close(), and quits it with ownsClient', async () => {
    const kept = connect();
    await new RedisPersister(kept, { keyPrefix }).close();
    expect(await kept.ping()).toBe('PONG');
    const owned = connect();
    const owning = new RedisPersister(owned, { keyPrefix, ownsClient: true });
    await owning.watch(uniqueName('owned'), () => undefined);
    await owning.close();
    await waitUntil(() => owned.status === 'end', 2_000, 'the owned client to end');
  });

  it('rejects bad clients and options with errors naming the value', () => {
    const client = connect(sharedUrl(), { lazyConnect: true });
    const make = (c: unknown, options?: unknown) => () => new RedisPersister(c as Redis, options as never);
    expect(make({ get: () => 1 })).toThrow(new TypeError('Expected `client` to be an ioredis Redis or Cluster client, got {} (object)'));
    expect(make(undefined)).toThrow(TypeError);
    expect(make(client, null)).toThrow(/Expected `options` to be an object, got null/);
    expect(make(client, { keyPrefix: 5 })).toThrow(new TypeError('Expected `options.keyPrefix` to be a string without { or }, got 5 (number)'));
    expect(make(client, { keyPrefix: 'app{x}:' })).toThrow(/`options.keyPrefix` to be a string without { or }, got "app{x}:"/);
    expect(make(client, { operationTimeoutMs: 0 })).toThrow(RangeError);
    expect(make(client, { operationTimeoutMs: '5' })).toThrow(/Expected `options.operationTimeoutMs` to be a whole number/);
    expect(make(client, { operationTimeoutMs: 1.5 })).toThrow(RangeError);
    expect(make(client, { ownsClient: 'yes' })).toThrow(/Expected `options.ownsClient` to be true or false/);
    expect(make(client, { keyPrefix: undefined })).not.toThrow();
  });

  it('rejects a bad ttlMs with a RangeError, not a store error', async () => {
    await expect(persister.acquire({ name: 'x', token: newToken(), ttlMs: 0, owner: testOwner(1) })).rejects.toThrow(RangeError);
    await expect(persister.renew({ name: 'x', token: newToken(), ttlMs: 1.5 })).rejects.toThrow(RangeError);
  });
});

describe('RedisPersister on an unreachable Redis', () => {
  it('rejects with PersisterError at once when the client fails fast', async () => {
    const port = await freePort();
    const client = connect(`redis://127.0.0.1:${port}`, {
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    const persister = new RedisPersister(client);
    const started = Date.now();
    await expect(persister.acquire({ name: 'down', token: newToken(), ttlMs: 1_000, owner: testOwner(1) })).rejects.toThrow(PersisterError);
    await expect(persister.inspect('down')).rejects.toThrow(PersisterError);
    const many = await persister.renewMany([{ name: 'down', token: newToken(), ttlMs: 1_000 }]);
    expect(many[0]).toBeInstanceOf(PersisterError);
    expect(Date.now() - started).toBeLessThan(2_000);
    await persister.close();
  });

  it('times out with PersisterError when the server accepts but never answers', async () => {
    const sockets: Socket[] = [];
    const blackHole = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
    const { port } = blackHole.address() as AddressInfo;
    // A black hole never closes its end: ioredis would wait disconnectTimeout (2 s) before
    // destroying each socket, keeping the worker up after the run.
    const client = connect(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: null, disconnectTimeout: 50 });
    const persister = new RedisPersister(client, { operationTimeoutMs: 200 });
    try {
      const started = Date.now();
      const error = await persister.release({ name: 'down', token: newToken() }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PersisterError);
      expect((error as Error).message).toMatch(/timed out after 200 ms/);
      await expect(persister.watch('down', () => undefined)).rejects.toThrow(PersisterError);
      // The pipelined renewal goes under the same deadlines as the scripts.
      const [renewal] = await persister.renewMany([{ name: 'down', token: newToken(), ttlMs: 1_000 }, { name: 'down2', token: newToken(), ttlMs: 1_000 }]);
      expect(renewal).toBeInstanceOf(PersisterError);
      expect((renewal as Error).message).toMatch(/^Renewing .*timed out after 200 ms/);
      expect(Date.now() - started).toBeLessThan(2_000);
      const owned = connect(`redis://127.0.0.1:${port}`, { disconnectTimeout: 50 });
      const closing = Date.now();
      await new RedisPersister(owned, { ownsClient: true }).close();
      expect(Date.now() - closing).toBeLessThan(500);
    } finally {
      await persister.close();
      client.disconnect();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => blackHole.close(resolve));
    }
  });
});

describe('RedisPersister on a private redis-server (flush, restart, pause)', () => {
  let server: RedisServer;
  let admin: Redis;
  let client: Redis;
  let persister: RedisPersister;
  let seq = 0;
  const uniqueName = (hint: string) => `${hint}-${++seq}`;

  beforeAll(async () => {
    server = await startRedisServer();
    admin = connect(server.url);
    client = connect(server.url);
    persister = new RedisPersister(client, { keyPrefix: 'private:', operationTimeoutMs: 500 });
  });
  afterAll(async () => {
    await persister.close();
    await Promise.all([admin, client].map((c) => c.quit().catch(() => c.disconnect())));
    await server.stop();
  });

  it('keeps the fence increasing after FLUSHALL lost every key', async () => {
    const name = uniqueName('flush');
    const first = await persister.acquire({ name, token: newToken(), ttlMs: 60_000, owner: testOwner(1) });
    if (!first.acquired) throw new Error('not acquired');
    await admin.flushall();
    const second = await persister.acquire({ name, token: newToken(), ttlMs: 60_000, owner: testOwner(2) });
    if (!second.acquired) throw new Error('not acquired after flush');
    expect(fenceAfter(second.lease.fencingToken, first.lease.fencingToken)).toBe(true);
    expect(second.expired).toBeUndefined();
  });

  it('falls back to EVAL after SCRIPT FLUSH, for acquire and for renewMany', async () => {
    const name = uniqueName('noscript');
    const token = newToken();
    await admin.script('FLUSH');
    const acquired = await persister.acquire({ name, token, ttlMs: 5_000, owner: testOwner(1) });
    expect(acquired.acquired).toBe(true);
    expect(await admin.script('EXISTS', ACQUIRE_SCRIPT.sha1)).toEqual([1]);
    await admin.script('FLUSH');
    const results = await persister.renewMany([
      { name, token, ttlMs: 10_000 },
      { name, token: newToken(), ttlMs: 10_000 },
    ]);
    expect(results[0]).toMatchObject({ renewed: true });
    expect(results[1]).toMatchObject({ renewed: false, holder: { owner: 'tester-1' } });
    expect(await admin.script('EXISTS', RENEW_SCRIPT.sha1)).toEqual([1]);
  });

  it('fails with PersisterError within operationTimeoutMs while Redis is paused', async () => {
    await admin.call('CLIENT', 'PAUSE', '2000', 'WRITE');
    try {
      const started = Date.now();
      const error = await persister.acquire({ name: uniqueName('paused'), token: newToken(), ttlMs: 5_000, owner: testOwner(1) }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PersisterError);
      expect((error as Error).message).toMatch(/timed out after 500 ms/);
      expect(Date.now() - started).toBeLessThan(1_500);
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
    }
  });

  it('calls every watcher once after the subscriber reconnects, and keeps delivering', async () => {
    const name = uniqueName('reconnect');
    let calls = 0;
    const stop = await persister.watch(name, () => calls++);
    await admin.client('KILL', 'TYPE', 'pubsub');
    await waitUntil(() => calls === 1, 5_000, 'the watcher to be called after the reconnect');
    const token = newToken();
    await persister.acquire({ name, token, ttlMs: 5_000, owner: testOwner(1) });
    await persister.release({ name, token });
    await waitUntil(() => calls === 2, 5_000, 'a release after the reconnect');
    await stop();
  });

  it('keeps the fence increasing across a real restart without persistence', async () => {
    const name = uniqueName('restart');
    const first = await persister.acquire({ name, token: newToken(), ttlMs: 60_000, owner: testOwner(1) });
    if (!first.acquired) throw new Error('not acquired');
    await server.stop();
    server = await startRedisServer(server.port);
    let second: Awaited<ReturnType<RedisPersister['acquire']>> | undefined;
    await waitUntil(
      async () => {
        second = await persister.acquire({ name, token: newToken(), ttlMs: 60_000, owner: testOwner(2) }).catch(() => undefined);
        return second !== undefined;
      },
      10_000,
      'the restarted server to answer',
    );
    if (!second?.acquired) throw new Error('not acquired after restart');
    expect(fenceAfter(second.lease.fencingToken, first.lease.fencingToken)).toBe(true);
  });
});
