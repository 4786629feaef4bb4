/**
 * Our library on Redis or PostgreSQL for the PostgreSQL scenario: the compiled lib/ (as
 * bench/contenders.ts loads it: `SINGLETON_BENCH_LIB`, else lib/ through tsx), and a
 * persister per store on a connection of its own, as a separate process would have.
 */
import { join } from 'node:path';
import Redis from 'ioredis';
import { Pool } from 'pg';
import pino from 'pino';
import type * as PostgresModule from '../lib/persisters/PostgresPersister';
import type * as RedisModule from '../lib/persisters/RedisPersister';
import type { Persister } from '../lib/persisters/Persister';
import type * as SingletonModule from '../lib/Singleton';
import { LIB_ENV } from './contenders';

/** The classes the scenario uses, from the compiled library when the benchmark made one. */
export interface StoreLibrary {
  Singleton: typeof SingletonModule.Singleton;
  RedisPersister: typeof RedisModule.RedisPersister;
  PostgresPersister: typeof PostgresModule.PostgresPersister;
}

let loaded: StoreLibrary | undefined;

/** Loads {@link StoreLibrary} once. */
export function storeLibrary(): StoreLibrary {
  if (loaded) return loaded;
  const dir = process.env[LIB_ENV];
  /* eslint-disable @typescript-eslint/no-require-imports */
  const load = <T>(compiled: string, source: string): T => (dir ? require(join(dir, compiled)) : require(source)) as T;
  loaded = {
    Singleton: load<typeof SingletonModule>('Singleton.js', '../lib/Singleton').Singleton,
    RedisPersister: load<typeof RedisModule>(join('persisters', 'RedisPersister.js'), '../lib/persisters/RedisPersister').RedisPersister,
    PostgresPersister: load<typeof PostgresModule>(join('persisters', 'PostgresPersister.js'), '../lib/persisters/PostgresPersister')
      .PostgresPersister,
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
  return loaded;
}

/** The stores compared. */
export type StoreKind = 'redis' | 'postgres';

/** A persister on its own connection (a Redis client, or a pool of 2), and how to close both. */
export interface BenchStore {
  kind: StoreKind;
  persister: Persister;
  close(): Promise<void>;
}

/** The silent logger: the benchmark measures locking, not log I/O. */
export const SILENT = pino({ level: 'silent' });

/** Opens a persister on `url` (PostgreSQL: in `table`). */
export function openStore(kind: StoreKind, url: string, table?: string): BenchStore {
  const lib = storeLibrary();
  if (kind === 'redis') {
    const redis = new Redis(url);
    redis.on('error', () => undefined);
    const persister = new lib.RedisPersister(redis);
    return { kind, persister, close: async () => void redis.disconnect() };
  }
  const pool = new Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  const persister = new lib.PostgresPersister(pool, { table });
  return {
    kind,
    persister,
    close: async () => {
      await persister.close();
      await pool.end();
    },
  };
}
