import type { Collection, Db, Document, WriteConcernSettings } from 'mongodb';
import { PersisterError, toPersisterError } from '../errors';
import { cloneable, type ThreadDescriptor } from '../keepAlive/descriptor';
import { checkBoolean, expected } from '../validate';
import { byName, checkForceReleaseName, checkListOptions, evictionHolder, operatorIdentity } from './adminSupport';
import {
  acquireFilter,
  acquirePipeline,
  EVICTION_FIELDS,
  evictedFilter,
  forceReleasePipeline,
  heldByFilter,
  isDuplicateKeyError,
  listFilter,
  liveFilter,
  type MongoEvictedRecord,
  releasePipeline,
  renewPipeline,
  toFencingToken,
  toLockInfo,
  type MongoLeaseDocument,
  WITHOUT_TOKEN,
} from './mongoOperations';
import type {
  AcquireRequest,
  AcquireResult,
  ListOptions,
  LockInfo,
  Persister,
  PersisterCapabilities,
  ReleaseRequest,
  RenewRequest,
  RenewResult,
} from './Persister';

/** Options of {@link MongoPersister}. */
export interface MongoPersisterOptions {
  /**
   * Name of the collection holding one document per lock, when the persister is
   * built from a `Db`. Not allowed together with a `Collection`.
   * @default 'singleton_leases'
   */
  collection?: string;
  /**
   * Write concern of acquire, renew and release. Majority, so a lease survives a
   * primary failover: a lease acknowledged only by a primary that then steps down
   * could be handed out twice.
   * @default { w: 'majority' }
   */
  writeConcern?: WriteConcernSettings;
  /**
   * Whether {@link MongoPersister.close} closes the `MongoClient` behind the
   * collection. Leave it `false` for a client you passed in and use elsewhere;
   * `persisterFromUrl` sets it for the client it creates.
   * @default false
   */
  ownsClient?: boolean;
}

/** The collection name used when none is given. */
export const DEFAULT_MONGO_COLLECTION = 'singleton_leases';

/** A conflict (duplicate key) whose holder vanished before we could read it is retried this many times. */
const MAX_ACQUIRE_ATTEMPTS = 5;

/** Every read and write goes to the primary: a secondary may not have seen the latest lease. */
const PRIMARY = 'primary' as const;

/**
 * Leases in MongoDB, through the official `mongodb` driver (v6 or v7, MongoDB
 * server 4.2 or newer).
 *
 * One document per lock name (`_id: name`) in the collection you give (or
 * `singleton_leases` in the `Db` you give). Each of acquire, renew and release is a
 * single atomic update whose filter and update pipeline decide with the
 * server's clock (`$$NOW`), never this process's:
 *
 * - **acquire** is one `findOneAndUpdate` with upsert whose filter matches only a
 *   free, released or run-out lease (or one already held with the same token);
 *   a live lease of someone else makes the upsert collide on `_id` (duplicate
 *   key, 11000), which is answered as a conflict naming the holder (one extra
 *   read). The fence is max(stored fence + 1, server time in µs), in the same
 *   update, so it strictly increases across releases, expiries and even a lost
 *   collection.
 * - **renew** and **release** match `_id` + token + "not run out yet".
 * - **release** keeps the document (token cleared, `expiresAt = $$NOW`), so the
 *   fence survives.
 *
 * Writes use majority write concern by default; reads go to the primary. Store
 * failures (no server, timeouts) reject with a `PersisterError` after the
 * driver's own limits (`serverSelectionTimeoutMS`, and `timeoutMS`/
 * `socketTimeoutMS` if you set them on the client): set those on your
 * `MongoClient` to bound how long a call may take.
 *
 * No release notifications (`watch` is absent; waiters poll). The driver is only
 * needed at run time through the collection you pass in: this module imports
 * nothing from `mongodb` but types.
 *
 * @example
 * ```ts
 * const client = new MongoClient(url);
 * const persister = new MongoPersister(client.db('app'), { collection: 'locks' });
 * const singleton = new Singleton('nightly-report', persister);
 * ```
 */
