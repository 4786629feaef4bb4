/**
 * The seeds' users share one object: one `Locker` (distributed-locker's `mutex`), one
 * callback queue (dlock's `semaphore`), one `ReserveResource`. Shared, one `Singleton` must
 * exclude its own callers as it excludes other processes (issues 10 and 16), on real Redis.
 */
import Redis from 'ioredis';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import { Singleton } from '../../lib/Singleton';
import { uniqueName } from '../helpers/child';

const REDIS_URL = process.env.REDIS_URL as string;
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
let client: Redis;

beforeAll(() => {
  client = new Redis(REDIS_URL);
});
afterAll(async () => {
  await client.quit();
});

function shared(name: string): Singleton {
  return new Singleton(name, new RedisPersister(client), { handleSignals: false, handleErrors: false, onLost: 'emit', logger: quiet, retryIntervalMs: 50 });
}

/** Runs `callers` at once through `run(fn, { wait: true })` and reports the most that ever ran together. */
async function contend(instances: Singleton[], callers: number): Promise<{ maxTogether: number; done: number; fences: string[] }> {
  let together = 0;
  let maxTogether = 0;
  const fences: string[] = [];
  const results = await Promise.all(
    Array.from({ length: callers }, (_, i) =>
      instances[i % instances.length].run(
        async (signal) => {
          together += 1;
          maxTogether = Math.max(maxTogether, together);
          fences.push(String(instances[i % instances.length].fencingToken));
          await new Promise((r) => setTimeout(r, 20));
          signal.throwIfAborted();
          together -= 1;
          return i;
        },
        { wait: true, timeoutMs: 20_000 },
      ),
    ),
  );
  return { maxTogether, done: results.filter((r) => r.status === 'done').length, fences };
}

describe('one shared instance excludes its own callers', () => {
  it("distributed-locker's mutex on one shared Locker: 8 concurrent run({ wait: true }) on one Singleton run one at a time", async () => {
    const { maxTogether, done, fences } = await contend([shared(uniqueName('mutex'))], 8);
    expect(done).toBe(8);
    expect(maxTogether).toBe(1);
    // Each caller ran under a lease of its own: eight strictly increasing fencing tokens.
    const sorted = [...fences].map(BigInt).sort((a, b) => (a < b ? -1 : 1));
    expect(new Set(fences).size).toBe(8);
    expect(fences.map(BigInt)).toEqual(sorted);
  });

  it("dlock's semaphore across two shared instances: 10 callers, never two at once", async () => {
    const name = uniqueName('semaphore');
    const { maxTogether, done } = await contend([shared(name), shared(name)], 10);
    expect(done).toBe(10);
    expect(maxTogether).toBe(1);
  });

  it('a caller that times out while waiting its turn leaves no lease behind', async () => {
    const s = shared(uniqueName('timeout'));
    let release!: () => void;
    const first = s.run(() => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 50));
    await expect(s.run(async () => 'never', { wait: true, timeoutMs: 100 })).rejects.toMatchObject({ name: 'TimeoutError' });
    release();
    expect(await first).toEqual({ status: 'done', value: undefined });
    expect(await s.inspect()).toBeNull();
  });
});
