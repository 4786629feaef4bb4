/**
 * Scenario 5 without the benchmark harness: one plain process locks 10 000 singletons
 * (ttl 3000 ms: a renewal per lease per second) on a throwaway redis-server, waits two
 * renewal cycles, and prints its CPU time over 8 s as a share of one core, with the event
 * loop's own busy share.
 *
 *   npm run build && npx tsx bench/micro/plainScale.ts [count]
 */
import Redis from 'ioredis';
import pino from 'pino';
import { startRedisServer } from '../../spec/setup/redisServer';
import { distLibrary } from './dist';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const { RedisPersister, Singleton } = distLibrary();
  const count = Number(process.argv[2] ?? 10_000);
  const ttlMs = 3_000;
  const server = await startRedisServer();
  const client = new Redis(server.url);
  const persister = new RedisPersister(client);
  const options = { ttlMs, handleSignals: false, handleErrors: false, logger: pino({ level: 'silent' }), onLost: 'emit' as const };
  const held = Array.from({ length: count }, (_, i) => new Singleton(`plain:${i}`, persister, options));
  try {
    for (let i = 0; i < count; i += 1_000) await Promise.all(held.slice(i, i + 1_000).map((s) => s.lock()));
    await sleep(2 * Math.ceil(ttlMs / 3) + 200);
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    await sleep(8_000);
    const used = process.cpuUsage(cpu0);
    const elu = performance.eventLoopUtilization(elu0);
    const seconds = (performance.now() - t0) / 1000;
    const still = held.filter((s) => s.state === 'locked').length;
    console.log(
      `${count} held (${still} still held after the window): CPU ${(((used.user + used.system) / 1e6 / seconds) * 100).toFixed(2)} % of a core, event loop busy ${(elu.utilization * 100).toFixed(2)} %`,
    );
  } finally {
    for (let i = 0; i < count; i += 1_000) await Promise.all(held.slice(i, i + 1_000).map((s) => s.release().catch(() => undefined)));
    await persister.close();
    client.disconnect();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
