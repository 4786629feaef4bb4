/**
 * The Singleton on PostgreSQL: notified hand-over (a waiter polling only once a minute
 * still takes over within milliseconds of the release), a holder killed with SIGKILL
 * replaced within one lease, and a server that goes away: the holder is told
 * (`store-unreachable`) before the server-side expiry, and `lock()` is a PersisterError,
 * never a conflict. The outage tests run a PostgreSQL of their own, so stopping it never
 * disturbs the other suites.
 */
import type { Pool } from 'pg';
import { PersisterError } from '../lib/errors';
import type { SingletonOptions } from '../lib/options';
import type { Persister } from '../lib/persisters/Persister';
import { PostgresPersister } from '../lib/persisters/PostgresPersister';
import { Singleton } from '../lib/Singleton';
import { killAllChildren, pollUntil, spawnHolder, uniqueName } from './helpers/child';
import { describePostgres, POSTGRES_URL, testPool, uniqueTable } from './helpers/postgres';
import { type PostgresServer, startPostgresServer } from './setup/postgresServer';

const silent = { debug() {}, info() {}, warn() {}, error() {} };

describePostgres('Singleton on PostgreSQL', () => {
  const table = uniqueTable('singleton');
  const pools: Pool[] = [];
  const persisters: PostgresPersister[] = [];
  const singletons: Singleton[] = [];

  function persisterOn(pool: Pool, options: ConstructorParameters<typeof PostgresPersister>[1] = {}): PostgresPersister {
    pools.push(pool);
    const p = new PostgresPersister(pool, { table, ...options });
    persisters.push(p);
    return p;
  }

  function singleton(name: string, persister: Persister, options: SingletonOptions = {}): Singleton {
    const s = new Singleton(name, persister, { handleSignals: false, handleErrors: false, logger: silent, ...options });
    singletons.push(s);
    return s;
  }

  async function cleanUp(): Promise<void> {
    await killAllChildren();
    await Promise.all(singletons.splice(0).map((s) => s.release().catch(() => undefined)));
    await Promise.all(persisters.splice(0).map((p) => p.close()));
    await Promise.all(pools.splice(0).map((p) => p.end()));
  }

  afterEach(cleanUp);
  afterAll(async () => {
    const admin = testPool({ max: 1 });
    await admin.query(`DROP TABLE IF EXISTS "${table}"`);
    await admin.end();
  });

  /** Resolves once a LISTEN on the table's channel is in place on the server. */
  async function untilListening(): Promise<void> {
    const admin = testPool({ max: 1 });
    try {
      await pollUntil(
        async () => {
          const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1', [`LISTEN "${table}"`]);
          return rows[0].n > 0;
        },
        { timeoutMs: 10_000, intervalMs: 10, what: 'the waiter to LISTEN' },
      );
    } finally {
      await admin.end();
    }
  }

  for (const max of [1, 4]) {
    test(`notified hand-over (pools of ${max}): a waiter polling once a minute holds the lock within milliseconds of the release`, async () => {
      const name = uniqueName('handover');
      const holder = singleton(name, persisterOn(testPool({ max })), { ttlMs: 30_000 });
      const waiter = singleton(name, persisterOn(testPool({ max })), { ttlMs: 30_000, retryIntervalMs: 60_000 });
      expect(await holder.lock()).toBe(true);
      const conflict = new Promise((resolve) => waiter.once('conflict', resolve));
      const waiting = waiter.waitForLock();
      await conflict;
      await untilListening();

      const releasedAt = Date.now();
      await holder.release();
      await waiting;
      const handOverMs = Date.now() - releasedAt;
      console.log(`PostgreSQL hand-over (pools of ${max}): the waiter held the lock ${handOverMs} ms after release() was called`);
      expect(waiter.state).toBe('locked');
      expect(handOverMs).toBeLessThan(1_000); // the retry interval is 60 s and the lease 30 s: only the NOTIFY can explain it
    });
  }

  test('a holder killed with SIGKILL: a waiting process takes over within one lease, told the previous holder expired', async () => {
    const name = uniqueName('killed');
    const ttlMs = 1_500;
    const storeUrl = `${POSTGRES_URL}${POSTGRES_URL?.includes('?') ? '&' : '?'}table=${table}`;
    const first = spawnHolder({ storeUrl, name, ttlMs }, 'first holder');
    const locked = await first.waitForEvent('locked', { timeoutMs: 20_000 });
    const second = spawnHolder({ storeUrl, name, ttlMs, acquire: 'wait', options: { retryIntervalMs: 100 } }, 'second holder');
    await second.waitForEvent('conflict', { timeoutMs: 20_000 });

    const killedAt = first.kill('SIGKILL');
    const expired = await second.waitForEvent('expired', { timeoutMs: 10_000 });
    const takeover = await second.waitForEvent('locked', { timeoutMs: 10_000 });
    console.log(`PostgreSQL crash takeover: ${takeover.t - killedAt} ms after SIGKILL (ttl ${ttlMs} ms)`);
    expect(takeover.t - killedAt).toBeLessThan(ttlMs + 500);
    expect((expired.previous as { pid: number }).pid).toBe(first.pid);
    expect(BigInt(takeover.fencingToken as string)).toBeGreaterThan(BigInt(locked.fencingToken as string));
  });

  describe('on a PostgreSQL of its own', () => {
    let server: PostgresServer;

    beforeAll(async () => {
      server = await startPostgresServer();
    }, 120_000);
    afterAll(async () => {
      await server?.stop();
    });

    test('server stopped while held: lost "store-unreachable" before the server-side expiry; lock() is a PersisterError, never a conflict', async () => {
      const ttlMs = 4_000; // a safety margin of ~100 ms: room for a loaded machine's late timers
      const name = uniqueName('stopped');
      const s = singleton(name, persisterOn(testPool({ max: 2 }, server.url), { operationTimeoutMs: 300 }), { ttlMs });
      let serverExpiry = 0;
      s.on('locked', (e) => (serverExpiry = e.expiresAt.getTime()));
      s.on('renewed', (e) => (serverExpiry = e.expiresAt.getTime()));
      const errors: Error[] = [];
      s.on('error', (e) => errors.push(e));
      const lost = new Promise<{ at: number; reason: string }>((resolve) => s.once('lost', (e) => resolve({ at: Date.now(), reason: e.reason })));
      expect(await s.lock()).toBe(true);
      await new Promise((resolve) => s.once('renewed', resolve));

      const stoppedAt = Date.now();
      await server.kill();
      const { at, reason } = await lost;
      console.log(`PostgreSQL stopped: lost ${at - stoppedAt} ms after the stop, ${serverExpiry - at} ms before the server-side expiry`);
      expect(reason).toBe('store-unreachable');
      expect(at).toBeLessThan(serverExpiry);
      expect(errors.length).toBeGreaterThanOrEqual(1);
      expect(errors.every((e) => e instanceof PersisterError)).toBe(true);

      const other = singleton(uniqueName('down'), persisterOn(testPool({ max: 1 }, server.url), { operationTimeoutMs: 1_000 }));
      const conflicts: unknown[] = [];
      other.on('conflict', (e) => conflicts.push(e));
      other.on('error', () => undefined);
      const started = Date.now();
      await expect(other.lock()).rejects.toBeInstanceOf(PersisterError);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(conflicts).toHaveLength(0);
    });
  });
});
