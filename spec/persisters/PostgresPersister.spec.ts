/**
 * PostgresPersister against a real PostgreSQL (the global setup's throwaway server, or
 * POSTGRES_URL): the conformance suite over a pool of several connections, a pool of one
 * and a lone Client, then what is particular to PostgreSQL: many pools racing, list and
 * forced release, the table, no session state, timeouts and bad options.
 * The Singleton on PostgreSQL (hand-over, crash, outage): spec/Singleton.postgres.spec.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, type Pool } from 'pg';
import { PersisterError } from '../../lib/errors';
import type { LockInfo } from '../../lib/persisters/Persister';
import { PostgresPersister } from '../../lib/persisters/PostgresPersister';
import { createTableSql } from '../../lib/persisters/postgres/leaseSql';
import { FORCED_RELEASE_OWNER } from '../../lib/persisters/adminSupport';
import { describePostgres, POSTGRES_URL, testPool, uniqueTable } from '../helpers/postgres';
import { describePersister, fenceAfter, newToken, testOwner, waitUntil } from './conformance';

describePostgres('PostgresPersister', () => {
  for (const max of [5, 1]) {
    describePersister(`PostgresPersister conformance (pool of ${max})`, async () => {
      const pool = testPool({ max });
      const table = uniqueTable(`conf${max}`);
      const persister = new PostgresPersister(pool, { table });
      return {
        persister,
        cleanup: async () => {
          await persister.close();
          await pool.query(`DROP TABLE IF EXISTS "${table}"`);
          await pool.end();
        },
      };
    });
  }

  describePersister('PostgresPersister conformance (a connected Client)', async () => {
    const client = new Client({ connectionString: POSTGRES_URL });
    client.on('error', () => undefined);
    await client.connect();
    const table = uniqueTable('client');
    const persister = new PostgresPersister(client, { table });
    return {
      persister,
      cleanup: async () => {
        await persister.close();
        await client.query(`DROP TABLE IF EXISTS "${table}"`);
        await client.end();
      },
    };
  });
});

describePostgres('PostgresPersister on PostgreSQL', () => {
  const pools: Pool[] = [];
  const persisters: PostgresPersister[] = [];
  const tables: string[] = [];
  let admin: Pool;

  beforeAll(() => {
    admin = testPool({ max: 2 });
  });
  afterAll(async () => {
    await Promise.all(persisters.map((p) => p.close()));
    await Promise.all(pools.map((p) => p.end()));
    for (const table of tables) await admin.query(`DROP TABLE IF EXISTS "${table}"`);
    await admin.end();
  });

  function pool(max: number): Pool {
    const p = testPool({ max });
    pools.push(p);
    return p;
  }

  function persister(table: string, max = 3, options: ConstructorParameters<typeof PostgresPersister>[1] = {}): PostgresPersister {
    if (!tables.includes(table)) tables.push(table);
    const p = new PostgresPersister(pool(max), { table, ...options });
    persisters.push(p);
    return p;
  }

  async function take(p: PostgresPersister, name: string, n: number, ttlMs = 30_000) {
    const token = newToken();
    const result = await p.acquire({ name, token, ttlMs, owner: testOwner(n) });
    if (!result.acquired) throw new Error(`expected to acquire ${name}`);
    return { token, lease: result.lease };
  }

  it('many acquirers on many pools, the table created by all of them at once: one winner, every loser names it', async () => {
    const table = uniqueTable('race');
    const racers = Array.from({ length: 8 }, (_, i) => persister(table, i % 2 === 0 ? 1 : 4));
    const results = await Promise.all(
      racers.flatMap((p, i) => Array.from({ length: 10 }, (_, j) => p.acquire({ name: 'contended', token: newToken(), ttlMs: 30_000, owner: testOwner(i * 10 + j) }))),
    );
    const winners = results.flatMap((r) => (r.acquired ? [r.lease] : []));
    expect(winners).toHaveLength(1);
    for (const r of results) if (!r.acquired) expect(r.holder.owner).toBe(winners[0].owner);
  });

  it('list: live leases only, sorted, by prefix; capabilities say so', async () => {
    const p = persister(uniqueTable('list'));
    expect(p.capabilities).toEqual({ serverClock: true, notify: true, fencing: true, persistent: true, list: true });
    const b = await take(p, 'jobs/b', 2);
    await take(p, 'jobs/a', 1);
    await take(p, 'other', 3);
    const gone = await take(p, 'jobs/released', 4);
    await p.release({ name: 'jobs/released', token: gone.token });
    await take(p, 'jobs/short', 5, 50);
    await waitUntil(async () => (await p.inspect('jobs/short')) === null, 5_000, 'the short lease to run out');
    expect((await p.list()).map((l) => l.name)).toEqual(['jobs/a', 'jobs/b', 'other']);
    const jobs = await p.list({ prefix: 'jobs/' });
    expect(jobs.map((l) => l.name)).toEqual(['jobs/a', 'jobs/b']);
    expect(BigInt(jobs[1].fencingToken)).toBe(BigInt(b.lease.fencingToken));
    expect(await p.list({ prefix: 'jobs/%' })).toEqual([]); // a prefix, not a LIKE pattern
    await expect(p.list({ prefix: 42 as unknown as string })).rejects.toBeInstanceOf(TypeError);
  });

  it('forceRelease: evicts whoever holds it, notifies, keeps the fence; the evicted renewal is refused naming the forced release', async () => {
    const p = persister(uniqueTable('force'));
    const held = await take(p, 'wedged', 1);
    let woken = 0;
    const stop = await p.watch('wedged', () => woken++);
    try {
      const evicted = (await p.forceRelease('wedged')) as LockInfo;
      expect(evicted).toMatchObject({ name: 'wedged', owner: 'tester-1', pid: testOwner(1).pid });
      expect(BigInt(evicted.fencingToken)).toBe(BigInt(held.lease.fencingToken));
      expect(evicted.expiresAt.getTime()).toBe(held.lease.expiresAt.getTime());
      expect(await p.inspect('wedged')).toBeNull();
      await waitUntil(() => woken === 1, 5_000, 'the forced release to be notified');
      expect(await p.forceRelease('wedged')).toBeNull(); // nothing held any more

      const refused = await p.renew({ name: 'wedged', token: held.token, ttlMs: 30_000 });
      expect(refused).toMatchObject({ renewed: false, holder: { owner: FORCED_RELEASE_OWNER } });
      expect(await p.release({ name: 'wedged', token: held.token })).toBe(false);

      const next = await take(p, 'wedged', 2);
      expect(fenceAfter(next.lease.fencingToken, held.lease.fencingToken)).toBe(true);
      const late = await p.renew({ name: 'wedged', token: held.token, ttlMs: 30_000 });
      expect(late).toMatchObject({ renewed: false, holder: { owner: 'tester-2' } });
    } finally {
      await stop();
    }
  });

  it('keeps no session state: no advisory lock while a lease is held, every statement on any connection', async () => {
    const p = persister(uniqueTable('nosession'), 2);
    const { token } = await take(p, 'held', 1);
    const { rows } = await admin.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'");
    expect(rows[0].n).toBe(0);
    // Renew and release from other connections than the acquire's (a pool of 2, busy with a sleeper on one).
    const sleeper = p.pgPool.query('SELECT pg_sleep(0.3)');
    expect((await p.renew({ name: 'held', token, ttlMs: 30_000 })).renewed).toBe(true);
    expect(await p.release({ name: 'held', token })).toBe(true);
    await sleeper;
  });

  it('createTable: false meets a missing table with a PersisterError that says what to do; the statement is printed for schemas', async () => {
    const table = uniqueTable('missing');
    const p = persister(table, 1, { createTable: false });
    const error = await p.inspect('x').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PersisterError);
    expect((error as Error).message).toMatch(/does not exist.*README/);
    expect((error as Error).cause).toMatchObject({ code: '42P01' });
    const { rows } = await admin.query('SELECT to_regclass($1) AS t', [table]);
    expect(rows[0].t).toBeNull(); // not created behind the user's back
  });

  it('a statement that cannot finish in operationTimeoutMs is a PersisterError on time (row locked by another transaction)', async () => {
    const table = uniqueTable('timeout');
    const p = persister(table, 2, { operationTimeoutMs: 300 });
    const { token } = await take(p, 'stuck', 1);
    const blocker = await admin.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT * FROM "${table}" WHERE name = 'stuck' FOR UPDATE`);
      const started = Date.now();
      const error = await p.renew({ name: 'stuck', token, ttlMs: 30_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PersisterError);
      expect((error as Error).message).toMatch(/Renewing lock "stuck" timed out after 300 ms/);
      expect(Date.now() - started).toBeLessThan(1_500);
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    await waitUntil(async () => (await p.renew({ name: 'stuck', token, ttlMs: 30_000 })).renewed, 5_000, 'the renewal to pass again');
  });

  it('a schema of its own; bad options are TypeErrors naming the value', async () => {
    const schema = uniqueTable('schema');
    await admin.query(`CREATE SCHEMA "${schema}"`);
    try {
      const p = new PostgresPersister(pool(1), { schema, table: 'locks' });
      persisters.push(p);
      expect(p.table).toBe(`${schema}.locks`);
      expect(p.channel).toBe(`${schema}.locks`);
      await take(p, 'in-schema', 1);
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM "${schema}".locks`);
      expect(rows[0].n).toBe(1);
    } finally {
      await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
    }
    const any = pool(1);
    expect(() => new PostgresPersister(any, { table: 'Locks' })).toThrow(/options.table.*"Locks"/);
    expect(() => new PostgresPersister(any, { table: 'x"; DROP TABLE y; --' })).toThrow(TypeError);
    expect(() => new PostgresPersister(any, { schema: '1st' })).toThrow(/options.schema/);
    expect(() => new PostgresPersister(any, { table: 'a'.repeat(64) })).toThrow(TypeError);
    expect(() => new PostgresPersister(any, { schema: 's'.repeat(40), table: 't'.repeat(40) })).toThrow(RangeError);
    expect(() => new PostgresPersister(any, { operationTimeoutMs: 0 })).toThrow(RangeError);
    expect(() => new PostgresPersister(any, { listen: 'yes' as unknown as boolean })).toThrow(/options.listen/);
    expect(() => new PostgresPersister({} as Pool)).toThrow(/pg \(node-postgres\) Pool/);
    const quiet = new PostgresPersister(any, { listen: false });
    expect(quiet.capabilities.notify).toBe(false);
    await expect(quiet.watch('x', () => undefined)).rejects.toThrow(/listen: false/);
    const p = persister(uniqueTable('args'), 1);
    await expect(p.acquire({ name: '', token: newToken(), ttlMs: 1_000, owner: testOwner(1) })).rejects.toThrow(TypeError);
    await expect(p.acquire({ name: 'x', token: newToken(), ttlMs: 0, owner: testOwner(1) })).rejects.toThrow(RangeError);
    await expect(p.renew({ name: 'x\0y', token: newToken(), ttlMs: 1_000 })).rejects.toThrow(TypeError);
  });

  it('the LISTEN connection killed by the server: watchers are woken, it comes back, later releases are heard', async () => {
    const table = uniqueTable('relisten');
    const p = persister(table, 1);
    let woken = 0;
    const stop = await p.watch('job', () => woken++);
    try {
      const { rows } = await admin.query('SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE query = $1', [`LISTEN "${table}"`]);
      expect(rows).toEqual([{ done: true }]);
      await waitUntil(() => woken >= 1, 5_000, 'the watcher to be woken by the drop');
      // Reopened (with backoff) and LISTENing again; the watcher is woken once more then.
      await waitUntil(async () => {
        const r = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1', [`LISTEN "${table}"`]);
        return r.rows[0].n === 1 && woken >= 2;
      }, 10_000, 'the LISTEN connection to come back');
      const before = woken;
      const { token } = await take(p, 'job', 1);
      expect(await p.release({ name: 'job', token })).toBe(true);
      await waitUntil(() => woken === before + 1, 5_000, 'the release after the reconnect to be heard');
    } finally {
      await stop();
    }
  });

  it('one LISTEN connection per persister, outside the pool, open only while someone watches', async () => {
    const table = uniqueTable('listen');
    const p = persister(table, 1);
    const listening = async () => {
      const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1', [`LISTEN "${table}"`]);
      return rows[0].n as number;
    };
    expect(await listening()).toBe(0);
    const stops = await Promise.all(['a', 'b', 'c'].map((name) => p.watch(name, () => undefined)));
    expect(await listening()).toBe(1);
    // The pool's only connection is still free for the leases.
    await take(p, 'a', 1);
    await Promise.all(stops.map((stop) => stop()));
    await waitUntil(async () => (await listening()) === 0, 5_000, 'the LISTEN connection to close');
  });
});

describe('PostgresPersister: the README', () => {
  it('prints the very CREATE TABLE statement the persister runs, for teams that manage their schema', () => {
    const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
    expect(readme).toContain(createTableSql({ schema: undefined, table: 'singleton_process_leases' }));
  });
});
