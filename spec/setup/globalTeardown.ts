/** Stops the servers the global setup started. */
export default async function globalTeardown(): Promise<void> {
  await Promise.all([globalThis.__SINGLETON_REDIS__?.stop(), globalThis.__SINGLETON_POSTGRES__?.stop()]);
}
