import { postgresUnavailableReason, startPostgresServer, type PostgresServer } from './postgresServer';
import { startRedisServer, type RedisServer } from './redisServer';

declare global {
  // eslint-disable-next-line no-var
  var __SINGLETON_REDIS__: RedisServer | undefined;
  // eslint-disable-next-line no-var
  var __SINGLETON_POSTGRES__: PostgresServer | undefined;
}

/**
 * Starts one throwaway redis-server (unless REDIS_URL points at one) and one throwaway
 * PostgreSQL (unless POSTGRES_URL does), side by side. Where PostgreSQL's server
 * binaries are missing, POSTGRES_UNAVAILABLE says why and the PostgreSQL suites report
 * themselves as not run, by name.
 */
export default async function globalSetup(): Promise<void> {
  const redis = process.env.REDIS_URL
    ? undefined
    : startRedisServer().then((server) => {
        globalThis.__SINGLETON_REDIS__ = server;
        process.env.REDIS_URL = server.url;
      });
  const postgres = process.env.POSTGRES_URL ? undefined : startPostgres();
  const results = await Promise.allSettled([redis, postgres]);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    // Jest runs no teardown after a failed setup: stop whichever server did start.
    await Promise.all([globalThis.__SINGLETON_REDIS__?.stop(), globalThis.__SINGLETON_POSTGRES__?.stop()]);
    throw failure.reason;
  }
}

async function startPostgres(): Promise<void> {
  const reason = postgresUnavailableReason();
  if (reason) {
    process.env.POSTGRES_UNAVAILABLE = reason;
    return;
  }
  const server = await startPostgresServer();
  globalThis.__SINGLETON_POSTGRES__ = server;
  process.env.POSTGRES_URL = server.url;
}
