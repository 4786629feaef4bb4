/**
 * The main thread's side of the keep-alive thread: one per process, shared by every
 * `keepAlive: 'thread'` lease of every store. It starts the worker at the first lease,
 * stamps the heartbeat the worker reads, routes the worker's reports to the leases, and
 * stops the worker once nothing has been held for {@link IDLE_STOP_MS}.
 *
 * Until the worker has started and opened its own connection to the lease's store (tens
 * of ms on an idle machine), a new lease is renewed by the store's loop keeper, and handed
 * to the worker once it says that store is ready: a slow thread start never costs a lease.
 */
import type { Worker } from 'node:worker_threads';
import { PersisterError } from '../errors';
import type { KeptLease } from '../LeaseKeeper';
import type { ThreadDescriptor } from './descriptor';
import {
  clockMs,
  type FromWorker,
  type LeaseOwnerLog,
  newSlotPage,
  POLICY_EMIT,
  POLICY_EXIT,
  SLOT_FIELDS,
  SLOT_ID,
  SLOT_POLICY,
  SLOTS_PER_PAGE,
  type ToWorker,
} from './protocol';
import { startKeepAliveWorker } from './workerScript';

/** The thread lingers this long after the last lease, so a process that locks in a loop does not restart it each time. */
export const IDLE_STOP_MS = 1_000;
/** If the worker has not stopped by itself this long after being asked to, it is terminated. */
const STOP_TIMEOUT_MS = 2_000;

/** A lease kept by the thread, with what the thread needs beyond {@link KeptLease}. */
export interface ThreadLease {
  kept: KeptLease;
  /** Renew only while the event loop has been unresponsive for less than this. */
  maxBlockMs: number;
  /** The effective `onLost` is 'exit' now (read again at every heartbeat). */
  exitOnLost: () => boolean;
  log: LeaseOwnerLog;
}

/** The `add` / `remove` of a loop keeper (LeaseKeeper.ts). */
export interface LoopKeeper {
  add(kept: KeptLease): void;
  remove(kept: KeptLease): void;
}

/** What the thread needs from a store's keeper. */
export interface ThreadStore {
  /** How the worker reaches the store. */
  descriptor: ThreadDescriptor;
  /** Renews the store's leases from the event loop while the worker starts. */
  loop: LoopKeeper;
  /** The thread could not open the store (or died): these leases are handed back to the event loop. */
  onThreadFailed(error: Error, leases: ThreadLease[]): void;
}

interface Entry {
  lease: ThreadLease;
  id: number;
  store: number;
  page: number;
  slot: number;
  /** While the worker starts: the stand-in the loop keeper renews. */
  onLoop?: KeptLease;
}

/** Heartbeat period for a given `maxBlockMs`: often enough that a stamp is never mistaken for a block. */
export function heartbeatIntervalMs(maxBlockMs: number): number {
  return Math.min(250, Math.max(10, Math.floor(maxBlockMs / 8)));
}

/** The process-wide keep-alive thread: every keeper of the process shares it ({@link keepAliveThread}). */
export class KeepAliveThread {
  private worker: Worker | undefined;
  private readyWaiters: Array<() => void> = [];
  private readonly heartbeat = new BigInt64Array(new SharedArrayBuffer(8));
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private intervalMs = Infinity;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly pages: Int32Array[] = [];
  private readonly freeSlots: Array<[number, number]> = [];
  private readonly entries = new Map<number, Entry>();
  private readonly byKept = new Map<KeptLease, Entry>();
  private readonly stores = new Map<number, ThreadStore>();
  private readonly storesSent = new Set<number>();
  private readonly storesReady = new Set<number>();
  private nextId = 1;
  private nextStore = 1;

  /** Number of leases kept now. */
  get size(): number {
    return this.entries.size;
  }

