import { postgresUnavailableReason, startPostgresServer, type PostgresServer } from './postgresServer';
import { startRedisServer, type RedisServer } from './redisServer';
import { shellWord, startWatchdog } from './watchdog';

declare global {
  // eslint-disable-next-line no-var
  var __SINGLETON_REDIS__: RedisServer | undefined;
  // eslint-disable-next-line no-var
  var __SINGLETON_POSTGRES__: PostgresServer | undefined;
  // eslint-disable-next-line no-var
  var __SINGLETON_WATCHDOG__: { disarm(): void } | undefined;
}

/**
 * The shared server refuses what would disturb the suites running beside the one that sends
 * it (pausing every client, flushing every key, stopping the server): a test that needs one
 * of these starts a redis-server of its own (`startRedisServer`), and one that forgets fails
 * at once with NOPERM instead of making another suite flaky.
 */
const SHARED_SERVER_ACL = ['--user', 'default', 'on', 'nopass', '~*', '&*', '+@all', '-client|pause', '-flushall', '-flushdb', '-shutdown', '-debug', '-config|set', '-script|flush'];

/**
 * Starts one throwaway redis-server (unless REDIS_URL points at one) and one throwaway
 * PostgreSQL (unless POSTGRES_URL does), side by side. Where PostgreSQL's server
 * binaries are missing, POSTGRES_UNAVAILABLE says why and the PostgreSQL suites report
 * themselves as not run, by name.
 */
export default async function globalSetup(): Promise<void> {
  const redis = process.env.REDIS_URL
    ? undefined
    : startRedisServer(undefined, SHARED_SERVER_ACL).then((server) => {
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
  // If Jest dies without its teardown, stop both servers anyway (redis-server by pid; PostgreSQL
  // by an immediate shutdown of its postmaster, then its data directory).
  const steps: string[] = [];
  const redisPid = globalThis.__SINGLETON_REDIS__?.process.pid;
  if (redisPid) steps.push(`kill -9 ${redisPid}`);
  const pgDir = globalThis.__SINGLETON_POSTGRES__?.dir;
  if (pgDir) steps.push(`kill -QUIT "$(head -n 1 ${shellWord(`${pgDir}/postmaster.pid`)})"; sleep 1; rm -rf ${shellWord(pgDir)}`);
  if (steps.length > 0) globalThis.__SINGLETON_WATCHDOG__ = startWatchdog(`${steps.join('; ')} 2>/dev/null`);
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
