import { EventEmitter } from 'node:events';
import { byName, checkForceReleaseName, checkListOptions, evictionHolder, operatorIdentity } from './adminSupport';
import type {
  AcquireRequest,
  AcquireResult,
  ListOptions,
  LockInfo,
  Persister,
  PersisterCapabilities,
  ReleaseRequest,
  RenewRequest,
  RenewResult,
} from './Persister';

interface MemoryLease {
  token: string;
  info: Omit<LockInfo, 'expiresAt'>;
  expiresAtMs: number;
}

interface MemoryFence {
  fence: number;
  /** The latest lease of this name and whether it was released (not left to expire). */
  last?: { info: LockInfo; released: boolean };
  /** The last lease ended by `forceRelease()`: its token, and the holder its renewal is told. */
  evicted?: { token: string; holder: LockInfo };
}

/**
 * Leases in this process's memory: for tests and single-process use. Not
 * persistent; the clock is this process's `Date.now()`, which is the store's
 * clock here. Fencing tokens are seeded from the clock in microseconds, as on
 * every store.
 */
export class MemoryPersister implements Persister {
  /** Memory has notifications, fencing and a listing but does not outlive the process. */
  readonly capabilities: PersisterCapabilities = Object.freeze({
    serverClock: true,
    notify: true,
    fencing: true,
    persistent: false,
    list: true,
  });

  private readonly leases = new Map<string, MemoryLease>();
  private readonly fences = new Map<string, MemoryFence>();
  private readonly releases = new EventEmitter().setMaxListeners(0);

  /** Take the lease if it is free or expired. */
  async acquire({ name, token, ttlMs, owner }: AcquireRequest): Promise<AcquireResult> {
    const now = Date.now();
    const current = this.leases.get(name);
    if (current && current.expiresAtMs > now) {
      if (current.token !== token) return { acquired: false, holder: this.view(current) };
      current.expiresAtMs = now + ttlMs;
      return { acquired: true, lease: this.view(current) };
    }
    const record = this.fences.get(name) ?? { fence: 0 };
    let expired: LockInfo | undefined;
    if (record.last && !record.last.released) expired = record.last.info;
    const fence = Math.max(record.fence + 1, now * 1000);
    const lease: MemoryLease = {
      token,
      info: { name, owner: owner.owner, hostname: owner.hostname, pid: owner.pid, fencingToken: fence, acquiredAt: new Date(now) },
      expiresAtMs: now + ttlMs,
    };
    this.leases.set(name, lease);
    record.fence = fence;
    record.last = { info: this.view(lease), released: false };
    this.fences.set(name, record);
    return expired ? { acquired: true, lease: this.view(lease), expired } : { acquired: true, lease: this.view(lease) };
  }

  /** Extend the lease, only with the holder's token. */
  async renew({ name, token, ttlMs }: RenewRequest): Promise<RenewResult> {
    const now = Date.now();
    const current = this.leases.get(name);
    if (!current || current.expiresAtMs <= now) return { renewed: false, holder: this.evictedBy(name, token) };
    if (current.token !== token) return { renewed: false, holder: this.view(current) };
    current.expiresAtMs = now + ttlMs;
    const record = this.fences.get(name);
    if (record?.last) record.last.info = this.view(current);
    return { renewed: true, expiresAt: new Date(current.expiresAtMs) };
  }

  /** Delete the lease, only with the holder's token. */
  async release({ name, token }: ReleaseRequest): Promise<boolean> {
    const current = this.leases.get(name);
    if (!current || current.token !== token || current.expiresAtMs <= Date.now()) return false;
    this.leases.delete(name);
    const record = this.fences.get(name);
    if (record?.last) record.last.released = true;
    this.releases.emit(name);
    return true;
  }

  /** The current holder, or null. */
  async inspect(name: string): Promise<LockInfo | null> {
    const current = this.leases.get(name);
    if (!current || current.expiresAtMs <= Date.now()) return null;
    return this.view(current);
  }

  /** Calls `onRelease` on every release of `name`. */
  async watch(name: string, onRelease: () => void): Promise<() => Promise<void>> {
    const listener = () => onRelease();
    this.releases.on(name, listener);
    return async () => {
      this.releases.off(name, listener);
    };
  }

  /** Every unexpired lease, sorted by name (only names starting with `options.prefix`). */
  async list(options?: ListOptions): Promise<LockInfo[]> {
    const prefix = checkListOptions(options);
    const now = Date.now();
    const out: LockInfo[] = [];
    for (const [name, lease] of this.leases) {
      if (lease.expiresAtMs > now && name.startsWith(prefix)) out.push(this.view(lease));
    }
    return byName(out);
  }

  /**
   * Ends the lease of `name` whoever holds it; the fence stays, so the next lease's is
   * higher. Resolves the evicted holder, or `null` when nothing was held.
   */
  async forceRelease(name: string): Promise<LockInfo | null> {
    checkForceReleaseName(name);
    const current = this.leases.get(name);
    const now = Date.now();
    if (!current || current.expiresAtMs <= now) return null;
    const evicted = this.view(current);
    this.leases.delete(name);
    const record = this.fences.get(name) ?? { fence: Number(evicted.fencingToken) };
    if (record.last) record.last.released = true;
    const holder = evictionHolder(name, { at: now, fence: evicted.fencingToken, ...operatorIdentity() });
    record.evicted = { token: current.token, holder };
    this.fences.set(name, record);
    this.releases.emit(name);
    return evicted;
  }

  /** The holder a refused renewal of a lease ended by `forceRelease()` reports, else null. */
  private evictedBy(name: string, token: string): LockInfo | null {
    const evicted = this.fences.get(name)?.evicted;
    return evicted?.token === token ? evicted.holder : null;
  }

  private view(lease: MemoryLease): LockInfo {
    return { ...lease.info, acquiredAt: new Date(lease.info.acquiredAt), expiresAt: new Date(lease.expiresAtMs) };
  }
}