  /** Whether the worker runs now (it lingers {@link IDLE_STOP_MS} after the last lease). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /** Resolves once the thread renews every lease added so far (at once when nothing is held). */
  whenReady(): Promise<void> {
    if (!this.anyOnLoop()) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  private anyOnLoop(): boolean {
    for (const entry of this.entries.values()) if (entry.onLoop) return true;
    return false;
  }

  private resolveWaiters(): void {
    if (this.anyOnLoop()) return;
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Registers a store; returns its id for {@link add}. */
  addStore(store: ThreadStore): number {
    const id = this.nextStore++;
    this.stores.set(id, store);
    return id;
  }

  /** Starts renewing `lease` in the thread (starting the thread if needed). */
  add(store: number, lease: ThreadLease): void {
    const known = this.stores.get(store);
    if (!known) throw new Error(`singleton-process internal error: unknown keep-alive store ${store}`);
    this.ensureWorker();
    this.beatAtLeastEvery(heartbeatIntervalMs(lease.maxBlockMs));
    const [page, slot] = this.takeSlot();
    const entry: Entry = { lease, id: this.nextId++, store, page, slot };
    const base = slot * SLOT_FIELDS;
    Atomics.store(this.pages[page], base + SLOT_POLICY, lease.exitOnLost() ? POLICY_EXIT : POLICY_EMIT);
    Atomics.store(this.pages[page], base + SLOT_ID, entry.id);
    this.entries.set(entry.id, entry);
    this.byKept.set(lease.kept, entry);
    if (!this.storesSent.has(store)) {
      this.send({ t: 'store', store, descriptor: known.descriptor });
      this.storesSent.add(store);
    }
    if (this.storesReady.has(store)) this.sendAdd(entry);
    else this.keepOnLoop(entry, known);
  }

  /** Stops renewing `kept`; the thread will not report (or act on) a loss of it any more. */
  remove(kept: KeptLease): boolean {
    const entry = this.byKept.get(kept);
    if (!entry) return false;
    const inThread = !entry.onLoop;
    this.forget(entry);
    if (inThread) this.send({ t: 'remove', id: entry.id });
    return true;
  }

  /** Renewed by the store's loop keeper until the worker is ready, through a stand-in that shares the lease's timing. */
  private keepOnLoop(entry: Entry, store: ThreadStore): void {
    const { kept } = entry.lease;
    const standIn: KeptLease = {
      name: kept.name,
      token: kept.token,
      ttlMs: kept.ttlMs,
      renewIntervalMs: kept.renewIntervalMs,
      expiresAt: kept.expiresAt,
      get sentAt() {
        return kept.sentAt;
      },
      set sentAt(value) {
        kept.sentAt = value;
      },
      get roundTripMs() {
        return kept.roundTripMs;
      },
      set roundTripMs(value) {
        kept.roundTripMs = value;
      },
      onRenewed: (expiresAt) => kept.onRenewed(expiresAt),
      onLost: (reason, holder) => {
        this.forget(entry);
        kept.onLost(reason, holder);
      },
      onError: (error) => kept.onError(error),
    };
    entry.onLoop = standIn;
    store.loop.add(standIn);
  }

  /** Takes a lease off the loop keeper (if it is there). */
  private offLoop(entry: Entry): void {
    if (!entry.onLoop) return;
    this.stores.get(entry.store)?.loop.remove(entry.onLoop);
    entry.onLoop = undefined;
  }

  private sendAdd(entry: Entry): void {
    const { kept, maxBlockMs, log } = entry.lease;
    this.send({
      t: 'add',
      id: entry.id,
      store: entry.store,
      page: entry.page,
      slot: entry.slot,
      name: kept.name,
      token: kept.token,
      ttlMs: kept.ttlMs,
      renewIntervalMs: kept.renewIntervalMs,
      sentAt: clockMs() - (performance.now() - kept.sentAt),
      roundTripMs: kept.roundTripMs,
      maxBlockMs,
      log,
    });
  }

  /** Clears the slot (synchronously visible to the thread) and drops the entry. */
  private forget(entry: Entry): void {
    if (!this.entries.delete(entry.id)) return;
    this.offLoop(entry);
    Atomics.store(this.pages[entry.page], entry.slot * SLOT_FIELDS + SLOT_ID, 0);
    this.freeSlots.push([entry.page, entry.slot]);
    this.byKept.delete(entry.lease.kept);
    if (this.entries.size === 0) this.scheduleStop();
  }

  private takeSlot(): [number, number] {
    const free = this.freeSlots.pop();
    if (free) return free;
    const page = this.pages.length;
    const slots = newSlotPage();
    this.pages.push(slots);
    this.send({ t: 'page', page, buffer: slots.buffer as SharedArrayBuffer });
    for (let slot = SLOTS_PER_PAGE - 1; slot > 0; slot--) this.freeSlots.push([page, slot]);
    return [page, 0];
  }

  private ensureWorker(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.worker) return;
    this.stamp();
    const worker = startKeepAliveWorker({ heartbeat: this.heartbeat.buffer as SharedArrayBuffer });
    this.worker = worker;
    this.pages.forEach((slots, page) => this.send({ t: 'page', page, buffer: slots.buffer as SharedArrayBuffer }));
    worker.on('message', (m: FromWorker) => {
      if (this.worker === worker) this.onMessage(m);
    });
    worker.on('error', (error) => this.onWorkerGone(worker, error));
    worker.on('exit', (code) => this.onWorkerGone(worker, new Error(`the keep-alive thread exited with code ${code}`)));
    worker.unref(); // after the listeners: adding a 'message' listener refs the worker again
  }

  /** The thread reaches `store` now: its leases move from the event loop to the thread. */
  private onStoreReady(store: number): void {
    this.storesReady.add(store);
    for (const entry of this.entries.values()) {
      if (entry.store !== store || !entry.onLoop) continue;
      // Off the loop first, then to the thread: never renewed by both, never by neither for long.
      this.offLoop(entry);
      this.sendAdd(entry);
    }
    this.resolveWaiters();
  }

  /** (Re)arms the heartbeat timer if it is not already this frequent. */
  private beatAtLeastEvery(intervalMs: number): void {
    if (this.heartbeatTimer && intervalMs >= this.intervalMs) return;
    this.stopHeartbeat();
    this.intervalMs = intervalMs;
    this.heartbeatTimer = setInterval(() => this.beat(), intervalMs);
    this.heartbeatTimer.unref();
  }

  private stamp(): void {
    Atomics.store(this.heartbeat, 0, BigInt(Math.floor(clockMs())));
  }

  /** The heartbeat: proves the loop is alive, and refreshes each lease's policy (listeners may have changed). */
  private beat(): void {
    this.stamp();
    for (const { lease, page, slot } of this.entries.values()) {
      Atomics.store(this.pages[page], slot * SLOT_FIELDS + SLOT_POLICY, lease.exitOnLost() ? POLICY_EXIT : POLICY_EMIT);
    }
  }

  private send(message: ToWorker): void {
    this.worker?.postMessage(message);
  }

  private onMessage(m: FromWorker): void {
    if (m.t === 'store-ready') return this.onStoreReady(m.store);
    if (m.t === 'fatal') {
      this.failStore(m.store, new PersisterError(`The keep-alive thread could not open its own connection to the store: ${m.message}.`));
      return;
    }
    const entry = this.entries.get(m.id);
    if (!entry) return; // released meanwhile
    const { kept } = entry.lease;
    switch (m.t) {
      case 'renewed':
        kept.sentAt = performance.now() - (clockMs() - m.sentAt);
        kept.roundTripMs = m.roundTripMs;
        kept.onRenewed(new Date(m.expiresAt));
        return;
      case 'lost':
        // Taken: clearing the slot tells the thread the main thread handles it (no kill).
        this.forget(entry);
        kept.onLost(m.reason, m.holder);
        return;
      case 'error':
        kept.onError(new PersisterError(m.message));
        return;
    }
  }

  /** Hands every lease of `store` back to its keeper (which renews them from the event loop from now on). */
  private failStore(store: number, error: Error): void {
    const failed = [...this.entries.values()].filter((e) => e.store === store);
    for (const entry of failed) {
      this.forget(entry);
      this.send({ t: 'remove', id: entry.id });
    }
    this.stores.get(store)?.onThreadFailed(
      error,
      failed.map((e) => e.lease),
    );
    this.resolveWaiters();
  }

  private onWorkerGone(worker: Worker, error: Error): void {
    if (this.worker !== worker) return; // an old worker that was asked to stop
    this.worker = undefined;
    this.storesSent.clear();
    this.storesReady.clear();
    this.stopHeartbeat();
    const cause = new Error(`The keep-alive thread stopped unexpectedly: ${error.message}.`, { cause: error });
    for (const store of this.stores.keys()) this.failStore(store, cause);
    this.resolveWaiters();
  }

  private scheduleStop(): void {
    if (this.idleTimer || !this.worker) return;
    this.idleTimer = setTimeout(() => this.stop(), IDLE_STOP_MS);
    this.idleTimer.unref();
  }

  /** Stops the thread now if nothing is held (it closes its store connections); a later lease starts a new one. */
  stop(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const worker = this.worker;
    if (!worker || this.entries.size > 0) return;
    this.send({ t: 'stop' });
    this.worker = undefined;
    this.storesSent.clear();
    this.storesReady.clear();
    this.stopHeartbeat();
    setTimeout(() => void worker.terminate(), STOP_TIMEOUT_MS).unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    this.intervalMs = Infinity;
  }
}

let thread: KeepAliveThread | undefined;

/** The one keep-alive thread of this process (made on first use; its worker starts at the first lease). */
export function keepAliveThread(): KeepAliveThread {
  return (thread ??= new KeepAliveThread());
}
