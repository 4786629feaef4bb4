/**
 * `keepAlive: 'thread'`: the keeper a `Singleton` hands its leases to when they are
 * to be renewed from the process's keep-alive thread rather than its event loop
 * (DESIGN.md §9). Same `add` / `remove` as the loop keeper of LeaseKeeper.ts.
 */
import { keeperFor, type KeptLease } from '../LeaseKeeper';
import type { Logger } from '../logger';
import type { Persister } from '../persisters/Persister';
import { threadDescriptorOf } from './descriptor';
import { keepAliveThread, type ThreadLease } from './KeepAliveThread';

/** What {@link threadKeeperFor} needs from the `Singleton`. */
export interface ThreadKeeperOptions {
  /** Renew only while the event loop has been unresponsive for less than this (`maxBlockMs`). */
  maxBlockMs: number;
  /** The instance's owner string, for the log line written if the thread must end the process. */
  owner: string;
  /** Host name, for the same line. */
  hostname: string;
  /**
   * Whether a loss now ends the process (the effective `onLost` is `'exit'`). Read when a
   * lease is added and at every heartbeat, so attaching a `lost` listener later counts.
   */
  exitOnLost: () => boolean;
  /** Where to say (once per persister) which connection options could not cross to the thread. */
  logger?: Logger;
}

/** The `add` / `remove` a `Singleton` calls, whichever keeper it has. */
export interface Keeper {
  add(kept: KeptLease): void;
  remove(kept: KeptLease): void;
}

/** One registered store per persister, shared by every Singleton on it. */
interface StoreRecord {
  id: number;
  /** Set once the thread could not serve this store: its leases are renewed from the event loop. */
  failed: Error | undefined;
  /** Leases handed back to the loop keeper after a failure. */
  onLoop: WeakSet<KeptLease>;
}

const stores = new WeakMap<Persister, StoreRecord>();

function storeFor(persister: Persister, logger: Logger | undefined): StoreRecord {
  let record = stores.get(persister);
  if (record) return record;
  const descriptor = threadDescriptorOf(persister);
  if (descriptor.dropped?.length) {
    logger?.warn(
      { dropped: descriptor.dropped },
      `keepAlive 'thread': the keep-alive thread connects to the store without these options, which cannot cross threads (it uses the driver's defaults for them): ${descriptor.dropped.join(', ')}`,
    );
  }
  const created: StoreRecord = { id: 0, failed: undefined, onLoop: new WeakSet() };
  created.id = keepAliveThread().addStore({
    descriptor,
    loop: keeperFor(persister),
    onThreadFailed(error, leases: ThreadLease[]) {
      created.failed = error;
      const loop = keeperFor(persister);
      for (const { kept } of leases) {
        created.onLoop.add(kept);
        loop.add(kept);
        kept.onError(new Error(`${error.message} Renewing lock "${kept.name}" from the event loop instead (keepAlive: 'loop').`, { cause: error }));
      }
    },
  });
  stores.set(persister, created);
  return created;
}

/**
 * The keeper of one `Singleton` in `keepAlive: 'thread'` mode.
 *
 * @throws TypeError when `persister` cannot be reached from another thread (a
 *   `MemoryPersister`, a custom persister without `threadDescriptor()`): the message says
 *   why and what to do. Thrown at once, so the `Singleton` constructor refuses it.
 */
export function threadKeeperFor(persister: Persister, options: ThreadKeeperOptions): Keeper {
  const store = storeFor(persister, options.logger);
  const log = { owner: options.owner, hostname: options.hostname };
  return {
    add(kept: KeptLease): void {
      if (store.failed) {
        store.onLoop.add(kept);
        keeperFor(persister).add(kept);
        return;
      }
      keepAliveThread().add(store.id, { kept, maxBlockMs: options.maxBlockMs, exitOnLost: options.exitOnLost, log });
    },
    remove(kept: KeptLease): void {
      if (store.onLoop.delete(kept)) keeperFor(persister).remove(kept);
      else keepAliveThread().remove(kept);
    },
  };
}
