import { startRedisServer, type RedisServer } from './redisServer';

declare global {
  // eslint-disable-next-line no-var
  var __SINGLETON_REDIS__: RedisServer | undefined;
}

/** Starts one throwaway redis-server for the whole run unless REDIS_URL points at one. */
export default async function globalSetup(): Promise<void> {
  if (process.env.REDIS_URL) return;
  const server = await startRedisServer();
  globalThis.__SINGLETON_REDIS__ = server;
  process.env.REDIS_URL = server.url;
}
