/**
 * 8. Server cost of each Redis script: how much redis-server time one call of
 * each of our scripts takes, by `INFO commandstats` (reset before each
 * operation; `usec_per_call` of `EVALSHA`, and the calls made inside the script
 * per operation), beside the raw floor's two commands. This is the time Redis
 * spends running the command, not reading the request or writing the reply
 * (scenario 1's redis-server CPU per operation includes those).
 *
 * Every operation runs many times through `RedisPersister` (in groups of
 * `PARALLEL` in flight, so that the scenario is quick; the server runs one
 * command at a time anyway), on names of its own, against a redis-server of
 * its own: what other scenarios leave running (waiters, fixtures) cannot add
 * commands to the counts.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import Redis from 'ioredis';
import { startRedisServer } from '../../spec/setup/redisServer';
import type { BenchContext, Scenario } from '../index';
import { library } from '../contenders';
import type { Row } from '../stats';

const PARALLEL = 50;
/** Leases per renewMany call in the renewMany row (the persister's chunk size). */
const RENEW_MANY_LEASES = 100;
const TTL_MS = 60_000;
/** Each operation is measured this many times, on fresh names; the median is reported. */
const ROUNDS = 5;

interface CommandStat {
  calls: number;
  usec: number;
}

/** `INFO commandstats` as command → calls and total µs (our own INFO/CONFIG calls left out). */
async function commandStats(admin: Redis): Promise<Map<string, CommandStat>> {
  const out = new Map<string, CommandStat>();
  for (const line of (await admin.info('commandstats')).split('\r\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (m && m[1] !== 'info' && !m[1].startsWith('config')) out.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}

/** Runs `op(i)` for i in 0..n-1, `PARALLEL` at a time. */
async function times(n: number, op: (i: number) => Promise<unknown>): Promise<void> {
  for (let start = 0; start < n; start += PARALLEL) {
    const group: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(n, start + PARALLEL); i++) group.push(op(i));
    await Promise.all(group);
  }
}

/** What one operation cost the server: µs per top-level call, per operation, and the calls inside per operation. */
interface Measured {
  label: string;
  usecPerOp: number;
  usecPerCall: number;
  callsPerOp: string;
}

async function measure(admin: Redis, label: string, ops: number, run: () => Promise<void>, topLevel: readonly string[]): Promise<Measured> {
  await admin.config('RESETSTAT');
  await run();
  const stats = await commandStats(admin);
  let usec = 0;
  let calls = 0;
  const inner: string[] = [];
  for (const [command, stat] of stats) {
    if (topLevel.includes(command)) {
      usec += stat.usec;
      calls += stat.calls;
    } else {
      inner.push(`${command.toUpperCase()} ${Number((stat.calls / ops).toFixed(2))}×${(stat.usec / stat.calls).toFixed(2)}`);
    }
  }
  return { label, usecPerOp: usec / ops, usecPerCall: usec / calls, callsPerOp: inner.join(', ') || '—' };
}

const scenario: Scenario = {
  id: 'scripts',
  title: '8. server cost per script (INFO commandstats)',
  async run(ctx: BenchContext): Promise<Row[]> {
    const ops = ctx.quick ? 1_000 : 4_000;
    const { RedisPersister } = library();
    const server = await startRedisServer();
    const client = new Redis(server.url);
    const admin = new Redis(server.url);
    const persister = new RedisPersister(client, { keyPrefix: 'scripts:' });
    const waiterClient = new Redis(server.url);
    const waiter = new RedisPersister(waiterClient, { keyPrefix: 'scripts:' });
    const owner = { owner: `${hostname()}:${process.pid}`, hostname: hostname(), pid: process.pid };
    const token = () => randomBytes(16).toString('hex');
    const names = Array.from({ length: ops }, (_, i) => `n${i}`);
    const tokens = names.map(() => token());
    const evals = ['evalsha', 'eval'];
    const results: Measured[] = [];
    try {
      // Load every script once, outside the measurements (the first call of each may be an EVAL).
      await persister.acquire({ name: 'warm', token: tokens[0], ttlMs: TTL_MS, owner });
      await persister.renew({ name: 'warm', token: tokens[0], ttlMs: TTL_MS });
      await persister.renewMany([{ name: 'warm', token: tokens[0], ttlMs: TTL_MS }]);
      await persister.release({ name: 'warm', token: tokens[0] });
      const cad = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
      const cadSha = (await client.script('LOAD', cad)) as string;
      const measureRound = async (round: string): Promise<Measured[]> => {
        const measured: Measured[] = [];
        const acquireAll = (prefix: string, ttlMs = TTL_MS) =>
          times(ops, (i) => persister.acquire({ name: `${round}${prefix}${names[i]}`, token: tokens[i], ttlMs, owner }));

        measured.push(await measure(admin, 'acquire (free)', ops, () => acquireAll('a:'), evals));
        measured.push(
          await measure(admin, 'renew', ops, () => times(ops, (i) => persister.renew({ name: `${round}a:${names[i]}`, token: tokens[i], ttlMs: TTL_MS })), evals),
        );
        const requests = names.map((name, i) => ({ name: `${round}a:${name}`, token: tokens[i], ttlMs: TTL_MS }));
        const many = await measure(admin, `renewMany (${RENEW_MANY_LEASES} leases a call), per lease`, ops, async () => {
          for (let start = 0; start < ops; start += RENEW_MANY_LEASES) await persister.renewMany(requests.slice(start, start + RENEW_MANY_LEASES));
        }, evals);
        measured.push(many);
        measured.push(
          await measure(admin, 'release (nobody waiting)', ops, () => times(ops, (i) => persister.release({ name: `${round}a:${names[i]}`, token: tokens[i] })), evals),
        );
        // Conflicts, on names held by another token (each conflict marks the lease: its release would be published).
        await acquireAll('c:');
        measured.push(
          await measure(admin, 'acquire (conflict: names the holder)', ops, () =>
            times(ops, (i) => persister.acquire({ name: `${round}c:${names[i]}`, token: token(), ttlMs: TTL_MS, owner })), evals),
        );
        // A waiter on every name: acquire, watch, release (the release then has a subscriber to tell).
        await acquireAll('w:');
        const stops = await Promise.all(names.slice(0, 1_000).map((name) => persister.watch(`${round}w:${name}`, () => undefined)));
        measured.push(
          await measure(admin, 'release (a watcher waiting)', 1_000, () => times(1_000, (i) => persister.release({ name: `${round}w:${names[i]}`, token: tokens[i] })), evals),
        );
        await Promise.all(stops.map((stop) => stop()));
        // A waiter in line on every name (its own persister, as another process would have): each release hands the lease over.
        await acquireAll('q:');
        const turns = await Promise.all(
          names.slice(0, 1_000).map(async (name) => {
            const waiterToken = token();
            const stop = await waiter.watch(`${round}q:${name}`, () => undefined, { token: waiterToken });
            await waiter.acquire({ name: `${round}q:${name}`, token: waiterToken, ttlMs: TTL_MS, owner }); // queued
            return stop;
          }),
        );
        measured.push(
          await measure(admin, 'release (handed to a waiter in line)', 1_000, () => times(1_000, (i) => persister.release({ name: `${round}q:${names[i]}`, token: tokens[i] })), evals),
        );
        await Promise.all(turns.map((stop) => stop({ keep: true })));
        // Takeover: leases of 1 ms, left to expire, then taken by another token.
        await acquireAll('x:', 1);
        await new Promise((resolve) => setTimeout(resolve, 50));
        measured.push(
          await measure(admin, 'acquire (takeover of an expired lease)', ops, () =>
            times(ops, (i) => persister.acquire({ name: `${round}x:${names[i]}`, token: token(), ttlMs: TTL_MS, owner })), evals),
        );
        // The raw floor: SET NX PX, and a compare-and-delete script.
        measured.push(
          await measure(admin, 'raw floor: SET NX PX', ops, () => times(ops, (i) => client.set(`${round}raw:${names[i]}`, tokens[i], 'PX', TTL_MS, 'NX')), ['set']),
        );
        measured.push(
          await measure(admin, 'raw floor: compare-and-delete EVALSHA', ops, () => times(ops, (i) => client.evalsha(cadSha, 1, `${round}raw:${names[i]}`, tokens[i])), evals),
        );
        return measured;
      };
      const rounds: Measured[][] = [];
      for (let r = 0; r < ROUNDS; r++) rounds.push(await measureRound(`r${r}:`));
      // Per operation, the round with the median time (the machine is shared: single rounds are noisy).
      for (let k = 0; k < rounds[0].length; k++) {
        const sorted = rounds.map((round) => round[k]).sort((x, y) => x.usecPerOp - y.usecPerOp);
        results.push(sorted[Math.floor(sorted.length / 2)]);
      }
    } finally {
      await persister.close();
      await waiter.close();
      waiterClient.disconnect();
      client.disconnect();
      admin.disconnect();
      await server.stop();
    }
    return results.map((r) => ({
      scenario: '8 server cost',
      contender: r.label.startsWith('raw') ? 'raw floor' : 'ours: RedisPersister',
      metric: `${r.label}: redis µs per op (calls inside)`,
      value: `${r.usecPerOp.toFixed(2)} (${r.callsPerOp})`,
      raw: r,
    }));
  },
};

export default scenario;
