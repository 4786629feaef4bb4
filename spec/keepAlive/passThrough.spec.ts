/** `standby()` and `Coalescer` take `keepAlive` / `maxBlockMs` and hand them to their `Singleton`s. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Coalescer } from '../../lib/Coalescer';
import { keepAliveThread } from '../../lib/keepAlive/KeepAliveThread';
import { FilePersister } from '../../lib/persisters/FilePersister';
import { MemoryPersister } from '../../lib/persisters/MemoryPersister';
import { standby } from '../../lib/standby';

const silent = { debug() {}, info() {}, warn() {}, error() {} };
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'singleton-keepalive-pass-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("standby(): keepAlive: 'thread' reaches the Singleton (a memory store is refused at once)", () => {
  expect(() => standby(new MemoryPersister(), () => undefined, { name: 'sb', keepAlive: 'thread' })).toThrow(/MemoryPersister cannot be/);
  expect(() => standby(new MemoryPersister(), () => undefined, { name: 'sb', maxBlockMs: 5_000 })).toThrow(/only applies with keepAlive: 'thread'/);
});

test("Coalescer: keepAlive: 'thread' is checked at construction and keeps a run's lease through a blocked loop", async () => {
  expect(() => new Coalescer(new MemoryPersister(), { keepAlive: 'thread' })).toThrow(/MemoryPersister cannot be/);
  expect(() => new Coalescer(new FilePersister({ dir }), { maxBlockMs: 5_000 })).toThrow(/only applies with keepAlive: 'thread'/);
  const persister = new FilePersister({ dir });
  const coalescer = new Coalescer(persister, { ttlMs: 500, keepAlive: 'thread', maxBlockMs: 10_000, logger: silent });
  try {
    const value = await coalescer.run('blocked', async (signal) => {
      await keepAliveThread().whenReady(); // the thread renews the run's lease now
      const until = Date.now() + 1_500; // three leases with the loop blocked
      while (Date.now() < until);
      await new Promise((r) => setTimeout(r, 50)); // messages from the thread arrive
      return signal.aborted ? 'aborted' : 'kept';
    });
    expect(value).toBe('kept');
  } finally {
    await coalescer.close();
  }
}, 20_000);