export class MongoPersister implements Persister {
  /** Server clock, fencing, persistence and a listing; no notifications. */
  readonly capabilities: PersisterCapabilities = Object.freeze({
    serverClock: true,
    notify: false,
    fencing: true,
    persistent: true,
    list: true,
  });

  /** The collection holding the lease documents. */
  readonly collection: Collection<Document>;

  private readonly writeConcern: WriteConcernSettings;
  private readonly ownsClient: boolean;
  private closing: Promise<void> | undefined;

  /** Leases in `collection`. */
  constructor(collection: Collection<any>, options?: Omit<MongoPersisterOptions, 'collection'>); // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Leases in the collection `options.collection` (default `singleton_leases`) of `db`. */
  constructor(db: Db, options?: MongoPersisterOptions);
  constructor(target: Collection<any> | Db, options: MongoPersisterOptions = {}) { // eslint-disable-line @typescript-eslint/no-explicit-any
    if (options === null || typeof options !== 'object') {
      throw new TypeError(expected('options', 'an object', options));
    }
    if (isCollection(target)) {
      if (options.collection !== undefined) {
        throw new TypeError(
          expected('options.collection', 'undefined when a Collection is passed (pass a Db to name the collection)', options.collection),
        );
      }
      this.collection = target as Collection<Document>;
    } else if (isDb(target)) {
      const name = options.collection ?? DEFAULT_MONGO_COLLECTION;
      if (typeof name !== 'string' || name.length === 0 || name.includes('\0') || name.startsWith('system.')) {
        throw new TypeError(expected('options.collection', 'a non-empty collection name', name));
      }
      this.collection = target.collection(name);
    } else {
      throw new TypeError(expected('collection', 'a MongoDB Collection or Db (from the official mongodb driver)', target));
    }
    const writeConcern = options.writeConcern ?? { w: 'majority' };
    if (writeConcern === null || typeof writeConcern !== 'object' || writeConcern.w === 0) {
      throw new TypeError(expected('options.writeConcern', 'an acknowledged write concern such as { w: "majority" }', writeConcern));
    }
    this.writeConcern = writeConcern;
    this.ownsClient = options.ownsClient === undefined ? false : checkBoolean('options.ownsClient', options.ownsClient);
  }

  /** The write concern of acquire, renew and release (the Coalescer's outcomes beside the leases use it too). */
  get writeConcernSettings(): WriteConcernSettings {
    return this.writeConcern;
  }

