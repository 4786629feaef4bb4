/**
 * The keep-alive thread (`keepAlive: 'thread'`, DESIGN.md §9): one per process, started
 * by lib/keepAlive/KeepAliveThread.ts. It opens its own connection to each store from
 * the store's {@link ThreadDescriptor}, and renews every lease the main thread hands
 * it with the same lease keeper as loop mode (batched, local deadlines), with two
 * differences:
 *
 * - it renews only while the main thread's heartbeat (shared memory) is younger than
 *   `maxBlockMs`, so an event loop stuck for good lets its leases run out;
 * - a loss it detects is reported to the main thread, and when the lease's policy is
 *   "exit" and the main thread does not take the report in time (it is blocked), the
 *   thread ends the process before the lease can be held elsewhere (see seppuku.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { LostReason } from '../errors';
import { keeperFor, type KeptLease } from '../LeaseKeeper';
import type { LockInfo, Persister, RenewRequest, RenewResult } from '../persisters/Persister';
import type { ThreadDescriptor } from './descriptor';
import { openDescriptor, type OpenedPersister } from './openDescriptor';
import {
  clockMs,
  type FromWorker,
  type KeepAliveWorkerData,
  type LeaseOwnerLog,
  POLICY_EXIT,
  SLOT_FIELDS,
  SLOT_ID,
  SLOT_POLICY,
  type ToWorker,
} from './protocol';
import { seppuku, seppukuLine } from './seppuku';

/** How long the main thread has to take a refused renewal (taken over, expired) before the thread ends the process. */
export const LOST_ACK_GRACE_MS = 500;
/** Name read once to prove the thread's own connection works before it takes leases over (never held). */
const PROBE_NAME = 'singleton-process keep-alive probe';
/** Attempts of that read before the thread gives the store back to the event loop. */
const PROBE_ATTEMPTS = 4;

