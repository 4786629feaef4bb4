/**
 * The filters and update pipelines {@link MongoPersister} sends, as small pure
 * functions so they can be read and tested without a server.
 *
 * Every time decision is the server's: `$$NOW` (MongoDB 4.2+) is the only clock
 * in these documents; no `Date` from this process is ever sent. Values that come
 * from callers (token, owner, hostname, pid, ttl) are wrapped in `$literal`, so a
 * string such as `"$token"` is stored as text and never read as a field path.
 *
 * One document per lock name:
 *
 * ```
 * { _id: name, token: string | null, owner, hostname, pid,
 *   fence: Int64, acquiredAt: Date, expiresAt: Date, released: boolean,
 *   expired?: { owner, hostname, pid, fence, acquiredAt, expiresAt },
 *   evicted?: { token, at, hostname, pid, fence } }
 * ```
 *
 * `token` is null once released; the document itself is never deleted, so the
 * fence survives releases and expiries. `expired` is written by the acquire that
 * took over a lease whose holder never released it, so the same single round
 * trip can tell the new holder who that was. `evicted` is written by a forced release
 * (the operator's `forceRelease()`) and kept across later leases, so the evicted
 * holder's next renewal learns it was taken over; its `token` never leaves the server
 * (every read projects it away).
 */
import type { LockInfo, OwnerInfo } from './Persister';

/** A MongoDB document or pipeline stage, as the driver accepts it (kept local: no runtime import of `mongodb`). */
export type MongoDocument = Record<string, unknown>;

/** Fields kept about a lease that ran out and was taken over. */
export interface MongoExpiredRecord {
  /** The run-out holder's owner. */
  owner: string;
  /** Its host. */
  hostname: string;
  /** Its pid. */
  pid: number;
  /** Its fence (Int64 as stored). */
  fence: unknown;
  /** When its lease began (server clock). */
  acquiredAt: Date;
  /** When its lease ran out (server clock). */
  expiresAt: Date;
}

/** The shape of a lease document as stored (the fence may come back as number, bigint or `Long`). */
export interface MongoLeaseDocument {
  _id: string;
  token?: string | null;
  owner: string;
  hostname: string;
  pid: number;
  fence: unknown;
  acquiredAt: Date;
  expiresAt: Date;
  released?: boolean;
  expired?: MongoExpiredRecord;
}

/** The server's clock, as an aggregation variable. */
export const NOW = '$$NOW';

/** The lease is held: it has a token and has not run out by the server's clock. */
const held = { $and: [{ $ne: [{ $ifNull: ['$token', null] }, null] }, { $gt: ['$expiresAt', NOW] }] };

/** The lease had a holder who never released it, and it ran out by the server's clock. */
const heldButRunOut = { $and: [{ $ne: [{ $ifNull: ['$token', null] }, null] }, { $lte: ['$expiresAt', NOW] }] };

/**
 * The next fence: one more than the stored one, but at least the server's time in
 * microseconds, so a counter lost with the data can never repeat a token.
 */
export const NEXT_FENCE = {
  $toLong: {
    $max: [{ $add: [{ $toLong: { $ifNull: ['$fence', 0] } }, 1] }, { $multiply: [{ $toLong: NOW }, 1000] }],
  },
};

/** `$$NOW + ttlMs`, on the server. */
export function expiresAtExpression(ttlMs: number): MongoDocument {
  return { $add: [NOW, { $literal: ttlMs }] };
}

/**
 * Filter of the acquire: the document of `name` when its lease is free (released
 * or never taken), ran out by the server's clock, or is already held by `token`
 * (an idempotent re-acquire). A live lease of anyone else matches nothing, so the
 * upsert tries to insert a second `_id: name` and fails with a duplicate key
 * (11000): that is the conflict.
 */
export function acquireFilter(name: string, token: string): MongoDocument {
  return {
    _id: name,
    $or: [{ token: null }, { token }, { $expr: { $lte: ['$expiresAt', NOW] } }],
  };
}

/**
 * Update pipeline of the acquire (one `$set` stage, so every expression reads the
 * document as it was before this update):
 * - same token, lease still live: keep `fence` and `acquiredAt`, move `expiresAt`;
 * - otherwise a new lease: `fence` = max(fence + 1, server µs), `acquiredAt` = `$$NOW`;
 * - a previous holder whose lease ran out unreleased is copied into `expired`,
 *   any older `expired` record is removed.
 */
export function acquirePipeline(token: string, ttlMs: number, owner: OwnerInfo): MongoDocument[] {
  const sameTokenLive = { $and: [{ $eq: ['$token', { $literal: token }] }, held] };
  return [
    {
      $set: {
        // A holder that never released and ran out is reported as expired, also when it is this
        // token's own lapsed lease (as on every store: its predecessor stalled).
        expired: {
          $cond: {
            if: heldButRunOut,
            then: {
              owner: '$owner',
              hostname: '$hostname',
              pid: '$pid',
              fence: '$fence',
              acquiredAt: '$acquiredAt',
              expiresAt: '$expiresAt',
            },
            else: '$$REMOVE',
          },
        },
        fence: { $cond: { if: sameTokenLive, then: '$fence', else: NEXT_FENCE } },
        acquiredAt: { $cond: { if: sameTokenLive, then: '$acquiredAt', else: NOW } },
        expiresAt: expiresAtExpression(ttlMs),
        token: { $literal: token },
        owner: { $literal: owner.owner },
        hostname: { $literal: owner.hostname },
        pid: { $literal: owner.pid },
        released: { $literal: false },
      },
    },
  ];
}

