/**
 * PostgresPersister against a real PostgreSQL (the global setup's throwaway server, or
 * POSTGRES_URL): the conformance suite over a pool of several connections, a pool of one
 * and a lone Client, then what is particular to PostgreSQL.
 */
import { Client } from 'pg';
import { PostgresPersister } from '../../lib/persisters/PostgresPersister';
import { describePostgres, POSTGRES_URL, testPool, uniqueTable } from '../helpers/postgres';
import { describePersister } from './conformance';

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
