/**
 * `--wait` ends at once: a signal or `--wait-timeout` ends the wait within a
 * small bound, well inside the retry sleep (the library's `retryIntervalMs`,
 * 1000 ms; the holder's lease runs for a minute, so every sleep is the full
 * interval), and singleton-run adds no delay of its own. The holder is a
 * lease taken directly in the store. With an attempt stuck in a paused Redis,
 * singleton-run exits once that attempt settles (it may have taken the lock,
 * which must then be released), not a retry interval later.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { persisterFromUrl } from '../../lib/persisters/fromUrl';
import type { Persister } from '../../lib/persisters/Persister';
import { startRedisServer, type RedisServer } from '../setup/redisServer';
import { CHILD, childEvents, CLI_STORES, type CliStore, killAllCli, lines, startCli, until } from './cliHarness';

/** Signal → exit: generous for a loaded machine, far below the retry interval a late abort would wait out. */
const SIGNAL_BOUND_MS = 900;
/** The library's default retryIntervalMs, which a missed abort or deadline would wait out. */
const RETRY_INTERVAL_MS = 1_000;

let seq = 0;

describe.each(CLI_STORES)('singleton-run --wait ends at once (%s store)', (kind, makeStore) => {
  let store: CliStore;
  let persister: Persister;
  let name: string;
  const token = 'b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0';

  beforeEach(async () => {
    store = makeStore();
    persister = await persisterFromUrl(store.url);
    name = `wait-${kind}-${process.pid}-${Date.now().toString(36)}-${(seq += 1)}`;
    const held = await persister.acquire({ name, token, ttlMs: 60_000, owner: { owner: 'holder', hostname: 'test', pid: process.pid } });
    expect(held.acquired).toBe(true);
  });

  afterEach(async () => {
    await killAllCli();
    rmSync(join(tmpdir(), `${name}.log`), { force: true });
    await persister.release({ name, token });
    await persister.close?.();
    store.cleanup();
  });

  /** A waiting singleton-run, once it is waiting (at warn, the library logs the conflict). */
  async function waiter(extra: string[] = []) {
    const log = join(tmpdir(), `${name}.log`);
    const cli = startCli(['--name', name, '--store', store.url, '--wait', ...extra, '--', process.execPath, CHILD, log], { SINGLETON_LOG_LEVEL: 'warn' });
    const waitingAt = await until(() => cli.stderr.includes('is held by'), 'waiting for the lock', { intervalMs: 5 });
    return { cli, log, waitingAt };
  }

  it.each([
    ['SIGTERM', 0, 143],
    ['SIGINT', 350, 130],
    ['SIGTERM', 700, 143],
  ] as const)('%s %i ms into the wait: exit %i within the bound, command not started', async (signal, delayMs, code) => {
    const { cli, log, waitingAt } = await waiter();
    await until(() => Date.now() >= waitingAt + delayMs, `${delayMs} ms into the wait`, { intervalMs: 5 });
    const sentAt = Date.now();
    cli.kill(signal);
    const result = await cli.wait();
    expect(result.code).toBe(code);
    expect(result.at - sentAt).toBeLessThan(SIGNAL_BOUND_MS);
    expect(childEvents(log)).toEqual([]);
    expect(await persister.inspect(name)).toMatchObject({ owner: 'holder' });
  });

  it('--wait-timeout: exit 75 right after the deadline, not at the next retry', async () => {
    const timeoutMs = 1_500;
    const { cli, log, waitingAt } = await waiter(['--wait-timeout', String(timeoutMs)]);
    const result = await cli.wait();
    expect(result.code).toBe(75);
    expect(result.at - cli.startedAt).toBeGreaterThanOrEqual(timeoutMs);
    // The deadline counts from the first conflict, which came just before the test saw it.
    expect(result.at - waitingAt).toBeLessThan(timeoutMs + SIGNAL_BOUND_MS);
    expect(result.at - waitingAt).toBeLessThan(timeoutMs + RETRY_INTERVAL_MS);
    expect(lines(result.stderr).filter((l) => l.startsWith('singleton-run:'))).toEqual([expect.stringMatching(/timed out after 1500 ms/)]);
    expect(childEvents(log)).toEqual([]);
  });
});

