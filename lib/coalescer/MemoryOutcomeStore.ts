import { EventEmitter } from 'node:events';
import type { MemoryPersister } from '../persisters/MemoryPersister';
import type { OutcomeStore } from './OutcomeStore';

interface Entry {
  outcome: string;
  expiresAtMs: number;
}

/**
 * Outcomes in this process's memory, beside a `MemoryPersister`: a `Map` with expiry
 * times, and an `EventEmitter` per key for subscribers. Expired entries are dropped when
 * read and on every `put`, so no timer is ever left behind.
 */
export class MemoryOutcomeStore implements OutcomeStore {
  /** Shown in messages and logs. */
  readonly kind = 'memory';
  private readonly entries = new Map<string, Entry>();
  private readonly events = new EventEmitter().setMaxListeners(0);

  /** Keeps the outcome for `ttlMs` and hands it to the subscribers of `key` at once. */
  async put(key: string, outcome: string, ttlMs: number): Promise<void> {
    const now = Date.now();
    for (const [k, e] of this.entries) if (e.expiresAtMs <= now) this.entries.delete(k);
    this.entries.set(key, { outcome, expiresAtMs: now + ttlMs });
    this.events.emit(key, outcome);
  }

  /** The unexpired outcome of `key`, or `null`. */
  async get(key: string): Promise<string | null> {
    const entry = this.entries.get(key);
    if (!entry) return null;
    if (entry.expiresAtMs > Date.now()) return entry.outcome;
    this.entries.delete(key);
    return null;
  }

  /** Calls `onOutcome` with every outcome put for `key` until the returned function is called. */
  async subscribe(key: string, onOutcome: (outcome: string) => void): Promise<() => Promise<void>> {
    const listener = (outcome: string) => onOutcome(outcome);
    this.events.on(key, listener);
    return async () => {
      this.events.off(key, listener);
    };
  }
}

const stores = new WeakMap<MemoryPersister, MemoryOutcomeStore>();

/** The one outcome store of a `MemoryPersister`, shared by every `Coalescer` on it. */
export function memoryOutcomeStoreFor(persister: MemoryPersister): MemoryOutcomeStore {
  let store = stores.get(persister);
  if (!store) {
    store = new MemoryOutcomeStore();
    stores.set(persister, store);
  }
  return store;
}
