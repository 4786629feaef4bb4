/**
 * Compares two versions of `RedisPersister` side by side on one throwaway redis-server:
 * Redis time per acquire, renew and release (`INFO commandstats`: `usec` of `EVALSHA`
 * per operation), and for sequential acquire + release pairs the wall time, this
 * process's CPU and redis-server's CPU per pair, beside the raw floor (`SET NX PX` +
 * a compare-and-delete script). The versions alternate round by round and each figure
 * is the median over rounds, so the machine's drift hits both alike.
 *
 * ```sh
 * mkdir -p /tmp/before && git archive <commit> lib | tar -x -C /tmp/before
 * npx tsx bench/compare.ts /tmp/before/lib      # ROUNDS=11 OPS=2000 by default
 * ```
 * The other version is this checkout's lib/. Both run through tsx.
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import Redis from 'ioredis';
import type { RedisPersister } from '../lib/persisters/RedisPersister';
import { startRedisServer } from '../spec/setup/redisServer';
import { median } from './stats';

const ROUNDS = Number(process.env.ROUNDS ?? 11);
const OPS = Number(process.env.OPS ?? 2000);
const PAIRS = 500;
const owner = { owner: 'host:1234', hostname: 'host', pid: 1234 };
const newToken = () => randomBytes(16).toString('hex');

type Figures = Record<string, number>;

async function evalshaUsecPerOp(admin: Redis, run: () => Promise<void>): Promise<number> {
  await admin.config('RESETSTAT');
  await run();
  const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(await admin.info('commandstats'));
  return m ? Number(m[2]) / OPS : Number.NaN;
}

async function inGroups(n: number, op: (i: number) => Promise<unknown>): Promise<void> {
  for (let start = 0; start < n; start += 50) {
    const group: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(n, start + 50); i++) group.push(op(i));
    await Promise.all(group);
  }
}

async function serverCpuUs(admin: Redis): Promise<number> {
  const info = await admin.info('cpu');
  const read = (field: string) => Number(new RegExp(`${field}:([\\d.]+)`).exec(info)?.[1] ?? Number.NaN);
  return (read('used_cpu_sys') + read('used_cpu_user')) * 1e6;
}

/** Sequential pairs: wall µs, client CPU µs and redis-server CPU µs per pair. */
async function pairs(admin: Redis, pair: (i: number) => Promise<void>): Promise<Figures> {
  const server0 = await serverCpuUs(admin);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < PAIRS; i++) await pair(i);
  const wall = ((performance.now() - t0) * 1000) / PAIRS;
  const cpu = process.cpuUsage(cpu0);
  return { 'pair wall µs': wall, 'pair client CPU µs': (cpu.user + cpu.system) / PAIRS, 'pair redis CPU µs': ((await serverCpuUs(admin)) - server0) / PAIRS };
}

async function measure(p: RedisPersister, admin: Redis, tag: string): Promise<Figures> {
  const names = Array.from({ length: OPS }, (_, i) => `${tag}:${i}`);
  const tokens = names.map(newToken);
  return {
    'acquire redis µs': await evalshaUsecPerOp(admin, () => inGroups(OPS, (i) => p.acquire({ name: names[i], token: tokens[i], ttlMs: 60_000, owner }))),
    'renew redis µs': await evalshaUsecPerOp(admin, () => inGroups(OPS, (i) => p.renew({ name: names[i], token: tokens[i], ttlMs: 60_000 }))),
    'release redis µs': await evalshaUsecPerOp(admin, () => inGroups(OPS, (i) => p.release({ name: names[i], token: tokens[i] }))),
    ...(await pairs(admin, async (i) => {
      const token = newToken();
      await p.acquire({ name: `${tag}:pair${i}`, token, ttlMs: 10_000, owner });
      await p.release({ name: `${tag}:pair${i}`, token });
    })),
  };
}

async function main(): Promise<void> {
  const otherLib = process.argv[2];
  if (!otherLib) throw new Error('usage: npx tsx bench/compare.ts <lib directory of the other version>');
  /* eslint-disable @typescript-eslint/no-require-imports */
  const Other = (require(resolve(otherLib, 'persisters', 'RedisPersister')) as typeof import('../lib/persisters/RedisPersister')).RedisPersister;
  const This = (require('../lib/persisters/RedisPersister') as typeof import('../lib/persisters/RedisPersister')).RedisPersister;
  /* eslint-enable @typescript-eslint/no-require-imports */
  const server = await startRedisServer();
  const connections = [0, 1, 2, 3].map(() => new Redis(server.url));
  const [admin, rawClient, a, b] = connections;
  try {
    const versions: Record<string, RedisPersister> = {
      [otherLib]: new Other(a, { keyPrefix: 'other:' }),
      'this lib/': new This(b, { keyPrefix: 'this:' }),
    };
    const cad = (await rawClient.script('LOAD', "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")) as string;
    const samples: Record<string, Record<string, number[]>> = { 'raw floor': {} };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? Object.keys(versions) : Object.keys(versions).reverse();
      for (const label of order) {
        for (const [figure, value] of Object.entries(await measure(versions[label], admin, `r${round}:${label}`))) ((samples[label] ??= {})[figure] ??= []).push(value);
      }
      const raw = await pairs(admin, async (i) => {
        const key = `raw:r${round}:${i}`;
        const token = newToken();
        await rawClient.set(key, token, 'PX', 10_000, 'NX');
        await rawClient.evalsha(cad, 1, key, token);
      });
      for (const [figure, value] of Object.entries(raw)) (samples['raw floor'][figure] ??= []).push(value);
      process.stderr.write(`compare: round ${round + 1}/${ROUNDS}\n`);
    }
    const labels = [...Object.keys(versions), 'raw floor'];
    process.stdout.write(`${['figure (median)', ...labels].join(' | ')}\n`);
    for (const figure of Object.keys(samples['this lib/'])) {
      const cells = labels.map((label) => (samples[label][figure] ? median(samples[label][figure]).toFixed(2) : '—'));
      process.stdout.write(`${[figure, ...cells].join(' | ')}\n`);
    }
  } finally {
    for (const c of connections) c.disconnect();
    await server.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`compare failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
