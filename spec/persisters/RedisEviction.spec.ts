import { spawn } from 'node:child_process';
import Redis from 'ioredis';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { warnIfLeasesCanBeEvicted } from '../../lib/persisters/redis/evictionPolicy';
import { recordingLogger } from '../helpers/recordingLogger';
import { freePort, stopProcess } from '../setup/redisServer';
import { newToken, testOwner, waitUntil } from './conformance';

// A Redis that may evict keys can evict a live lease; the persister says so, once.

const stops: Array<() => Promise<void>> = [];
const clients: Redis[] = [];

/** A private redis-server with the given maxmemory-policy. */
async function redisWithPolicy(policy: string): Promise<Redis> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory', '64mb', '--maxmemory-policy', policy],
    { stdio: 'ignore' },
  );
  stops.push(() => stopProcess(child));
  const client = new Redis(port, '127.0.0.1', { retryStrategy: () => 20 });
  client.on('error', () => undefined);
  clients.push(client);
  await waitUntil(async () => (await client.ping().catch(() => '')) === 'PONG', 10_000, `redis-server on port ${port} answered`);
  return client;
}

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await Promise.all(stops.map((stop) => stop()));
});

async function acquireOnce(persister: RedisPersister, name: string): Promise<void> {
  const result = await persister.acquire({ name, token: newToken(), ttlMs: 5_000, owner: testOwner(1) });
  expect(result.acquired).toBe(true);
}

describe('RedisPersister eviction check', () => {
  it('warns once, naming the policy and what to do, on a Redis with allkeys-lru', async () => {
    const { logger, at } = recordingLogger();
    const persister = new RedisPersister(await redisWithPolicy('allkeys-lru'), { logger });
    await acquireOnce(persister, 'a');
    await waitUntil(() => at('warn').length > 0, 5_000, 'the eviction warning was logged');
    await acquireOnce(persister, 'b');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(at('warn')).toHaveLength(1);
    expect(at('warn')[0].msg).toMatch(/maxmemory-policy is "allkeys-lru".*evict a live lease.*noeviction/);
    expect(at('warn')[0].obj).toMatchObject({ maxmemoryPolicy: 'allkeys-lru' });
  });

  it('warns on volatile-lru too: every lease has a TTL, so volatile policies can evict them', async () => {
    const { logger, at } = recordingLogger();
    await warnIfLeasesCanBeEvicted(await redisWithPolicy('volatile-lru'), logger);
    expect(at('warn')).toHaveLength(1);
    expect(at('warn')[0].msg).toMatch(/"volatile-lru"/);
  });

  it('says nothing on noeviction', async () => {
    const { logger, lines } = recordingLogger();
    await warnIfLeasesCanBeEvicted(await redisWithPolicy('noeviction'), logger);
    expect(lines).toEqual([]);
  });

  it('notes a server that refuses CONFIG at debug level only', async () => {
    const client = await redisWithPolicy('allkeys-lru');
    // A Redis with CONFIG renamed away, as managed services do: simulate with an ACL user without it.
    await client.acl('SETUSER', 'app', 'on', '>secret', '~*', '&*', '+@all', '-config');
    const app = new Redis({ port: client.options.port, host: '127.0.0.1', username: 'app', password: 'secret' });
    clients.push(app);
    const { logger, at } = recordingLogger();
    await warnIfLeasesCanBeEvicted(app, logger);
    expect(at('warn')).toEqual([]);
    expect(at('debug')).toHaveLength(1);
    expect(at('debug')[0].msg).toMatch(/could not read maxmemory-policy/);
  });

  it('refuses a logger without the logging methods', () => {
    const client = new Redis({ lazyConnect: true });
    expect(() => new RedisPersister(client, { logger: console.log as never })).toThrow(/options\.logger.*pino-compatible/);
  });
});