/** Opens the store and reads once (retrying a little), so the leases move over only once the thread can renew them. */
async function openAndProbe(descriptor: ThreadDescriptor): Promise<OpenedPersister> {
  const persister = await openDescriptor(descriptor);
  for (let attempt = 1; ; attempt++) {
    try {
      await persister.inspect(PROBE_NAME);
      return persister;
    } catch (error) {
      if (attempt >= PROBE_ATTEMPTS) {
        await persister.close().catch(() => undefined);
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
    }
  }
}

/** Longest wait for the thread's store connections to close when it stops. */
const CLOSE_TIMEOUT_MS = 1_000;

/** A renewal the thread did not send because the main thread's loop has been blocked longer than `maxBlockMs`. */
class LoopBlockedError extends Error {
  constructor(ageMs: number, maxBlockMs: number) {
    super(`not renewed: the event loop has been blocked for ${Math.round(ageMs)} ms (maxBlockMs ${maxBlockMs})`);
    this.name = 'LoopBlockedError';
  }
}

interface Store {
  opened: Promise<OpenedPersister>;
  /** One gated persister (hence one keeper) per `maxBlockMs` in use. */
  keepers: Map<number, ReturnType<typeof keeperFor>>;
}

interface WorkerLease {
  id: number;
  page: number;
  slot: number;
  maxBlockMs: number;
  log: LeaseOwnerLog;
  kept: KeptLease;
  keeper: ReturnType<typeof keeperFor>;
  killTimer?: NodeJS.Timeout;
}

const port = parentPort;
const data = workerData as KeepAliveWorkerData | undefined;

if (port && data) {
  const heartbeat = new BigInt64Array(data.heartbeat);
  const stores = new Map<number, Store>();
  const pages: Int32Array[] = [];
  const leases = new Map<number, WorkerLease>();
  const post = (message: FromWorker) => port.postMessage(message);

  /** How long ago the main thread last stamped the heartbeat. */
  const loopAgeMs = () => clockMs() - Number(Atomics.load(heartbeat, 0));

  const field = (lease: WorkerLease, offset: number) => Atomics.load(pages[lease.page], lease.slot * SLOT_FIELDS + offset);
  /** The main thread still holds this lease (it clears the slot on release and when it takes a loss). */
  const stillHeld = (lease: WorkerLease) => field(lease, SLOT_ID) === lease.id;

  /** The store's persister, but renewals are refused while the loop has been blocked longer than `maxBlockMs`. */
  const gate = (opened: Promise<OpenedPersister>, maxBlockMs: number): Persister => {
    const check = () => {
      const age = loopAgeMs();
      if (age > maxBlockMs) throw new LoopBlockedError(age, maxBlockMs);
    };
    return {
      capabilities: Object.freeze({ serverClock: true, notify: false, fencing: true, persistent: true }),
      acquire: async (r) => (await opened).acquire(r),
      renew: async (r) => {
        check();
        return (await opened).renew(r);
      },
      renewMany: async (requests: readonly RenewRequest[]): Promise<Array<RenewResult | Error>> => {
        check();
        const p = await opened;
        if (p.renewMany) return p.renewMany(requests);
        return Promise.all(requests.map((r) => p.renew(r).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))))));
      },
      release: async (r) => (await opened).release(r),
      inspect: async (name) => (await opened).inspect(name),
      onReconnect: (listener) => {
        let off: (() => void) | undefined;
        let stopped = false;
        opened.then(
          (p) => {
            if (!stopped && p.onReconnect) off = p.onReconnect(listener);
          },
          () => undefined,
        );
        return () => {
          stopped = true;
          off?.();
        };
      },
    };
  };

  const onLost = (lease: WorkerLease, detected: LostReason, holder?: LockInfo) => {
    leases.delete(lease.id);
    if (!stillHeld(lease)) return; // the main thread gave it up meanwhile
    const atDeadline = detected === 'store-unreachable';
    // Renewals withheld because the loop was blocked: the lease was let go, it ran out.
    const reason: LostReason = atDeadline && loopAgeMs() > lease.maxBlockMs ? 'expired' : detected;
    post({ t: 'lost', id: lease.id, reason, holder });
    if (field(lease, SLOT_POLICY) !== POLICY_EXIT) return;
    const { ttlMs, sentAt } = lease.kept;
    // A refused renewal: the lease may be someone else's already; a passed deadline: the store
    // frees it at sentAt + ttl (less clock drift), and the process must be gone before that.
    const windowMs = atDeadline ? sentAt + ttlMs - Math.ceil(ttlMs * 0.02) - performance.now() : LOST_ACK_GRACE_MS;
    const endIfUntaken = () => {
      if (stillHeld(lease)) seppuku(seppukuLine(lease.kept.name, lease.log, reason, holder, loopAgeMs()));
    };
    if (windowMs <= 0) endIfUntaken();
    else lease.killTimer = setTimeout(endIfUntaken, windowMs);
  };

  const add = (m: Extract<ToWorker, { t: 'add' }>) => {
    const store = stores.get(m.store);
    if (!store) throw new Error(`keep-alive thread: lease "${m.name}" names unknown store ${m.store}`);
    let keeper = store.keepers.get(m.maxBlockMs);
    if (!keeper) {
      keeper = keeperFor(gate(store.opened, m.maxBlockMs));
      store.keepers.set(m.maxBlockMs, keeper);
    }
    const lease: WorkerLease = {
      id: m.id,
      page: m.page,
      slot: m.slot,
      maxBlockMs: m.maxBlockMs,
      log: m.log,
      keeper,
      kept: undefined as unknown as KeptLease,
    };
    lease.kept = {
      name: m.name,
      token: m.token,
      ttlMs: m.ttlMs,
      renewIntervalMs: m.renewIntervalMs,
      sentAt: performance.now() - (clockMs() - m.sentAt),
      roundTripMs: m.roundTripMs,
      onRenewed: (expiresAt) =>
        post({
          t: 'renewed',
          id: m.id,
          expiresAt: expiresAt.getTime(),
          sentAt: clockMs() - (performance.now() - lease.kept.sentAt),
          roundTripMs: lease.kept.roundTripMs,
        }),
      onLost: (reason, holder) => onLost(lease, reason, holder),
      onError: (error) => {
        if (error instanceof LoopBlockedError || error.cause instanceof LoopBlockedError) return;
        post({ t: 'error', id: m.id, name: error.name, message: error.message });
      },
    };
    leases.set(m.id, lease);
    keeper.add(lease.kept);
  };

  const remove = (id: number) => {
    const lease = leases.get(id);
    if (!lease) return;
    leases.delete(id);
    if (lease.killTimer) clearTimeout(lease.killTimer);
    lease.keeper.remove(lease.kept);
  };

  const stop = async () => {
    for (const id of [...leases.keys()]) remove(id);
    const closing = [...stores.values()].map(({ opened }) => opened.then((p) => p.close()).catch(() => undefined));
    await Promise.race([Promise.all(closing), new Promise((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS))]);
    process.exit(0); // in a worker: ends this thread only
  };

  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'store': {
        const opened = openAndProbe(m.descriptor);
        opened.then(
          () => post({ t: 'store-ready', store: m.store }),
          (error: unknown) => post({ t: 'fatal', store: m.store, message: error instanceof Error ? error.message : String(error) }),
        );
        stores.set(m.store, { opened, keepers: new Map() });
        return;
      }
      case 'page':
        pages[m.page] = new Int32Array(m.buffer);
        return;
      case 'add':
        return add(m);
      case 'remove':
        return remove(m.id);
      case 'stop':
        void stop();
        return;
    }
  });
}
