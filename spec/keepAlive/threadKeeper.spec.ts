/**
 * `keepAlive` and `maxBlockMs` options, and the keep-alive thread in this process
 * (started from the TypeScript sources, as under ts-jest) on a real Redis: leases move
 * to the thread, renewals and losses reach the `Singleton`, and the thread stops once
 * nothing is held.
 */
import Redis from 'ioredis';
import { IDLE_STOP_MS, keepAliveThread } from '../../lib/keepAlive/KeepAliveThread';
import { DEFAULTS } from '../../lib/options';
import { FilePersister } from '../../lib/persisters/FilePersister';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { Singleton } from '../../lib/Singleton';
import { pollUntil, uniqueName } from '../helpers/child';

const REDIS_URL = process.env.REDIS_URL as string;
const silent = { debug() {}, info() {}, warn() {}, error() {} };

describe('options', () => {
  const persister = new FilePersister();

  test("defaults: keepAlive 'loop', maxBlockMs 60000", () => {
    expect(DEFAULTS.keepAlive).toBe('loop');
    expect(DEFAULTS.maxBlockMs).toBe(60_000);
    expect(() => new Singleton('x', persister, { keepAlive: 'loop' })).not.toThrow();
    expect(() => new Singleton('x', persister, { keepAlive: 'thread', maxBlockMs: 100 })).not.toThrow();
  });

  test('bad values are TypeError / RangeError naming the value and what is allowed', () => {
    expect(() => new Singleton('x', persister, { keepAlive: 'worker' as 'thread' })).toThrow(
      new TypeError('Expected `keepAlive` to be "loop" or "thread", got "worker" (string)'),
    );
    expect(() => new Singleton('x', persister, { keepAlive: 'thread', maxBlockMs: 99 })).toThrow(RangeError);
    expect(() => new Singleton('x', persister, { keepAlive: 'thread', maxBlockMs: 1500.5 })).toThrow(/whole number from 100/);
    expect(() => new Singleton('x', persister, { keepAlive: 'thread', maxBlockMs: '5000' as unknown as number })).toThrow(TypeError);
  });

  test("maxBlockMs without keepAlive: 'thread' is refused: it would do nothing", () => {
    expect(() => new Singleton('x', persister, { maxBlockMs: 5_000 })).toThrow(/`maxBlockMs` \(5000\) only applies with keepAlive: 'thread'/);
  });
});

describe('the keep-alive thread in this process (Redis)', () => {
  let client: Redis;
  let persister: RedisPersister;
  beforeAll(() => {
    client = new Redis(REDIS_URL);
    persister = new RedisPersister(client);
  });
  afterAll(async () => {
    await persister.close();
    client.disconnect();
  });

  function singleton(name: string): Singleton {
    return new Singleton(name, persister, { ttlMs: 600, keepAlive: 'thread', onLost: 'emit', handleSignals: false, handleErrors: false, logger: silent });
  }

  test('renews from the thread, reports a loss there to the instance, and stops once nothing is held', async () => {
    const s = singleton(uniqueName('in-process'));
    const renewals: Date[] = [];
    s.on('renewed', ({ expiresAt }) => renewals.push(expiresAt));
    expect(await s.lock()).toBe(true);
    expect(keepAliveThread().running).toBe(true);
    await keepAliveThread().whenReady();
    const from = renewals.length;
    await pollUntil(() => renewals.length >= from + 3, { timeoutMs: 3_000, what: 'three renewals from the thread' });
    expect(renewals[renewals.length - 1].getTime()).toBeGreaterThan(Date.now());

    // The lease vanishes from the store: the thread's next renewal is refused, the instance hears it.
    const lost = new Promise<{ reason: string; at: number }>((resolve) => s.once('lost', ({ reason }) => resolve({ reason, at: Date.now() })));
    const deletedAt = Date.now();
    await client.del(`singleton:{${s.name}}`);
    const { reason, at } = await lost;
    expect(reason).toBe('expired');
    expect(at - deletedAt).toBeLessThan(200 + 500);
    expect(s.state).toBe('lost');

    // Lock again, release: the thread stops after lingering IDLE_STOP_MS.
    expect(await s.lock()).toBe(true);
    await keepAliveThread().whenReady();
    await s.release();
    expect(await s.exists()).toBe(false);
    await pollUntil(() => !keepAliveThread().running, { timeoutMs: IDLE_STOP_MS + 3_000, what: 'the thread to stop' });
  }, 20_000);

  test('run() in thread mode: the lease is renewed past its ttl while fn works', async () => {
    const s = singleton(uniqueName('run'));
    const result = await s.run(async (signal) => {
      await new Promise((r) => setTimeout(r, 2_000)); // more than three leases
      return signal.aborted;
    });
    expect(result).toEqual({ status: 'done', value: false });
    expect(await s.exists()).toBe(false);
  }, 20_000);
});
