/**
 * How close our acquire script is to the least an acquire can cost under the data model of
 * DESIGN.md (a lease expiring by PX, a fence record beside it, fences from the store's
 * clock): redis-server µs per `EVALSHA` (`INFO commandstats`) of our `ACQUIRE_SCRIPT`
 * beside bare scripts making only the calls that model needs — `SET NX PX` alone (any
 * script's own cost), with `TIME`, and with `TIME` + reading and writing the record — on
 * fresh names, 10 000 calls each, 50 in flight, taking turns over 8 rounds on a throwaway
 * redis-server. Prints each round and the medians.
 *
 *   npx tsx bench/micro/scriptFloor.ts
 */
import Redis from 'ioredis';
import { ACQUIRE_SCRIPT } from '../../lib/persisters/redis/acquire';
import { startRedisServer } from '../../spec/setup/redisServer';

const SCRIPTS: Record<string, string> = {
  'ours (acquire)': ACQUIRE_SCRIPT.source,
  'SET NX PX': `return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0`,
  '+ TIME': `local clock = redis.call('TIME')
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return { 1, tonumber(clock[1]), 3 }`,
  '+ TIME + record read and written': `local clock = redis.call('TIME')
local old = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('SET', KEYS[2], 'h-\\n' .. clock[1] .. clock[2] .. '\\n' .. ARGV[3], 'PX', tonumber(ARGV[2]) + 86400000)
return { 1, tonumber(clock[1]), 3 }`,
};
const CALLS = 10_000;
const IN_FLIGHT = 50;
const ROUNDS = 8;

async function main(): Promise<void> {
  const server = await startRedisServer();
  const client = new Redis(server.url);
  try {
    const shas = new Map<string, string>();
    for (const [label, source] of Object.entries(SCRIPTS)) shas.set(label, (await client.script('LOAD', source)) as string);
    const holder = `${process.pid}\nlocalhost\nscript-floor`;
    const samples = new Map<string, number[]>([...shas.keys()].map((label) => [label, []]));
    let seq = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const line: string[] = [];
      const order = [...shas];
      for (let k = 0; k < order.length; k++) {
        const [label, sha] = order[(round + k) % order.length]; // each script first in some round
        await client.config('RESETSTAT');
        for (let sent = 0; sent < CALLS; sent += IN_FLIGHT) {
          const group: Promise<unknown>[] = [];
          for (let i = 0; i < IN_FLIGHT; i++) {
            const n = seq++;
            group.push(client.evalsha(sha, 2, `sf:{${n}}`, `sf:{${n}}:fence`, 'abcdef0123456789abcdef0123456789', 60_000, holder, '0'));
          }
          await Promise.all(group);
        }
        const stat = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(await client.info('commandstats'));
        const usec = Number(stat?.[2]) / Number(stat?.[1]);
        samples.get(label)?.push(usec);
        line.push(`${label} ${usec.toFixed(2)}`);
      }
      console.log(line.join(' | '));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const [label, xs] of samples) console.log(`median ${label}: ${median(xs).toFixed(2)} µs per call`);
  } finally {
    client.disconnect();
    await server.stop();
  }
}

void main();
