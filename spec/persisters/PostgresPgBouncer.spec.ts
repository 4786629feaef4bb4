/**
 * The PostgreSQL store through PgBouncer in **transaction** pooling mode — two server
 * connections shared by every client, each transaction on whichever is free — which
 * breaks anything that keeps session state (advisory locks, named prepared statements,
 * SET, LISTEN). The conformance suite runs through it, and a notified hand-over works with
 * the LISTEN connection going straight to PostgreSQL (`listen: { connectionString }`).
 * Not run, by name, where PgBouncer is not installed.
 */
import type { Pool } from 'pg';
import { PostgresPersister } from '../../lib/persisters/PostgresPersister';
import { Singleton } from '../../lib/Singleton';
import { describePostgres, POSTGRES_URL, testPool, uniqueTable } from '../helpers/postgres';
import { type PgBouncer, pgBouncerBinary, startPgBouncer } from '../setup/pgBouncer';
import { describePersister } from './conformance';

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const NO_PGBOUNCER = 'pgbouncer is not installed: apt-get install pgbouncer to run';

describePostgres('PostgresPersister through PgBouncer (transaction mode)', () => {
  if (!pgBouncerBinary()) {
    // eslint-disable-next-line no-console
    console.warn(`PostgresPersister through PgBouncer: NOT RUN (${NO_PGBOUNCER}).`);
    it.todo(`run the PostgreSQL store through PgBouncer in transaction mode (${NO_PGBOUNCER})`);
    return;
  }
  let bouncer: PgBouncer;
  const table = uniqueTable('bouncer');
  const direct = { connectionString: POSTGRES_URL };

  beforeAll(async () => {
    bouncer = await startPgBouncer(POSTGRES_URL as string, 2);
  });
  afterAll(async () => {
    await bouncer?.stop();
    const admin = testPool({ max: 1 });
    await admin.query(`DROP TABLE IF EXISTS "${table}"`);
    await admin.end();
  });

  it('multiplexes: 6 client connections share at most 2 server connections (so session state would not survive)', async () => {
    const pool = testPool({ max: 6 }, bouncer.url);
    try {
      const pids = await Promise.all(
        Array.from({ length: 30 }, async () => (await pool.query('SELECT pg_backend_pid() AS pid, pg_sleep(0.01)')).rows[0].pid as number),
      );
      expect(pool.totalCount).toBe(6);
      expect(new Set(pids).size).toBeLessThanOrEqual(2);
    } finally {
      await pool.end();
    }
  });

  describePersister('conformance through PgBouncer (a pool of 6 clients over 2 server connections)', async () => {
    const pool = testPool({ max: 6 }, bouncer.url);
    const persister = new PostgresPersister(pool, { table, listen: direct });
    return {
      persister,
      cleanup: async () => {
        await persister.close();
        await pool.end();
      },
    };
  });

  it('hands over by NOTIFY with the LISTEN connection straight to PostgreSQL, retryIntervalMs 60 s', async () => {
    const pools: Pool[] = [testPool({ max: 3 }, bouncer.url), testPool({ max: 3 }, bouncer.url)];
    const [a, b] = pools.map((pool) => new PostgresPersister(pool, { table, listen: direct }));
    const options = { ttlMs: 30_000, handleSignals: false, handleErrors: false, logger: silent } as const;
    const holder = new Singleton('bounced', a, options);
    const waiter = new Singleton('bounced', b, { ...options, retryIntervalMs: 60_000 });
    try {
      expect(await holder.lock()).toBe(true);
      const conflict = new Promise((resolve) => waiter.once('conflict', resolve));
      const waiting = waiter.waitForLock();
      await conflict;
      const releasedAt = Date.now();
      await holder.release();
      await waiting;
      expect(Date.now() - releasedAt).toBeLessThan(1_000);
      expect(waiter.state).toBe('locked');
      await waiter.release();
    } finally {
      await Promise.all([a.close(), b.close()]);
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});