/** Filter of renew and release: the document of `name` held by `token`, not run out by the server's clock. */
export function heldByFilter(name: string, token: string): MongoDocument {
  return { _id: name, token, $expr: { $gt: ['$expiresAt', NOW] } };
}

/** Renew: only `expiresAt` moves, to `$$NOW + ttlMs`. */
export function renewPipeline(ttlMs: number): MongoDocument[] {
  return [{ $set: { expiresAt: expiresAtExpression(ttlMs) } }];
}

/**
 * Release: the document stays (its `fence` must survive); the token is cleared,
 * the lease ends now by the server's clock and is marked released, so the next
 * acquire does not report it as expired.
 */
export function releasePipeline(): MongoDocument[] {
  return [{ $set: { token: { $literal: null }, expiresAt: NOW, released: { $literal: true } } }, { $unset: 'expired' }];
}

/** Filter of inspect and of the holder lookup after a conflict: a live lease of `name`, by the server's clock. */
export function liveFilter(name: string): MongoDocument {
  return { _id: name, token: { $ne: null }, $expr: { $gt: ['$expiresAt', NOW] } };
}

/** Projection of every read: the token never leaves the server (nor an evicted lease's, kept in `evicted`). */
export const WITHOUT_TOKEN: MongoDocument = Object.freeze({ token: 0, 'evicted.token': 0 });

/** Fields kept about a lease ended by a forced release (besides its token, never read back). */
export interface MongoEvictedRecord {
  /** When it was ended (server clock). */
  at: Date;
  /** Host of the process that forced the release. */
  hostname: string;
  /** Its pid. */
  pid: number;
  /** The evicted lease's fence (Int64 as stored). */
  fence: unknown;
}

/**
 * Forced release (the operator's last resort; filter: {@link liveFilter}): like a release,
 * whoever holds the lease, the document and its fence kept, and the evicted lease noted
 * in `evicted` (its token copied on the server, the operator's host and pid, the time).
 */
export function forceReleasePipeline(operator: { hostname: string; pid: number }): MongoDocument[] {
  return [
    {
      $set: {
        evicted: { token: '$token', at: NOW, hostname: { $literal: operator.hostname }, pid: { $literal: operator.pid }, fence: '$fence' },
        token: { $literal: null },
        expiresAt: NOW,
        released: { $literal: true },
      },
    },
    { $unset: 'expired' },
  ];
}

/** Filter of the check after a refused renewal: the document of `name` whose lease of `token` was force-released. */
export function evictedFilter(name: string, token: string): MongoDocument {
  return { _id: name, 'evicted.token': token };
}

/** Projection of that check: the eviction, without the token. */
export const EVICTION_FIELDS: MongoDocument = Object.freeze({ _id: 0, 'evicted.at': 1, 'evicted.hostname': 1, 'evicted.pid': 1, 'evicted.fence': 1 });

/** Filter of `list()`: every live lease (server clock) whose name starts with `prefix`. */
export function listFilter(prefix: string): MongoDocument {
  const live = { token: { $ne: null }, $expr: { $gt: ['$expiresAt', NOW] } };
  return prefix === '' ? live : { _id: { $regex: `^${prefix.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}` }, ...live };
}

/** Whether `error` is MongoDB's duplicate key error (code 11000), without importing the driver. */
export function isDuplicateKeyError(error: unknown): boolean {
  if (error === null || typeof error !== 'object') return false;
  const { code, codeName } = error as { code?: unknown; codeName?: unknown };
  return code === 11000 || codeName === 'DuplicateKey';
}

/**
 * A stored fence as a fencing token: a `number` while it is a safe integer
 * (µs since the epoch are, until the year 2255), else a `bigint`. Accepts what
 * the driver may return: number, bigint, BSON `Long` (`toBigInt()`/`toString()`),
 * `Int32`/`Double` (`valueOf()`).
 */
export function toFencingToken(value: unknown): bigint | number {
  let big: bigint;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new TypeError(`Stored fence is not a whole number: ${value}`);
    return value;
  }
  if (typeof value === 'bigint') big = value;
  else if (value !== null && typeof value === 'object') {
    const long = value as { toBigInt?: () => bigint; valueOf?: () => unknown; toString?: () => string };
    if (typeof long.toBigInt === 'function') big = long.toBigInt();
    else {
      const primitive = long.valueOf?.();
      if (typeof primitive === 'number' || typeof primitive === 'bigint') return toFencingToken(primitive);
      big = BigInt(String(value));
    }
  } else {
    throw new TypeError(`Stored fence is not a number: ${String(value)}`);
  }
  return big <= BigInt(Number.MAX_SAFE_INTEGER) && big >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(big) : big;
}

/** The public view of a stored lease (never the token). */
export function toLockInfo(name: string, doc: Pick<MongoLeaseDocument, 'owner' | 'hostname' | 'pid' | 'fence' | 'acquiredAt' | 'expiresAt'>): LockInfo {
  return {
    name,
    owner: doc.owner,
    hostname: doc.hostname,
    pid: Number(doc.pid),
    fencingToken: toFencingToken(doc.fence),
    acquiredAt: new Date(doc.acquiredAt),
    expiresAt: new Date(doc.expiresAt),
  };
}
