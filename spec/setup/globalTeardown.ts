/** Stops the redis-server the global setup started. */
export default async function globalTeardown(): Promise<void> {
  await globalThis.__SINGLETON_REDIS__?.stop();
}
