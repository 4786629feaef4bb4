/**
 * Waiters in line (the hand-off queue, README "Redis data model"): a waiting `Singleton`
 * that watches a name with a turn gets a token of its own for the whole wait, listens on
 * that token's turn channel, and its acquires are queued on conflict. The release script
 * then hands the lease to the first waiter still listening and publishes it on its turn
 * channel; the {@link Turn} keeps that lease until the waiter's next acquire with the
 * token takes it, without a round trip.
 */
import type { AcquireResult, OwnerInfo } from '../Persister';
import type { LockKeys } from './keys';

/** One waiter in line, from its `watch` until that ends. */
export interface Turn {
  readonly keys: LockKeys;
  readonly token: string;
  /** The queue entry its queued acquires wrote (`token\nttlMs\nholder`): what leaving takes out. */
  entry: string | undefined;
  /** Who it acquires as (from its last queued acquire): the holder of a lease handed to it. */
  owner: OwnerInfo | undefined;
  /** A lease handed to it, not yet taken by an acquire with its token. */
  granted: AcquireResult | undefined;
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
    const turn: Turn = { keys, token, entry: undefined, owner: undefined, granted: undefined };
    this.byToken.set(token, turn);
    return turn;
  }

  /** Ends `turn`: acquires with its token are plain acquires again. */
  close(turn: Turn): void {
    if (this.byToken.get(turn.token) === turn) this.byToken.delete(turn.token);
  }

  /** Records a queued acquire of `turn` (ttl and holder as the script got them). */
  queued(turn: Turn, ttlMs: number, holder: string, owner: OwnerInfo): void {
    turn.entry = `${turn.token}\n${ttlMs}\n${holder}`;
    turn.owner = owner;
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
      acquired: true,
      handedOver: true,
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

  /** Takes the lease handed to `turn`, if any (once). */
  take(turn: Turn): AcquireResult | undefined {
    const granted = turn.granted;
    turn.granted = undefined;
    return granted;
  }

  /** Drops every turn (the persister closes). */
  clear(): void {
    this.byToken.clear();
  }
}
