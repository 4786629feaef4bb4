import { isTrue } from './rows';
import { type PgQueryable, withTimeout } from './connection';
import { plain, quoted, type TableName } from './identifiers';

/**
 * Runs `ddl` (a `CREATE TABLE IF NOT EXISTS`) only when the table is missing: creating
 * needs a privilege (CREATE on the schema) that using an existing table does not, so a
 * role that may only read and write the table still works with the table in place.
 */
export async function createTableIfMissing(pool: PgQueryable, name: TableName, ddl: string, timeoutMs: number): Promise<void> {
  await withTimeout(`Creating the table ${plain(name)}`, timeoutMs, async () => {
    const present = async () => {
      const { rows } = await pool.query('SELECT to_regclass($1::text) IS NOT NULL AS present', [quoted(name)]);
      return isTrue((rows[0] as { present?: unknown } | undefined)?.present);
    };
    if (await present()) return;
    try {
      await pool.query(ddl);
    } catch (error) {
      // Two processes creating it at once: one of them meets the other's catalog row, as a
      // unique violation (23505), a duplicate table (42P07) or a duplicate type (42710, the
      // table's row type). Whatever the code, the table being there now is what counts.
      const code = (error as { code?: unknown }).code;
      if (code !== '23505' && code !== '42P07' && code !== '42710') throw error;
      if (!(await present())) throw error;
    }
  });
}

