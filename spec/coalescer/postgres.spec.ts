/**
 * The Coalescer on PostgreSQL without `{ outcomes }`: outcomes in `<lease table>_outcomes`
 * beside the leases, delivered by NOTIFY on the persister's one LISTEN connection, and
 * fn run once across real processes, also when the runner is killed mid-run.
 */
import { Client, type Pool } from 'pg';
import { Coalescer } from '../../lib/Coalescer';
import { outcomeStoreFor } from '../../lib/coalescer/OutcomeStore';
import { PostgresOutcomeStore } from '../../lib/coalescer/PostgresOutcomeStore';
import type { AcquireResult, Persister } from '../../lib/persisters/Persister';
import { PostgresPersister } from '../../lib/persisters/PostgresPersister';
import type { CoalescerWorkerConfig } from '../fixtures/coalescerWorker';
import { killAllChildren } from '../helpers/child';
import { describePostgres, POSTGRES_URL, testPool, uniqueTable } from '../helpers/postgres';
import { waitUntil } from '../persisters/conformance';
import { expectOneRunForAll, expectTakeoverAfterKill } from './workers';

let seq = 0;
const uniqueKey = (hint: string) => `${hint}:${process.pid}:${++seq}`;

describePostgres('Coalescer on PostgreSQL', () => {
  const table = uniqueTable('coalesce');
  let admin: Pool;
  const closers: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    admin = testPool({ max: 2 });
    await admin.query(`CREATE TABLE "${table}_counts" (name text PRIMARY KEY, n integer NOT NULL)`);
  });
  afterEach(async () => {
    await killAllChildren();
    for (const close of closers.splice(0).reverse()) await close();
  });
  afterAll(async () => {
    for (const t of [table, `${table}_outcomes`, `${table}_counts`]) await admin.query(`DROP TABLE IF EXISTS "${t}"`);
    await admin.end();
  });

  function persister(max = 2): PostgresPersister {
    const pool = testPool({ max });
    const p = new PostgresPersister(pool, { table });
    closers.push(() => pool.end(), () => p.close());
    return p;
  }

  it('builds its outcome store beside the leases: <table>_outcomes, channel of that name', () => {
    const { store, owned } = outcomeStoreFor(persister());
    expect(store).toBeInstanceOf(PostgresOutcomeStore);
    expect(owned).toBe(true);
    expect((store as PostgresOutcomeStore).table).toBe(`${table}_outcomes`);
    expect((store as PostgresOutcomeStore).channel).toBe(`${table}_outcomes`);
    const long = new PostgresPersister(testPool({ max: 1 }), { table: 'x'.repeat(60) });
    closers.push(() => (long.pgPool as Pool).end());
    expect(() => new Coalescer(long)).toThrow(/at most 54 characters.*outcomes/);
  });

  it('stores the outcome for resultTtlMs by the server clock and NOTIFYs it, in one statement', async () => {
    const coalescer = new Coalescer(persister(), { resultTtlMs: 4_000 });
    closers.push(() => coalescer.close());
    const listener = new Client({ connectionString: POSTGRES_URL });
    await listener.connect();
    closers.push(() => listener.end());
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    await listener.query(`LISTEN "${table}_outcomes"`);
    const key = uniqueKey('layout');
    expect(await coalescer.run(key, async () => ({ ok: true }))).toEqual({ ok: true });
    const { rows } = await admin.query(
      `SELECT outcome, extract(epoch FROM expires_at - clock_timestamp()) * 1000 AS ttl FROM "${table}_outcomes" WHERE key = $1`,
      [key],
    );
    expect(JSON.parse(rows[0].outcome)).toMatchObject({ v: 1, ok: true, value: { ok: true }, run: { key } });
    expect(Number(rows[0].ttl)).toBeGreaterThan(0);
    expect(Number(rows[0].ttl)).toBeLessThanOrEqual(4_000);
    await waitUntil(() => heard.length === 1, 5_000, 'the NOTIFY arrives');
    expect(JSON.parse(heard[0])).toEqual({ k: key, o: rows[0].outcome });
  });

  for (const size of ['small', 'larger than a NOTIFY payload'] as const) {
    it(`wakes a waiter on the NOTIFY, long before its next check (${size} outcome)`, async () => {
      const persisterA = persister();
      const a = new Coalescer(persisterA);
      const innerB = persister(1);
      // b watches no releases: only the outcome's NOTIFY (or its 5 s timer) can wake it.
      const quietB: Persister = {
        capabilities: innerB.capabilities,
        acquire: (r) => innerB.acquire(r),
        renew: (r) => innerB.renew(r),
        release: (r) => innerB.release(r),
        inspect: (n) => innerB.inspect(n),
      };
      const acquiresB: AcquireResult[] = [];
      const acquire = quietB.acquire;
      quietB.acquire = async (r) => {
        const result = await acquire(r);
        acquiresB.push(result);
        return result;
      };
      const b = new Coalescer(quietB, { outcomes: new PostgresOutcomeStore(innerB), retryIntervalMs: 5_000, resultTtlMs: 20_000 });
      closers.push(() => a.close(), () => b.close());
      const key = uniqueKey('wake');
      const value = size === 'small' ? 'v' : 'x'.repeat(20_000);
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const fromA = a.run(key, async () => {
        await gate;
        return value;
      });
      await waitUntil(async () => (await innerB.inspect(key)) !== null, 5_000, 'a holds the lease');
      let bAt = 0;
      const fromB = b.run(key, async () => 'b ran').then((v) => {
        bAt = Date.now();
        return v;
      });
      await waitUntil(() => acquiresB.some((r) => !r.acquired), 5_000, 'b waits');
      const released = Date.now();
      open();
      expect(await fromA).toBe(value);
      expect(await fromB).toBe(value);
      expect(bAt - released).toBeLessThan(1_000);
    });
  }

  describe('across real processes', () => {
    async function runs({ key }: CoalescerWorkerConfig): Promise<number> {
      const { rows } = await admin.query(`SELECT n FROM "${table}_counts" WHERE name = $1`, [`${key}:runs`]);
      return rows[0]?.n ?? 0;
    }
    const base = (key: string) => ({ store: 'postgres' as const, postgresUrl: POSTGRES_URL, table, key });

    it('4 processes × 3 concurrent calls: fn runs once and all 12 callers get the same value', async () => {
      const config: CoalescerWorkerConfig = { ...base(uniqueKey('procs')), calls: 3, arrivals: 4, mode: 'value', ttlMs: 10_000, resultTtlMs: 10_000 };
      await expectOneRunForAll(4, config, runs);
    }, 60_000);

    it('the runner killed with SIGKILL mid-run: exactly one waiter takes over, every caller gets its result', async () => {
      const config: CoalescerWorkerConfig = { ...base(uniqueKey('procs-kill')), calls: 2, arrivals: 0, mode: 'hang-first', ttlMs: 1_500, resultTtlMs: 10_000 };
      await expectTakeoverAfterKill(config, runs);
    }, 60_000);
  });
});
