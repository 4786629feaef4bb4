/**
 * The SQL {@link PostgresPersister} sends, one statement per operation, built once per
 * table. Every time decision is the server's: `clock_timestamp()` (the real time, not the
 * transaction's start) is the only clock; no time from this process is ever sent.
 * Timestamps come back as whole milliseconds since the epoch and fences as text, so the
 * results do not depend on the type parsers a user may have installed on `pg`.
 *
 * No session state anywhere (no advisory lock, no prepared statement by name, no SET):
 * each statement stands alone, so any connection of a pool, or PgBouncer in transaction
 * mode, can run it.
 */
import { quoted, type TableName } from './identifiers';

/** Whole milliseconds since the epoch of a `timestamptz`, as text (cut, never rounded up). */
const ms = (column: string) => `floor(extract(epoch FROM ${column}) * 1000)::bigint::text`;

/** The public columns of a lease row `alias`, named as {@link LeaseRow} reads them. */
const leaseColumns = (alias: string) =>
  `${alias}.owner, ${alias}.hostname, ${alias}.pid::text AS pid, ${alias}.fence::text AS fence, ` +
  `${ms(`${alias}.acquired_at`)} AS acquired_ms, ${ms(`${alias}.expires_at`)} AS expires_ms`;

/** A lease as the statements return it (all text: see the file header). */
export interface LeaseRow {
  owner: string;
  hostname: string;
  pid: string;
  fence: string;
  acquired_ms: string;
  expires_ms: string;
}

/**
 * The table, one row per lock name, kept on release so the fence survives:
 * - `token`: the holder's secret (never returned by any statement); NULL once released;
 * - `fence`: the fencing token of the current or last lease;
 * - `expired`: the holder that ran out unreleased, written by the acquire that took over
 *   (so that same round trip can report it);
 * - `evicted_token`: the token a forced release removed, so that holder's next renewal
 *   learns it was evicted rather than that it expired.
 */
export function createTableSql(name: TableName): string {
  return `CREATE TABLE IF NOT EXISTS ${quoted(name)} (
  name          text PRIMARY KEY,
  token         text,
  owner         text NOT NULL,
  hostname      text NOT NULL,
  pid           integer NOT NULL,
  fence         bigint NOT NULL,
  acquired_at   timestamptz NOT NULL,
  expires_at    timestamptz NOT NULL,
  expired       jsonb,
  evicted_token text
)`;
}

/** The statements of one table. */
export interface LeaseStatements {
  /** $1 name, $2 token, $3 owner, $4 hostname, $5 pid, $6 ttl ms → one row: `acquired`, the lease or holder, `expired`. */
  acquire: string;
  /** $1 names[], $2 tokens[], $3 ttls[] → one row per request, in order: `renewed_ms` or the holder, `evicted`. */
  renew: string;
  /** $1 name, $2 token, $3 channel → one row when released (and NOTIFY sent on commit). */
  release: string;
  /** $1 name → the live lease, or no row. */
  inspect: string;
  /** $1 name prefix → every live lease whose name starts with it, with `name`. */
  list: string;
  /** $1 name, $2 channel → the evicted lease, or no row (and NOTIFY sent on commit). */
  forceRelease: string;
}

/**
 * Builds the statements of `name`.
 *
 * **acquire** is one `INSERT … ON CONFLICT (name) DO UPDATE` and one round trip. The
 * inserted row carries the server's time (`excluded.acquired_at`), its µs as the first
 * fence, and the expiry. On conflict the update runs on the row's latest version, locked:
 * - free (released, never held), run out, or held by this very token: it is taken — a new
 *   fence `greatest(fence + 1, server µs)` and a new `acquired_at`, except for this token's
 *   live lease, which keeps both (an idempotent re-acquire) and only moves its expiry;
 * - held by someone else: every column is set to its own value. That no-op update is what
 *   makes the statement answer with the holder: `RETURNING` sees the latest row, where a
 *   second read in the same statement would see the statement's snapshot, which may
 *   predate the lease that caused the conflict.
 * `acquired` is then `token = $2` on the returned row.
 *
 * **renew** (of one lease or many, `unnest`ed) moves `expires_at` only where name, token
 * and "not run out" all match; each request not renewed is answered from the snapshot
 * with the live holder of another token, if any, and whether it was evicted by force.
 */
