/** Rows of the lease statements (leaseSql.ts) as `LockInfo`s. */
import { FORCED_RELEASE_OWNER } from '../adminSupport';
import type { LockInfo } from '../Persister';
import type { LeaseRow } from './leaseSql';

/** A fence as a fencing token: a `number` while it is a safe integer (µs since the epoch are, until 2255), else a `bigint`. */
export function toFencingToken(text: string): bigint | number {
  const big = BigInt(text);
  return big <= BigInt(Number.MAX_SAFE_INTEGER) && big >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(big) : big;
}

/** The public view of a lease row (never the token: no statement returns it). */
export function toLockInfo(name: string, row: LeaseRow): LockInfo {
  return {
    name,
    owner: row.owner,
    hostname: row.hostname,
    pid: Number(row.pid),
    fencingToken: toFencingToken(String(row.fence)),
    acquiredAt: new Date(Number(row.acquired_ms)),
    expiresAt: new Date(Number(row.expires_ms)),
  };
}

/** `t`/`true` as PostgreSQL or `pg` may render a boolean. */
export function isTrue(value: unknown): boolean {
  return value === true || value === 't' || value === 'true';
}


/**
 * What an evicted holder's renewal reports when nobody took the lock since: the operator's
 * forced release, as a holder (so the holder is told `taken-over`, not `expired`), with the
 * evicted lease's fence and the time of the eviction.
 */
export function forcedReleaseHolder(name: string, row: LeaseRow): LockInfo {
  const at = new Date(Number(row.expires_ms));
  return { name, owner: FORCED_RELEASE_OWNER, hostname: '', pid: 0, fencingToken: toFencingToken(String(row.fence)), acquiredAt: at, expiresAt: at };
}