  /** Take the lease if it is free or ran out (server clock); otherwise name the holder. */
  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const { name, token, ttlMs, owner } = checkAcquire(request);
    for (let attempt = 1; attempt <= MAX_ACQUIRE_ATTEMPTS; attempt++) {
      let doc: MongoLeaseDocument | null;
      try {
        doc = (await this.collection.findOneAndUpdate(acquireFilter(name, token), acquirePipeline(token, ttlMs, owner), {
          upsert: true,
          returnDocument: 'after',
          projection: WITHOUT_TOKEN,
          writeConcern: this.writeConcern,
          includeResultMetadata: false,
        })) as MongoLeaseDocument | null;
      } catch (error) {
        if (!isDuplicateKeyError(error)) throw toPersisterError(`MongoDB acquire of "${name}"`, error);
        // A live lease of someone else: the upsert collided with its document.
        const holder = await this.inspect(name);
        if (holder) return { acquired: false, holder };
        continue; // released or ran out between the two calls: try again
      }
      if (!doc) throw new PersisterError(`MongoDB acquire of "${name}" returned no document although it upserts. Check the collection.`);
      const lease = toLockInfo(name, doc);
      return doc.expired ? { acquired: true, lease, expired: toLockInfo(name, doc.expired) } : { acquired: true, lease };
    }
    throw new PersisterError(
      `MongoDB acquire of "${name}" collided ${MAX_ACQUIRE_ATTEMPTS} times with leases that were gone when read. The operation can be retried.`,
    );
  }

  /** Extend the lease to `$$NOW + ttlMs`, only with the holder's token and only while it has not run out. */
  async renew(request: RenewRequest): Promise<RenewResult> {
    const { name, token, ttlMs } = checkRenew(request);
    let doc: Pick<MongoLeaseDocument, 'expiresAt'> | null;
    try {
      doc = (await this.collection.findOneAndUpdate(heldByFilter(name, token), renewPipeline(ttlMs), {
        returnDocument: 'after',
        projection: { expiresAt: 1 },
        writeConcern: this.writeConcern,
        includeResultMetadata: false,
      })) as Pick<MongoLeaseDocument, 'expiresAt'> | null;
    } catch (error) {
      throw toPersisterError(`MongoDB renew of "${name}"`, error);
    }
    if (doc) return { renewed: true, expiresAt: new Date(doc.expiresAt) };
    return { renewed: false, holder: (await this.inspect(name)) ?? (await this.evictionOf(name, token)) };
  }

  /** End the lease, only with the holder's token; the document (and its fence) stays. */
  async release(request: ReleaseRequest): Promise<boolean> {
    const { name, token } = checkRelease(request);
    try {
      const result = await this.collection.updateOne(heldByFilter(name, token), releasePipeline(), {
        writeConcern: this.writeConcern,
      });
      return result.matchedCount === 1;
    } catch (error) {
      throw toPersisterError(`MongoDB release of "${name}"`, error);
    }
  }

  /** The live lease of `name` by the server's clock, or null. */
  async inspect(name: string): Promise<LockInfo | null> {
    checkString('name', name);
    try {
      const doc = (await this.collection.findOne(liveFilter(name), {
        projection: { ...WITHOUT_TOKEN, expired: 0 },
        readPreference: PRIMARY,
      })) as MongoLeaseDocument | null;
      return doc ? toLockInfo(name, doc) : null;
    } catch (error) {
      throw toPersisterError(`MongoDB inspect of "${name}"`, error);
    }
  }

  /**
   * How the keep-alive thread (`keepAlive: 'thread'`) reaches this collection: the
   * connection string the `MongoClient` was made with, the database, the collection
   * and the write concern. Options given to the `MongoClient` beside the string (TLS
   * files, credentials objects…) are not carried over: put them in the string, or
   * build the persister with `persisterFromUrl`.
   * @throws TypeError when the client does not show its connection string.
   */
  threadDescriptor(): ThreadDescriptor {
    const client = this.collection.db.client as unknown as { s?: { url?: unknown } };
    const url = client.s?.url;
    if (typeof url !== 'string') {
      throw new TypeError(
        "keepAlive: 'thread' cannot read the connection string of this MongoClient (a driver other than mongodb 6/7?); " +
          "build the persister with persisterFromUrl(url), or use keepAlive: 'loop'",
      );
    }
    const dropped: string[] = [];
    const writeConcern = cloneable(this.writeConcern, 'writeConcern', dropped) as Record<string, unknown>;
    return {
      kind: 'mongodb',
      url,
      database: this.collection.dbName,
      collection: this.collection.collectionName,
      writeConcern,
      ...(dropped.length ? { dropped } : {}),
    };
  }

  /** Every live lease (server clock), sorted by name; only names starting with `options.prefix`. */
  async list(options?: ListOptions): Promise<LockInfo[]> {
    const prefix = checkListOptions(options);
    try {
      const docs = (await this.collection
        .find(listFilter(prefix), { projection: { token: 0, expired: 0, evicted: 0 }, readPreference: PRIMARY })
        .toArray()) as unknown as MongoLeaseDocument[];
      return byName(docs.map((doc) => toLockInfo(doc._id, doc)));
    } catch (error) {
      throw toPersisterError('MongoDB list of the locks', error);
    }
  }

  /**
   * Ends the lease of `name` whoever holds it, in one update: the document and its fence
   * stay, and the eviction is noted so the evicted holder's next renewal reports
   * `taken-over`. Resolves the evicted holder, or `null` when nothing was held.
   */
  async forceRelease(name: string): Promise<LockInfo | null> {
    checkForceReleaseName(name);
    try {
      const doc = (await this.collection.findOneAndUpdate(liveFilter(name), forceReleasePipeline(operatorIdentity()), {
        returnDocument: 'before',
        projection: { ...WITHOUT_TOKEN, expired: 0 },
        writeConcern: this.writeConcern,
        includeResultMetadata: false,
      })) as MongoLeaseDocument | null;
      return doc ? toLockInfo(name, doc) : null;
    } catch (error) {
      throw toPersisterError(`MongoDB forced release of "${name}"`, error);
    }
  }

  /** After a refused renewal with nobody holding the lock: the eviction, if a forced release ended the lease of `token`. */
  private async evictionOf(name: string, token: string): Promise<LockInfo | null> {
    try {
      const doc = (await this.collection.findOne(evictedFilter(name, token), {
        projection: EVICTION_FIELDS,
        readPreference: PRIMARY,
      })) as { evicted?: MongoEvictedRecord } | null;
      const e = doc?.evicted;
      if (!e) return null;
      return evictionHolder(name, { at: new Date(e.at).getTime(), hostname: e.hostname, pid: Number(e.pid), fence: toFencingToken(e.fence) });
    } catch (error) {
      throw toPersisterError(`MongoDB renew of "${name}"`, error);
    }
  }

  /** Closes the `MongoClient` when the persister owns it (`ownsClient`); otherwise does nothing. */
  async close(): Promise<void> {
    if (!this.ownsClient) return;
    this.closing ??= this.collection.db.client.close().catch((error: unknown) => {
      throw toPersisterError('Closing the MongoDB client', error);
    });
    return this.closing;
  }
}

