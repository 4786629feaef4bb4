/**
 * PostgreSQL for the tests: the server the global setup started (or POSTGRES_URL), pools
 * that tests close, a fresh table name per suite, and a loud, named "not run" where no
 * server can be had (POSTGRES_UNAVAILABLE says why).
 */
import { randomBytes } from 'node:crypto';
import { Pool, type PoolConfig } from 'pg';

/** The server's URL, or undefined when none could be started. */
export const POSTGRES_URL = process.env.POSTGRES_URL;

/** Why the PostgreSQL suites cannot run here. */
export const POSTGRES_SKIP_REASON = process.env.POSTGRES_UNAVAILABLE ?? 'no PostgreSQL: set POSTGRES_URL=postgres://… to run';

/**
 * `describe(label, body)` when a server is there; otherwise a suite named "not run" with
 * the reason, and a warning on the console.
 */
export function describePostgres(label: string, body: () => void): void {
  if (POSTGRES_URL) {
    describe(label, body);
    return;
  }
  // eslint-disable-next-line no-console
  console.warn(`${label}: NOT RUN (${POSTGRES_SKIP_REASON}).`);
  describe(`${label} (not run: ${POSTGRES_SKIP_REASON})`, () => {
    it.todo(`run against PostgreSQL (${POSTGRES_SKIP_REASON})`);
  });
}

/** A table name no other suite uses. */
export function uniqueTable(label: string): string {
  return `t_${label}_${randomBytes(4).toString('hex')}`;
}

/** A pool on `url` (default: the test server) whose idle-connection errors are ignored (the tests stop servers on purpose). */
export function testPool(config: PoolConfig = {}, url = POSTGRES_URL): Pool {
  const pool = new Pool({ connectionString: url, connectionTimeoutMillis: 5_000, ...config });
  pool.on('error', () => undefined);
  return pool;
}
