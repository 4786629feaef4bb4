/**
 * The SQL of {@link PostgresOutcomeStore}: one row per coalescing key in a table beside the
 * leases, expiring by the server's clock. Like the lease statements, each operation is one
 * statement with no session state.
 */
import { quoted, type TableName } from '../persisters/postgres/identifiers';

/** The outcome table: the key, the outcome envelope (JSON text), when it stops being readable. */
export function createOutcomeTableSql(name: TableName): string {
  return `CREATE TABLE IF NOT EXISTS ${quoted(name)} (
  key        text PRIMARY KEY,
  outcome    text NOT NULL,
  expires_at timestamptz NOT NULL
)`;
}

/** The statements of one outcome table. */
export interface OutcomeStatements {
  /** $1 key, $2 outcome, $3 ttl ms, $4 channel, $5 notification payload: stores and NOTIFYs in one statement. */
  put: string;
  /** $1 key → the unexpired outcome, or no row. */
  get: string;
  /** $1 key: deletes its outcome if it expired. */
  sweep: string;
}

/** Builds the statements of `name`. */
export function outcomeStatements(name: TableName): OutcomeStatements {
  const table = quoted(name);
  return {
    put: `WITH stored AS (
  INSERT INTO ${table} AS o (key, outcome, expires_at) VALUES ($1::text, $2::text, clock_timestamp() + $3::bigint * interval '1 millisecond')
  ON CONFLICT (key) DO UPDATE SET outcome = excluded.outcome, expires_at = excluded.expires_at
  RETURNING key
)
SELECT pg_notify($4::text, $5::text) FROM stored`,
    get: `SELECT outcome FROM ${table} WHERE key = $1::text AND expires_at > clock_timestamp()`,
    sweep: `DELETE FROM ${table} WHERE key = $1::text AND expires_at <= clock_timestamp()`,
  };
}
