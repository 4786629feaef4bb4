/**
 * Where a coalesced run leaves its outcome for `resultTtlMs`, and how waiters hear of it.
 *
 * The `Persister` interface stores leases only, so the `Coalescer` keeps outcomes through
 * this second, small interface, with one implementation per store it supports (Redis,
 * PostgreSQL, MongoDB, the file store, memory). Everything in it is keyed by the coalescing key, which is also the
 * lock name of the run's lease.
 */
import { FilePersister } from '../persisters/FilePersister';
import { MemoryPersister } from '../persisters/MemoryPersister';
import { MongoPersister } from '../persisters/MongoPersister';
import type { Persister } from '../persisters/Persister';
import { PostgresPersister } from '../persisters/PostgresPersister';
import { RedisPersister } from '../persisters/RedisPersister';
import { FileOutcomeStore } from './FileOutcomeStore';
import { memoryOutcomeStoreFor } from './MemoryOutcomeStore';
import { MongoOutcomeStore } from './MongoOutcomeStore';
import { PostgresOutcomeStore } from './PostgresOutcomeStore';
import { RedisOutcomeStore } from './RedisOutcomeStore';

/**
 * The outcome channel of one store. Implement it to coalesce over a store the library does
 * not support out of the box, and pass it as `new Coalescer(persister, { outcomes })`.
 *
 * Store failures reject with a `PersisterError`.
 */
export interface OutcomeStore {
  /** Shown in messages and logs, e.g. `'redis'`. */
  readonly kind: string;
  /**
   * Stores the outcome of `key` for `ttlMs` (replacing any older one) and, where the store
   * can, broadcasts it to the subscribers of `key`. Called by the runner while it still
   * holds the key's lease, before it releases it.
   */
  put(key: string, outcome: string, ttlMs: number): Promise<void>;
  /** The outcome of `key` stored less than its `ttlMs` ago, or `null`. */
  get(key: string): Promise<string | null>;
  /**
   * Calls `onOutcome` with every outcome `put` for `key` from now on; resolves once the
   * subscription is in place, with the function that ends it. Stores without
   * notifications leave it out: their waiters poll `get`.
   */
  subscribe?(key: string, onOutcome: (outcome: string) => void): Promise<() => Promise<void>>;
  /**
   * Deletes the outcome of `key` if it has expired. Only for stores that do not expire
   * entries by themselves; the `Coalescer` calls it while holding the key's lease, so no
   * run can write meanwhile.
   */
  sweep?(key: string): Promise<void>;
  /** Frees what the store opened (never a client the user passed in). */
  close?(): Promise<void>;
}

/** The stores the `Coalescer` builds an {@link OutcomeStore} for by itself. */
export const SUPPORTED_PERSISTERS = 'RedisPersister, PostgresPersister, MongoPersister, FilePersister and MemoryPersister';

/**
 * The default outcome store of `persister`: beside its leases, with the same key prefix,
 * table (`<table>_outcomes`), collection (`<collection>_outcomes`), directory or memory. A TypeError for any other persister, naming the way out.
 */
export function outcomeStoreFor(persister: Persister): { store: OutcomeStore; owned: boolean } {
  if (persister instanceof RedisPersister) {
    const store = new RedisOutcomeStore(persister.redisClient, {
      keyPrefix: persister.keyPrefix,
      operationTimeoutMs: persister.operationTimeoutMs,
    });
    return { store, owned: true };
  }
  if (persister instanceof PostgresPersister) return { store: new PostgresOutcomeStore(persister), owned: true };
  if (persister instanceof MongoPersister) return { store: new MongoOutcomeStore(persister), owned: true };
  if (persister instanceof FilePersister) return { store: new FileOutcomeStore(persister.dir), owned: true };
  if (persister instanceof MemoryPersister) return { store: memoryOutcomeStoreFor(persister), owned: false };
  const name = (persister as object | null)?.constructor?.name ?? typeof persister;
  throw new TypeError(
    `The Coalescer keeps outcomes beside the leases and supports ${SUPPORTED_PERSISTERS}; got ${name}. ` +
      'For another store, pass an OutcomeStore: new Coalescer(persister, { outcomes }).',
  );
}

