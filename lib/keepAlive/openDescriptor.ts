/**
 * The keep-alive thread's side of a {@link ThreadDescriptor}: a persister of its own,
 * on its own connection, to the store the main thread's persister uses.
 */
import type { Cluster as ClusterClass, Redis as RedisClass } from 'ioredis';
import type { MongoClient as MongoClientClass } from 'mongodb';
import { FilePersister } from '../persisters/FilePersister';
import { persisterFromUrl } from '../persisters/fromUrl';
import { MongoPersister } from '../persisters/MongoPersister';
import type { Persister } from '../persisters/Persister';
import { RedisPersister } from '../persisters/RedisPersister';
import { expected } from '../validate';
import type { ThreadDescriptor } from './descriptor';

/* eslint-disable @typescript-eslint/no-require-imports -- the drivers are optional: loaded only for a store that uses them */
const ioredis = () => require('ioredis') as { Redis: typeof RedisClass; Cluster: typeof ClusterClass };
const mongodb = () => require('mongodb') as { MongoClient: typeof MongoClientClass };
/* eslint-enable @typescript-eslint/no-require-imports */

/** A persister the thread owns, so it can close it when it stops. */
export type OpenedPersister = Persister & { close(): Promise<void> };

/** ioredis defaults for the thread's own connection: queue while connecting, never print unhandled errors. */
const THREAD_REDIS_OVERRIDES = Object.freeze({ lazyConnect: false, enableOfflineQueue: true });

/** Opens a persister from `descriptor`; the drivers are imported only now. */
export async function openDescriptor(descriptor: ThreadDescriptor): Promise<OpenedPersister> {
  switch (descriptor.kind) {
    case 'redis': {
      const { Redis } = ioredis();
      const client = new Redis({ ...descriptor.options, ...THREAD_REDIS_OVERRIDES });
      return owned(new RedisPersister(client, redisSettings(descriptor)));
    }
    case 'redis-cluster': {
      const { Cluster } = ioredis();
      const client = new Cluster(descriptor.startupNodes as ConstructorParameters<typeof ClusterClass>[0], {
        ...descriptor.options,
        ...THREAD_REDIS_OVERRIDES,
      });
      return owned(new RedisPersister(client, redisSettings(descriptor)));
    }
    case 'url': {
      return persisterFromUrl(descriptor.url, descriptor.options);
    }
    case 'mongodb': {
      const { MongoClient } = mongodb();
      const client = new MongoClient(descriptor.url);
      return owned(
        new MongoPersister(client.db(descriptor.database), {
          collection: descriptor.collection,
          writeConcern: descriptor.writeConcern,
          ownsClient: true,
        }),
      );
    }
    case 'file': {
      return owned(new FilePersister({ dir: descriptor.dir }));
    }
    case 'module': {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(descriptor.module) as Record<string, unknown>;
      const factoryName = descriptor.factory ?? 'createPersister';
      const factory = mod[factoryName];
      if (typeof factory !== 'function') {
        throw new TypeError(expected(`export "${factoryName}" of ${descriptor.module}`, 'a function returning a Persister', factory));
      }
      return owned((await (factory as (argument: unknown) => Persister | Promise<Persister>)(descriptor.argument)) as Persister);
    }
  }
}

function redisSettings(d: { keyPrefix: string; operationTimeoutMs: number }) {
  return { keyPrefix: d.keyPrefix, operationTimeoutMs: d.operationTimeoutMs, ownsClient: true };
}

function owned(persister: Persister): OpenedPersister {
  if (typeof persister.close === 'function') return persister as OpenedPersister;
  return Object.assign(persister, { close: async () => undefined });
}