export function leaseStatements(name: TableName): LeaseStatements {
  const table = quoted(name);
  const now = 'excluded.acquired_at';
  const take = `(l.token IS NULL OR l.expires_at <= ${now} OR l.token = excluded.token)`;
  const ownLive = `(l.token = excluded.token AND l.expires_at > ${now})`;
  const ranOut = `(l.token IS NOT NULL AND l.expires_at <= ${now})`;
  const keepOr = (column: string) => `${column} = CASE WHEN ${take} THEN excluded.${column} ELSE l.${column} END`;
  const acquire = `INSERT INTO ${table} AS l (name, token, owner, hostname, pid, fence, acquired_at, expires_at)
SELECT $1::text, $2::text, $3::text, $4::text, $5::integer, floor(extract(epoch FROM c.now) * 1000000)::bigint, c.now,
       c.now + $6::bigint * interval '1 millisecond'
FROM (SELECT clock_timestamp() AS now) AS c
ON CONFLICT (name) DO UPDATE SET
  ${keepOr('token')},
  ${keepOr('owner')},
  ${keepOr('hostname')},
  ${keepOr('pid')},
  fence = CASE WHEN ${ownLive} THEN l.fence WHEN ${take} THEN greatest(l.fence + 1, excluded.fence) ELSE l.fence END,
  acquired_at = CASE WHEN ${ownLive} THEN l.acquired_at WHEN ${take} THEN ${now} ELSE l.acquired_at END,
  ${keepOr('expires_at')},
  expired = CASE
    WHEN ${ranOut} THEN jsonb_build_object('owner', l.owner, 'hostname', l.hostname, 'pid', l.pid::text, 'fence', l.fence::text,
      'acquired_ms', ${ms('l.acquired_at')}, 'expires_ms', ${ms('l.expires_at')})
    WHEN ${take} THEN NULL
    ELSE l.expired END,
  evicted_token = l.evicted_token
RETURNING (l.token = $2::text) AS acquired, ${leaseColumns('l')}, l.expired::text AS expired`;

  const renew = `WITH c AS (SELECT clock_timestamp() AS now),
req AS (
  SELECT r.i, r.name, r.token, r.ttl FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS r(name, token, ttl, i)
),
renewed AS (
  UPDATE ${table} AS l SET expires_at = c.now + req.ttl * interval '1 millisecond'
  FROM req, c
  WHERE l.name = req.name AND l.token = req.token AND l.expires_at > c.now
  RETURNING req.i, ${ms('l.expires_at')} AS renewed_ms
)
SELECT renewed.renewed_ms,
       (h.token IS NOT NULL AND h.token <> req.token AND h.expires_at > c.now) AS held,
       coalesce(h.evicted_token = req.token, false) AS evicted,
       ${leaseColumns('h')}
FROM req CROSS JOIN c
LEFT JOIN renewed ON renewed.i = req.i
LEFT JOIN ${table} AS h ON renewed.i IS NULL AND h.name = req.name
ORDER BY req.i`;

  const release = `WITH released AS (
  UPDATE ${table} SET token = NULL, expires_at = clock_timestamp(), expired = NULL
  WHERE name = $1::text AND token = $2::text AND expires_at > clock_timestamp()
  RETURNING name
)
SELECT pg_notify($3::text, name) FROM released`;

  const live = `l.token IS NOT NULL AND l.expires_at > clock_timestamp()`;
  const inspect = `SELECT ${leaseColumns('l')} FROM ${table} AS l WHERE l.name = $1::text AND ${live}`;
  const list = `SELECT l.name, ${leaseColumns('l')} FROM ${table} AS l WHERE ${live} AND left(l.name, char_length($1::text)) = $1::text`;

  const forceRelease = `WITH victim AS (
  SELECT name, expires_at FROM ${table} WHERE name = $1::text AND token IS NOT NULL AND expires_at > clock_timestamp() FOR UPDATE
),
evicted AS (
  UPDATE ${table} AS l SET evicted_token = l.token, token = NULL, expires_at = clock_timestamp(), expired = NULL
  FROM victim WHERE l.name = victim.name
  RETURNING l.owner, l.hostname, l.pid::text AS pid, l.fence::text AS fence,
            ${ms('l.acquired_at')} AS acquired_ms, ${ms('victim.expires_at')} AS expires_ms
)
SELECT evicted.*, pg_notify($2::text, $1::text) FROM evicted`;

  return { acquire, renew, release, inspect, list, forceRelease };
}
