/**
 * `keepAlive: 'thread'` on a real 3-master Redis Cluster (spec/setup/redisCluster.ts):
 * the thread's own Cluster connection, made from the client's startup nodes and options,
 * keeps a 1 s lease through a busy event loop, and a `kill -9`ed holder is replaced at once.
 */
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { newToken } from '../../lib/time';
import type { KeepAliveHolderConfig } from '../fixtures/keepAliveHolder';
import { killAllChildren, REPO_ROOT, spawnFixture, uniqueName } from '../helpers/child';
import { startRedisCluster, type RedisCluster } from '../setup/redisCluster';

const FIXTURE = join(REPO_ROOT, 'spec', 'fixtures', 'keepAliveHolder.ts');
const OWNER = { owner: 'cluster-spec', hostname: 'spec', pid: process.pid };

let cluster: RedisCluster;
let client: Cluster;
let persister: RedisPersister;

beforeAll(async () => {
  cluster = await startRedisCluster();
  client = new Cluster(cluster.nodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  persister = new RedisPersister(client);
}, 60_000);

afterEach(killAllChildren);

afterAll(async () => {
  await persister?.close();
  await client?.quit().catch(() => client.disconnect());
  await cluster?.stop();
});

test('a holder busy-looping for 4 s keeps its 1 s lease on a Cluster, and a kill -9 frees it within a lease', async () => {
  const name = uniqueName('cluster');
  const config: KeepAliveHolderConfig = {
    store: { kind: 'redis-cluster', nodes: cluster.nodes },
    name,
    ttlMs: 1_000,
    options: { keepAlive: 'thread' },
    listenLost: true,
    block: { forMs: 4_000 },
  };
  const holder = spawnFixture(FIXTURE, { KEEPALIVE_CONFIG: JSON.stringify(config), SINGLETON_LOG_LEVEL: 'error' }, 'cluster holder');
  const blocking = await holder.waitForEvent('blocking', { timeoutMs: 30_000 });
  const token = newToken();
  while (Date.now() < blocking.t + 3_800) {
    expect((await persister.acquire({ name, token, ttlMs: 5_000, owner: OWNER })).acquired).toBe(false);
    await new Promise((r) => setTimeout(r, 200));
  }
  await holder.waitForEvent('unblocked', { timeoutMs: 15_000 });
  expect(holder.all('lost')).toEqual([]);

  const killedAt = holder.kill('SIGKILL');
  for (;;) {
    if ((await persister.acquire({ name, token, ttlMs: 5_000, owner: OWNER })).acquired) break;
    expect(Date.now() - killedAt).toBeLessThan(3_000);
    await new Promise((r) => setTimeout(r, 20));
  }
  process.stdout.write(`keepAlive figure: Cluster, kill -9 → held by another: ${Date.now() - killedAt} ms (ttl 1000 ms)\n`);
}, 60_000);
