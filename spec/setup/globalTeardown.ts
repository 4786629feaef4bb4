/** Stops the servers the global setup started. */
export default async function globalTeardown(): Promise<void> {
  globalThis.__SINGLETON_WATCHDOG__?.disarm();
  await Promise.all([globalThis.__SINGLETON_REDIS__?.stop(), globalThis.__SINGLETON_POSTGRES__?.stop()]);
}
