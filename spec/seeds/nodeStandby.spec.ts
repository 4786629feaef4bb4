/**
 * Coming from node-standby: its exact call (an ioredis client, `ttlSeconds`,
 * `pollingIntervalSeconds`, `name` as a function) runs unchanged on real Redis, and a task
 * that keeps throwing is re-run after a growing backoff, not in a tight loop (issue 16).
 */
import Redis from 'ioredis';
import { MemoryPersister } from '../../lib/persisters/MemoryPersister';
import type { Singleton } from '../../lib/Singleton';
import { MAX_TASK_BACKOFF_MS, standby } from '../../lib/standby';
import { pollUntil, uniqueName } from '../helpers/child';

const REDIS_URL = process.env.REDIS_URL as string;
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const started: Singleton[] = [];
const clients: Redis[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.release()));
  await Promise.all(clients.splice(0).map((c) => c.quit()));
});

describe("node-standby's call, unchanged", () => {
  it('standby(redisClient, task, { name, ttlSeconds, pollingIntervalSeconds }): one active, the other takes over on release', async () => {
    const name = uniqueName('node-standby');
    const runs: string[] = [];
    const make = (who: string) => {
      const client = new Redis(REDIS_URL);
      clients.push(client);
      const s = standby(client, () => void runs.push(who), {
        name: () => name,
        ttlSeconds: 2,
        pollingIntervalSeconds: 0.05,
        handleSignals: false,
        handleErrors: false,
        logger: quiet,
      });
      started.push(s);
      return s;
    };
    const a = make('a');
    await new Promise<void>((resolve) => a.once('locked', () => resolve()));
    const b = make('b');
    await new Promise<void>((resolve) => b.once('conflict', () => resolve()));
    expect(b.ttlMs).toBe(2_000);
    expect(b.retryIntervalMs).toBe(50);
    expect(runs).toEqual(['a']);
    const tookOver = new Promise<void>((resolve) => b.once('locked', () => resolve()));
    await a.release();
    await tookOver;
    await pollUntil(() => runs.length === 2, { what: "b's task to run" });
    expect(runs).toEqual(['a', 'b']);
  });

  it('refuses aliases that disagree with the option they stand for, naming both', () => {
    expect(() => standby(new MemoryPersister(), () => undefined, { name: 'x', ttlSeconds: 2, ttlMs: 3_000, logger: quiet })).toThrow(
      /ttlSeconds.*ttlMs/,
    );
    expect(() => standby(new MemoryPersister(), () => undefined, { name: 'x', pollingIntervalSeconds: -1, logger: quiet })).toThrow(
      /pollingIntervalSeconds/,
    );
  });

  it('refuses an unknown option listing what standby() takes, its own names included', () => {
    expect(() => standby(new MemoryPersister(), () => undefined, { name: 'x', ttl: 5, logger: quiet } as never)).toThrow(
      /Unknown option `ttl`; allowed options are: name, ttlSeconds, pollingIntervalSeconds, ttlMs,/,
    );
  });

  it.each([
    [{ pollingIntervalSeconds: 0.0001 }, /`pollingIntervalSeconds` to be a number of seconds from 0.001 to 604800, got 0.0001 \(number\)/],
    [{ ttlSeconds: 0.001 }, /`ttlSeconds` to be a number of seconds from 0.02 to 604800, got 0.001 \(number\)/],
    [{ ttlSeconds: '2' }, /`ttlSeconds` to be a number of seconds.*"2" \(string\)/],
  ])('refuses an alias out of range under its own name and value: %j', (aliases, message) => {
    expect(() => standby(new MemoryPersister(), () => undefined, { name: 'x', ...(aliases as object), logger: quiet })).toThrow(message);
  });
});

describe('a task that keeps throwing (the seed re-ran it in a tight loop)', () => {
  it('is reported, its lease released, and run again only after a doubling backoff; the event loop stays free', async () => {
    const runs: number[] = [];
    const errors: string[] = [];
    const s = standby(
      new MemoryPersister(),
      () => {
        runs.push(Date.now());
        throw new Error('consumer failed to start');
      },
      { name: 'always-throws', retryIntervalMs: 100, handleSignals: false, handleErrors: false, onLost: 'emit', logger: quiet },
    );
    started.push(s);
    s.on('error', (e) => errors.push(e.message));
    let ticks = 0;
    const ticker = setInterval(() => (ticks += 1), 10);
    await new Promise((r) => setTimeout(r, 1_700));
    clearInterval(ticker);
    // 100 + 200 + 400 + 800 ms of backoff fit in 1.7 s: 4 or 5 runs, not tens of thousands.
    expect(runs.length).toBeGreaterThanOrEqual(3);
    expect(runs.length).toBeLessThanOrEqual(5);
    const gaps = runs.slice(1).map((t, i) => t - runs[i]);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThan(gaps[i - 1] * 1.5);
    expect(errors.every((m) => m === 'consumer failed to start')).toBe(true);
    expect(errors.length).toBe(runs.length);
    expect(ticks).toBeGreaterThan(100); // timers ran all along
    expect(MAX_TASK_BACKOFF_MS).toBe(30_000);
  });
});
