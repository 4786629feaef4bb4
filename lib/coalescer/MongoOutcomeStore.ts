import type { Collection, Document, WriteConcernSettings } from 'mongodb';
import { toPersisterError } from '../errors';
import type { MongoPersister } from '../persisters/MongoPersister';
import { expected } from '../validate';
import type { OutcomeStore } from './OutcomeStore';

/** Appended to the lease collection's name to name the outcome collection beside it. */
export const MONGO_OUTCOME_COLLECTION_SUFFIX = '_outcomes';

/** An outcome document: `_id` the coalescing key. */
interface OutcomeDocument {
  _id: string;
  outcome: string;
  expiresAt: Date;
}

/** The server's clock, as an aggregation variable. */
const NOW = '$$NOW';

/**
 * Outcomes in MongoDB, beside a `MongoPersister`'s leases: one document per key
 * (`_id: key`) in the collection `<lease collection>_outcomes` of the same database,
 * readable until `expiresAt` by the server's clock (`$$NOW`, never this process's). No
 * notifications: waiters poll `get`, and wake on the lease's release at the holder's
 * known expiry. An expired document is replaced by the next run of its key or removed by
 * {@link sweep}. Writes use the persister's write concern (majority by default); reads go
 * to the primary.
 */
export class MongoOutcomeStore implements OutcomeStore {
  /** Shown in messages and logs. */
  readonly kind = 'mongodb';
  /** The outcome collection. */
  readonly collection: Collection<OutcomeDocument>;

  private readonly writeConcern: WriteConcernSettings;

  /** Outcomes beside the leases of `persister`. */
  constructor(persister: MongoPersister) {
    const leases = persister.collection;
    const name = `${leases.collectionName}${MONGO_OUTCOME_COLLECTION_SUFFIX}`;
    if (Buffer.byteLength(`${leases.dbName}.${name}`) > 255) {
      throw new RangeError(expected('collection', 'a lease collection whose "<db>.<collection>_outcomes" fits in 255 bytes', name));
    }
    this.collection = leases.db.collection<OutcomeDocument>(name);
    this.writeConcern = persister.writeConcernSettings;
  }

  /** Stores the outcome of `key` until `$$NOW + ttlMs` (one upserting update). */
  async put(key: string, outcome: string, ttlMs: number): Promise<void> {
    try {
      await this.collection.updateOne(
        { _id: key },
        [{ $set: { outcome: { $literal: outcome }, expiresAt: { $add: [NOW, { $literal: ttlMs }] } } }],
        { upsert: true, writeConcern: this.writeConcern },
      );
    } catch (error) {
      throw toPersisterError(`MongoDB: storing the outcome of "${key}"`, error);
    }
  }

  /** The outcome of `key` that has not expired by the server's clock, or `null`. */
  async get(key: string): Promise<string | null> {
    try {
      const doc = await this.collection.findOne({ _id: key, $expr: { $gt: ['$expiresAt', NOW] } } as Document, {
        projection: { outcome: 1 },
        readPreference: 'primary',
      });
      return doc ? doc.outcome : null;
    } catch (error) {
      throw toPersisterError(`MongoDB: reading the outcome of "${key}"`, error);
    }
  }

  /** Deletes the outcome of `key` if it expired. */
  async sweep(key: string): Promise<void> {
    try {
      await this.collection.deleteOne({ _id: key, $expr: { $lte: ['$expiresAt', NOW] } } as Document, { writeConcern: this.writeConcern });
    } catch (error) {
      throw toPersisterError(`MongoDB: removing the expired outcome of "${key}"`, error);
    }
  }
}
