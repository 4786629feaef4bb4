/**
 * What the main thread and the keep-alive thread tell each other, and the shared
 * memory they both read: the heartbeat and one slot per kept lease.
 *
 * Shared memory, because the thread must learn two things even while the main
 * thread's event loop is blocked and cannot answer a message: how long ago the main
 * thread was last alive (the heartbeat), and whether a lease is still held by it and
 * with which `onLost` policy (its slot). The main thread writes slots synchronously
 * in `add`, `remove` and on taking a loss, so the thread never acts on a lease the main
 * thread already gave up.
 */
import type { LostReason } from '../errors';
import type { LockInfo } from '../persisters/Persister';
import type { ThreadDescriptor } from './descriptor';

/**
 * Milliseconds on the process-wide monotonic clock (`process.hrtime`), the same in
 * every thread (each thread's `performance.now()` has its own origin).
 */
export function clockMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Lease slots per shared page. */
export const SLOTS_PER_PAGE = 1024;
/** Int32 fields per slot: the lease id (0: free or given up), the policy (1: exit on loss). */
export const SLOT_FIELDS = 2;
/** Offset of the lease id in a slot. */
export const SLOT_ID = 0;
/** Offset of the policy in a slot: {@link POLICY_EXIT} or {@link POLICY_EMIT}. */
export const SLOT_POLICY = 1;
/** The main thread exits on loss: the thread ends the process if the main thread cannot. */
export const POLICY_EXIT = 1;
/** The main thread only emits `lost`: the thread never ends the process. */
export const POLICY_EMIT = 0;

/** A new shared page of lease slots. */
export function newSlotPage(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(SLOTS_PER_PAGE * SLOT_FIELDS * Int32Array.BYTES_PER_ELEMENT));
}

/** What the thread is started with. */
export interface KeepAliveWorkerData {
  /** One BigInt64: the main thread's last heartbeat, integer {@link clockMs}. */
  heartbeat: SharedArrayBuffer;
}

/** Who holds a lease, for the one log line the thread writes if it must end the process. */
export interface LeaseOwnerLog {
  owner: string;
  hostname: string;
}

/** Main thread → keep-alive thread. */
export type ToWorker =
  | { t: 'store'; store: number; descriptor: ThreadDescriptor }
  | { t: 'page'; page: number; buffer: SharedArrayBuffer }
  | {
      t: 'add';
      id: number;
      store: number;
      page: number;
      slot: number;
      name: string;
      token: string;
      ttlMs: number;
      renewIntervalMs: number;
      /** {@link clockMs} when the last successful acquire/renew was sent. */
      sentAt: number;
      roundTripMs: number;
      /** Renew only while the heartbeat is younger than this. */
      maxBlockMs: number;
      log: LeaseOwnerLog;
    }
  | { t: 'remove'; id: number }
  | { t: 'stop' };

/** Keep-alive thread → main thread. */
export type FromWorker =
  | { t: 'store-ready'; store: number }
  | { t: 'renewed'; id: number; expiresAt: number; sentAt: number; roundTripMs: number }
  | { t: 'lost'; id: number; reason: LostReason; holder?: LockInfo }
  | { t: 'error'; id: number; name: string; message: string }
  | { t: 'fatal'; store: number; message: string };
