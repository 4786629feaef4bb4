import { type SingletonOptions } from './options';
import type { Persister } from './persisters/Persister';
import { Singleton } from './Singleton';
import { expected } from './validate';

/** Options of {@link standby}: the lock name plus any `Singleton` option. */
export interface StandbyOptions extends SingletonOptions {
  /** The lock name shared by every replica. */
  name: string;
}

/**
 * Hot standby in one call (the node-standby use case): stands by, runs `task()`
 * once when this instance becomes the active one, and keeps the lease
 * (renewed) after `task()` returns, until `release()` or process exit.
 *
 * `release()` gives the lease up and stops standing by. If the lease is lost,
 * the instance goes back to standing by and `task` runs again when it is
 * active again. If `task` throws, the error is emitted (`error`) and the lease
 * is released so a healthy replica can take over; this one stands by again.
 *
 * @example
 * ```ts
 * const s = standby(new RedisPersister(redis), () => startConsumer(), { name: 'orders-consumer' });
 * s.on('conflict', ({ holder }) => console.log('standing by; active:', holder.owner));
 * ```
 */
export function standby(persister: Persister, task: () => unknown, options: StandbyOptions): Singleton {
  if (typeof task !== 'function') throw new TypeError(expected('task', 'a function', task));
  if (options === null || typeof options !== 'object') throw new TypeError(expected('options', 'an object with a `name`', options));
  const { name, ...singletonOptions } = options;
  const singleton = new Singleton(name, persister, singletonOptions);
  let stopped = false;
  let lostOrReleased: (() => void) | undefined;
  // Listening for 'lost' means a lost lease sends this instance back to standing by instead of exiting.
  singleton.on('lost', () => lostOrReleased?.());
  singleton.on('released', () => lostOrReleased?.());
  const originalRelease = singleton.release.bind(singleton);
  singleton.release = async () => {
    stopped = true;
    await originalRelease();
  };

  const loop = async (): Promise<void> => {
    while (!stopped) {
      try {
        await singleton.waitForLock();
      } catch (err) {
        if (stopped) return;
        singleton.reportError(err as Error);
        continue;
      }
      if (stopped) return;
      const ended = new Promise<void>((resolve) => {
        lostOrReleased = resolve;
      });
      try {
        await task();
      } catch (err) {
        singleton.reportError(err instanceof Error ? err : new Error(String(err)));
        if (singleton.state === 'locked') await originalRelease().catch(() => undefined);
      }
      if (singleton.state === 'locked') await ended;
      lostOrReleased = undefined;
    }
  };
  void loop();
  return singleton;
}