function isCollection(value: unknown): value is Collection<Document> {
  const c = value as Partial<Collection<Document>> | null;
  return (
    typeof c === 'object' &&
    c !== null &&
    typeof c.collectionName === 'string' &&
    typeof c.findOneAndUpdate === 'function' &&
    typeof c.updateOne === 'function' &&
    typeof c.findOne === 'function'
  );
}

function isDb(value: unknown): value is Db {
  const d = value as Partial<Db> | null;
  return typeof d === 'object' && d !== null && typeof d.databaseName === 'string' && typeof d.collection === 'function';
}

function checkString(what: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(expected(what, 'a non-empty string', value));
  return value;
}

function checkTtl(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(expected('ttlMs', 'a whole number of milliseconds ≥ 1', value));
  }
  return value;
}

function checkAcquire(request: AcquireRequest): AcquireRequest {
  const { owner } = request;
  if (owner === null || typeof owner !== 'object') throw new TypeError(expected('owner', 'an OwnerInfo object', owner));
  checkString('owner.owner', owner.owner);
  if (typeof owner.hostname !== 'string') throw new TypeError(expected('owner.hostname', 'a string', owner.hostname));
  if (typeof owner.pid !== 'number' || !Number.isInteger(owner.pid)) throw new TypeError(expected('owner.pid', 'a whole number', owner.pid));
  return { name: checkString('name', request.name), token: checkString('token', request.token), ttlMs: checkTtl(request.ttlMs), owner };
}

function checkRenew(request: RenewRequest): RenewRequest {
  return { name: checkString('name', request.name), token: checkString('token', request.token), ttlMs: checkTtl(request.ttlMs) };
}

function checkRelease(request: ReleaseRequest): ReleaseRequest {
  return { name: checkString('name', request.name), token: checkString('token', request.token) };
}