// CLIENT PAUSE stops every client of a server: on the shared server it would stall the
// renewals of suites running beside this one (a Singleton there reported store-unreachable).
describe('singleton-run --wait, an attempt in flight (Redis paused, a private redis-server)', () => {
  let server: RedisServer;
  let redis: Redis;
  let persister: Persister;
  let name: string;
  const token = 'c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0';

  beforeAll(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    await redis.quit();
    await server.stop();
  });
  beforeEach(async () => {
    persister = await persisterFromUrl(server.url);
    name = `wait-paused-${process.pid}-${Date.now().toString(36)}-${(seq += 1)}`;
    const held = await persister.acquire({ name, token, ttlMs: 60_000, owner: { owner: 'holder', hostname: 'test', pid: process.pid } });
    expect(held.acquired).toBe(true);
  });
  afterEach(async () => {
    await killAllCli();
    await redis.call('CLIENT', 'UNPAUSE');
    await persister.release({ name, token });
    await persister.close?.();
  });

  it('SIGTERM while the store is stopped (SIGSTOP): once the stuck attempt fails, exit without a long goodbye to the store', async () => {
    // At debug, the library logs each attempt's start (`"to":"locking"`, with its time).
    const cli = startCli(['--name', name, '--store', server.url, '--wait', '--', 'true'], { SINGLETON_LOG_LEVEL: 'debug' });
    await until(() => cli.stderr.includes('is held by'), 'waiting for the lock', { intervalMs: 5 });
    const stoppedAt = Date.now();
    server.process.kill('SIGSTOP');
    try {
      await until(() => Date.now() >= stoppedAt + RETRY_INTERVAL_MS + 300, 'a retry interval into the stop', { intervalMs: 5 });
      const signalledAt = Date.now();
      cli.kill('SIGTERM');
      const result = await cli.wait();
      expect(result.code).toBe(143);
      // An attempt that went out after the last answer is stuck: singleton-run waits for it (it
      // could have taken the lock) until its operation timeout, 5 s after it started.
      const attempts = lines(result.stderr)
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { to?: string; time: number });
      const lastAnswered = Math.max(...attempts.filter((e) => e.to === 'conflict').map((e) => e.time));
      const stuck = attempts.find((e) => e.to === 'locking' && e.time > lastAnswered);
      const settledAt = Math.max(signalledAt, stuck ? stuck.time + 5_000 : 0);
      expect(result.at).toBeGreaterThanOrEqual(settledAt - 50);
      // Then it closes its connection to a store that does not answer within 200 ms, not 2 s.
      expect(result.at - settledAt).toBeLessThan(1_200);
    } finally {
      server.process.kill('SIGCONT');
    }
  });

  it('SIGTERM while an attempt hangs: exit as soon as that attempt settles (so it can release what it took), not a retry later', async () => {
    const cli = startCli(['--name', name, '--store', server.url, '--wait', '--', 'true'], { SINGLETON_LOG_LEVEL: 'warn' });
    await until(() => cli.stderr.includes('is held by'), 'waiting for the lock', { intervalMs: 5 });
    const pauseMs = 2_500;
    const pausedAt = Date.now();
    await redis.call('CLIENT', 'PAUSE', String(pauseMs), 'WRITE');
    // Attempts come at most a retry interval apart: by now one is stuck in the pause.
    await until(() => Date.now() >= pausedAt + RETRY_INTERVAL_MS + 300, 'an attempt in flight', { intervalMs: 5 });
    cli.kill('SIGTERM');
    const result = await cli.wait();
    expect(result.code).toBe(143);
    // It waited for the stuck attempt (which could have taken the lock) to settle, then no longer.
    expect(result.at).toBeGreaterThanOrEqual(pausedAt + pauseMs - 50);
    expect(result.at - (pausedAt + pauseMs)).toBeLessThan(SIGNAL_BOUND_MS);
    expect(await persister.inspect(name)).toMatchObject({ owner: 'holder' });
  });
});
