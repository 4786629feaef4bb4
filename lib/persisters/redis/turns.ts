/**
 * Waiters in line (the hand-off queue, README "Redis data model"): a waiting `Singleton`
 * that watches a name with a turn gets a token of its own for the whole wait, listens on
 * that token's turn channel, and its acquires are queued on conflict. The release script
 * then hands the lease to the first waiter still listening and publishes it on its turn
 * channel; the {@link Turn} keeps that lease until the waiter's next acquire with the
 * token takes it, without a round trip.
 */
import type { AcquireResult, LockInfo, OwnerInfo } from '../Persister';
import { monotonicNow } from '../../time';
import type { LockKeys } from './keys';

/** A lease handed to a waiter, as its message described it. */
interface Grant {
  readonly lease: LockInfo;
  /** When the release wrote it, ms on the server's clock. */
  readonly acquiredAtMs: number;
}

/**
 * A moment both clocks agree on, from the waiter's last queued acquire answered with a
 * conflict: the server ran it at `serverMs` (its clock), after the waiter sent it at `sentAt`
 * (this process's monotonic clock).
 */
interface Anchor {
  readonly sentAt: number;
  readonly serverMs: number;
}

/**
 * How long a lease handed to a waiter lasts until the waiter renews it (its full ttl when that
 * is shorter), ms. A waiter that cannot take it up — its process stopped (`SIGSTOP`, a paused
 * VM) or its event loop stuck, though its connection is open — holds the lock up for this long,
 * not for a whole lease; a waiter that does, renews it at once. Long enough for a message, a
 * round trip and a garbage-collection pause.
 */
export const HAND_OFF_CLAIM_MS = 2_000;

/** One waiter in line, from its `watch` until that ends. */
export interface Turn {
  readonly keys: LockKeys;
  readonly token: string;
  /** The queue entry its queued acquires wrote (`token\nclaimMs\nholder`): what leaving takes out. */
  entry: string | undefined;
  /** Who it acquires as (from its last queued acquire): the holder of a lease handed to it. */
  owner: OwnerInfo | undefined;
  /** A lease handed to it, not yet taken by an acquire with its token. */
  granted: Grant | undefined;
  /** Its last conflict, to bound how long ago a lease handed to it started. */
  anchor: Anchor | undefined;
}

/** The turns of one persister, by token. */
export class Turns {
  private readonly byToken = new Map<string, Turn>();

  /** How many waiters are in line (0: acquires skip the lookup). */
  get size(): number {
    return this.byToken.size;
  }

  /** The turn of `token`, if it waits. */
  find(token: string): Turn | undefined {
    return this.byToken.get(token);
  }

  /** Starts the turn of `token` on `keys`. */
  open(keys: LockKeys, token: string): Turn {
    const turn: Turn = { keys, token, entry: undefined, owner: undefined, granted: undefined, anchor: undefined };
    this.byToken.set(token, turn);
    return turn;
  }

  /** Ends `turn`: acquires with its token are plain acquires again. */
  close(turn: Turn): void {
    if (this.byToken.get(turn.token) === turn) this.byToken.delete(turn.token);
  }

  /**
   * Records a queued acquire of `turn` (holder as the script got it); returns the claim its
   * queue entry carries: how long a lease handed to it lasts before its first renewal.
   */
  queued(turn: Turn, ttlMs: number, holder: string, owner: OwnerInfo): number {
    const claimMs = Math.min(ttlMs, HAND_OFF_CLAIM_MS);
    turn.entry = `${turn.token}\n${claimMs}\n${holder}`;
    turn.owner = owner;
    return claimMs;
  }

  /**
   * A message on `turn`'s channel: `fence\nacquiredAtMs\nexpiresAtMs`, the lease handed to it;
   * anything else (the empty wake-up after a reconnect) hands nothing. Returns whether it did.
   */
  receive(turn: Turn, message: string): boolean {
    const owner = turn.owner;
    const parts = message.split('\n');
    if (!owner || parts.length !== 3) return false;
    const [fence, acquiredAt, expiresAt] = parts.map(Number);
    if (!Number.isSafeInteger(fence) || !Number.isFinite(acquiredAt) || !Number.isFinite(expiresAt)) return false;
    turn.granted = {
      acquiredAtMs: acquiredAt,
      lease: {
        name: turn.keys.name,
        owner: owner.owner,
        hostname: owner.hostname,
        pid: owner.pid,
        fencingToken: fence,
        acquiredAt: new Date(acquiredAt),
        expiresAt: new Date(expiresAt),
      },
    };
    return true;
  }

  /**
   * A queued acquire of `turn`, sent at `sentAt` (monotonic), found the lock held by `holder`
   * when the server ran it at `serverMs`. It anchors the turn's clock, and shows a lease
   * handed to the turn earlier to be stale when the holder's fence is above it (the waiter's
   * own lease would have answered its acquire: it ran out or was taken while the message waited).
   */
  conflicted(turn: Turn, sentAt: number, serverMs: number, holder: LockInfo): void {
    if (Number.isFinite(serverMs)) turn.anchor = { sentAt, serverMs };
    const granted = turn.granted;
    // Redis fences are safe integers; a holder whose record is unreadable (fence 0 or NaN) proves nothing.
    if (granted && Number(holder.fencingToken) > Number(granted.lease.fencingToken)) turn.granted = undefined;
  }

  /**
   * Takes the lease handed to `turn`, if any (once), with `leaseAgeMs`: how long ago, at most,
   * it started — from the turn's anchor, as the store's clock counts (the release wrote it at
   * `acquiredAtMs`, which is `acquiredAtMs − anchor.serverMs` after a moment this process saw
   * at `anchor.sentAt` at the latest). Without an anchor (its only queued acquire failed
   * in transit), the age is unknown and left out.
   */
  take(turn: Turn): AcquireResult | undefined {
    const granted = turn.granted;
    if (!granted) return undefined;
    turn.granted = undefined;
    const { anchor } = turn;
    // Both server times are whole ms (floored): their difference may exceed the time between by up to 1 ms.
    const leaseAgeMs = anchor ? Math.max(0, monotonicNow() - (anchor.sentAt + (granted.acquiredAtMs - anchor.serverMs) - 1)) : undefined;
    return { acquired: true, handedOver: true, lease: granted.lease, leaseAgeMs };
  }

  /** Drops every turn (the persister closes). */
  clear(): void {
    this.byToken.clear();
  }
}
