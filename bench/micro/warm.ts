/**
 * Warm throughput, ours against the raw floor, without the main benchmark's turn-taking
 * between five libraries (where each batch of 20 starts with cold caches): floor
 * (`SET NX PX` + compare-and-delete), our `RedisPersister`, our `Singleton` (a new one per
 * name, as in scenario 1), in interleaved batches of 50 on a throwaway redis-server.
 * Prints the median wall time and client CPU per acquire + release, and the median ratio
 * to the floor within a round.
 *
 *   npm run build && npx tsx bench/micro/warm.ts
 */
import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import pino from 'pino';
import { startRedisServer } from '../../spec/setup/redisServer';
import { distLibrary } from './dist';

async function main(): Promise<void> {
  const { RedisPersister, Singleton } = distLibrary();
  const server = await startRedisServer();
  const clients = [new Redis(server.url), new Redis(server.url), new Redis(server.url)];
  try {
    const [floorClient, persisterClient, singletonClient] = clients;
    const persister = new RedisPersister(persisterClient);
    const singletonPersister = new RedisPersister(singletonClient);
    const silent = pino({ level: 'silent' });
    const sha = (await floorClient.script('LOAD', "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")) as string;
    const owner = { owner: 'warm', hostname: 'localhost', pid: process.pid };
    let seq = 0;
    const contenders: Record<string, () => Promise<void>> = {
      floor: async () => {
        const key = `floor:${seq++}`;
        const token = randomBytes(16).toString('hex');
        if ((await floorClient.set(key, token, 'PX', 10_000, 'NX')) === 'OK') await floorClient.evalsha(sha, 1, key, token);
      },
      persister: async () => {
        const name = `p:${seq++}`;
        const token = randomBytes(16).toString('hex');
        const result = await persister.acquire({ name, token, ttlMs: 10_000, owner });
        if (result.acquired) await persister.release({ name, token });
      },
      singleton: async () => {
        const s = new Singleton(`s:${seq++}`, singletonPersister, { ttlMs: 10_000, handleSignals: false, handleErrors: false, logger: silent });
        s.on('lost', () => undefined);
        s.on('error', () => undefined);
        if (await s.lock()) await s.release();
      },
    };
    const names = Object.keys(contenders);
    for (const name of names) for (let i = 0; i < 2_000; i++) await contenders[name]();
    const BATCH = 50;
    const TURNS = 10;
    const ROUNDS = 30;
    const wall: Record<string, number[]> = {};
    const cpu: Record<string, number[]> = {};
    const ratio: Record<string, number[]> = {};
    for (let round = 0; round < ROUNDS; round++) {
      const w: Record<string, number> = {};
      const c: Record<string, number> = {};
      for (let turn = 0; turn < TURNS; turn++) {
        for (let k = 0; k < names.length; k++) {
          const name = names[(turn + k) % names.length];
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          for (let i = 0; i < BATCH; i++) await contenders[name]();
          w[name] = (w[name] ?? 0) + performance.now() - t0;
          const used = process.cpuUsage(cpu0);
          c[name] = (c[name] ?? 0) + used.user + used.system;
        }
      }
      for (const name of names) {
        (wall[name] ??= []).push((w[name] * 1000) / (BATCH * TURNS));
        (cpu[name] ??= []).push(c[name] / (BATCH * TURNS));
        (ratio[name] ??= []).push(w.floor / w[name]);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const name of names) {
      console.log(
        `${name.padEnd(10)} wall ${median(wall[name]).toFixed(1)} µs  client CPU ${median(cpu[name]).toFixed(1)} µs  ratio to floor ${median(ratio[name]).toFixed(3)}`,
      );
    }
  } finally {
    for (const c of clients) c.disconnect();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
