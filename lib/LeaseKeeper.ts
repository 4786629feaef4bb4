import { toPersisterError, type LostReason } from './errors';
import type { LockInfo, Persister, RenewRequest, RenewResult } from './persisters/Persister';
import { LinkedList, type ListNode } from './LinkedList';
import { isolated, rethrowLater } from './safeEmit';
import { backoffMs, leaseDeadline, monotonicNow, safetyMarginMs } from './time';

/** What a `Singleton` hands the keeper for one held lease, and how the keeper reports back. */
export interface KeptLease {
  readonly name: string;
  readonly token: string;
  readonly ttlMs: number;
  readonly renewIntervalMs: number;
  /** Monotonic time the last successful acquire/renew was sent. */
  sentAt: number;
  /** Round trip of the last successful acquire/renew, ms. */
  roundTripMs: number;
  /**
   * The store's expiry of the lease as acquired. Used by stores whose expiry is on this
   * process's clock (`capabilities.serverClock` false): the local deadline is then never
   * later than that expiry minus the margin.
   */
  expiresAt?: Date;
  /** Called after each successful renewal. Anything it throws is re-thrown in a tick of its own. */
  onRenewed(expiresAt: Date): void;
  /** Called once, when the lease is lost; the keeper has dropped it already. Isolated like `onRenewed`. */
  onLost(reason: LostReason, holder?: LockInfo): void;
  /** Called for each failed renewal that is retried. Isolated like `onRenewed`. */
  onError(error: Error): void;
  /** The keeper's bookkeeping for this lease while it is kept (set by the keeper; opaque to others). */
  keeperEntry?: unknown;
}

/** One kept lease: a node of the keeper's list (a list, not a Map: adding and removing a lease allocates nothing else). */
interface Entry extends ListNode<Entry> {
  readonly keeper: LeaseKeeper;
  lease: KeptLease;
  nextDue: number;
  deadline: number;
  inFlight: boolean;
  failures: number;
}

/**
 * Renews every lease held through one persister, in batches.
 *
 * One timer per persister (not per lease), armed for the earliest renewal or
 * loss deadline. When it fires, every lease due within a quarter of its renew
 * interval is renewed in the same batch (one `renewMany` round trip where the
 * persister offers it), so 10 000 held singletons cost a handful of round
 * trips per interval. A lease whose renewals keep failing is declared lost at
 * its local monotonic deadline — last successful send + ttl − safety margin —
 * before the store can hand it to anyone else.
 *
 * Each lease settles on its own: one slow or failing renewal never delays or fails
 * another's, and a callback that throws never stops the timer (its error is re-thrown in
 * a tick of its own). When the persister reports that its connection came back after a
 * drop (`onReconnect`), every lease is renewed at once: a restarted store that forgot a
 * lease makes it `lost` within a round trip, not at the next renewal.
 */
export class LeaseKeeper {
  /** The kept leases, oldest first. */
  private readonly entries = new LinkedList<Entry>();
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;
  private stopWatchingReconnects: (() => void) | undefined;

  constructor(private readonly persister: Persister) {}

  /** Number of leases kept. */
  get size(): number {
    return this.entries.size;
  }

  /** Starts renewing `lease`. */
  add(lease: KeptLease): void {
    if (this.entryOf(lease)) return;
    const entry: Entry = { keeper: this, lease, nextDue: 0, deadline: 0, inFlight: false, failures: 0, prev: undefined, next: undefined, linked: false };
    this.schedule(entry, lease.sentAt, lease.roundTripMs, lease.expiresAt);
    this.entries.push(entry);
    lease.keeperEntry = entry;
    if (this.entries.size === 1) this.watchReconnects();
    this.arm(Math.min(entry.nextDue, entry.deadline));
  }

  /**
   * Stops renewing `lease`; an answer still in flight for it is ignored. The timer and the
   * reconnect subscription are left to the next tick, which drops them if nothing is held
   * then: a program that locks and releases in a loop does not pay for a new timer and a
   * new subscription on every lock, and nothing is left behind longer than one renew interval.
   */
  remove(lease: KeptLease): void {
    const entry = this.entryOf(lease);
    if (entry) this.unlink(entry);
  }

  /** `lease`'s entry in this keeper, if it is kept here. */
  private entryOf(lease: KeptLease): Entry | undefined {
    const entry = lease.keeperEntry as Entry | undefined;
    return entry !== undefined && entry.keeper === this ? entry : undefined;
  }

  private unlink(entry: Entry): void {
    if (entry.lease.keeperEntry !== entry) return;
    entry.lease.keeperEntry = undefined;
    this.entries.unlink(entry);
  }

  /** Renews every lease now (a reconnect: the store may have forgotten them). */
  checkNow(): void {
    const now = monotonicNow();
    for (let entry = this.entries.head; entry; entry = entry.next) if (!entry.inFlight) entry.nextDue = now;
    if (this.entries.size > 0) {
      this.disarm();
      this.tick();
    }
  }

  private watchReconnects(): void {
    if (this.stopWatchingReconnects || !this.persister.onReconnect) return;
    try {
      this.stopWatchingReconnects = this.persister.onReconnect(() => this.checkNow());
    } catch {
      this.stopWatchingReconnects = undefined;
    }
  }

  private schedule(entry: Entry, sentAt: number, roundTripMs: number, expiresAt?: Date): void {
    const { ttlMs, renewIntervalMs } = entry.lease;
    entry.deadline = leaseDeadline(sentAt, ttlMs, roundTripMs);
    if (expiresAt && this.persister.capabilities?.serverClock === false) {
      // The store's expiry is on our own clock: it may come sooner than ttl (a seed-style store's
      // staleness), and the holder must be told before it.
      entry.deadline = Math.min(entry.deadline, monotonicNow() + (expiresAt.getTime() - Date.now()) - safetyMarginMs(ttlMs, roundTripMs));
    }
    // Due after renewIntervalMs, but never later than halfway to the deadline: an interval close
    // to ttlMs must still leave time for the renewal to answer, and for a failed one to be retried.
    entry.nextDue = Math.min(sentAt + renewIntervalMs, sentAt + (entry.deadline - sentAt) / 2);
  }

  private arm(at: number): void {
    if (at >= this.armedFor) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(() => this.tick(), Math.max(0, at - monotonicNow()));
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
    if (this.entries.size === 0 && this.stopWatchingReconnects) {
      const stop = this.stopWatchingReconnects;
      this.stopWatchingReconnects = undefined;
      isolated(stop);
    }
  }

  private tick(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    if (this.entries.size === 0) {
      this.disarm();
      return;
    }
    const now = monotonicNow();
    const batch: Entry[] = [];
    const lost: KeptLease[] = [];
    let next = Infinity;
    // Walk the list without calling anyone back: a callback may add or remove leases.
    for (let entry = this.entries.head, following: Entry | undefined; entry; entry = following) {
      following = entry.next;
      if (entry.deadline <= now) {
        this.unlink(entry);
        lost.push(entry.lease);
        continue;
      }
      if (!entry.inFlight && entry.nextDue <= now + entry.lease.renewIntervalMs / 4) batch.push(entry);
      else next = Math.min(next, entry.inFlight ? entry.deadline : Math.min(entry.nextDue, entry.deadline));
    }
    if (this.entries.size === 0) this.disarm();
    if (batch.length > 0) this.send(batch);
    for (let i = 0; i < batch.length; i++) next = Math.min(next, batch[i].deadline);
    if (next < Infinity) this.arm(next);
    for (const lease of lost) isolated(() => lease.onLost('store-unreachable'));
  }

  private send(batch: Entry[]): void {
    const sentAt = monotonicNow();
    // Index loops: this runs once per renew interval, too seldom to be optimised, and a for…of
    // there would allocate an iterator result per lease.
    for (let i = 0; i < batch.length; i++) batch[i].inFlight = true;
    // A kept lease is its own renew request (name, token, ttlMs): nothing to build per renewal.
    const request = ({ lease }: Entry): RenewRequest => lease;
    if (batch.length > 1 && this.persister.renewMany) {
      // One round trip for the whole batch: every answer arrives together anyway.
      const requests: RenewRequest[] = new Array(batch.length);
      for (let i = 0; i < batch.length; i++) requests[i] = batch[i].lease;
      void this.persister.renewMany(requests).then(
        (results) => {
          const now = monotonicNow();
          for (let i = 0; i < batch.length; i++) this.settle(batch[i], results[i] ?? new Error('no answer for this lease'), sentAt, now);
        },
        (err: unknown) => batch.forEach((entry) => this.settle(entry, toError(err), sentAt)),
      );
      return;
    }
    // Separate calls settle separately: a slow one never holds back (or fails) the others.
    for (const entry of batch) {
      let answer: Promise<RenewResult>;
      try {
        answer = this.persister.renew(request(entry));
      } catch (err) {
        answer = Promise.reject(err);
      }
      void answer.then(
        (result) => this.settle(entry, result, sentAt),
        (err: unknown) => this.settle(entry, toError(err), sentAt),
      );
    }
  }

  private settle(entry: Entry, result: RenewResult | Error, sentAt: number, answeredAt = monotonicNow()): void {
    const roundTripMs = answeredAt - sentAt;
    entry.inFlight = false;
    const { lease } = entry;
    if (lease.keeperEntry !== entry) return; // released or lost meanwhile
    if (result instanceof Error) {
      entry.failures += 1;
      // Retry with backoff, but always at least once more before the deadline.
      const now = monotonicNow();
      const backoff = backoffMs(entry.failures - 1, 50, lease.renewIntervalMs);
      entry.nextDue = Math.min(now + backoff, now + Math.max(0, (entry.deadline - now) / 2));
      this.arm(Math.min(entry.nextDue, entry.deadline));
      isolated(() => lease.onError(toPersisterError(`Renewing lock "${lease.name}"`, result)));
      return;
    }
    if (!result.renewed) {
      this.unlink(entry);
      if (this.entries.size === 0) this.disarm();
      isolated(() => lease.onLost(result.holder ? 'taken-over' : 'expired', result.holder ?? undefined));
      return;
    }
    entry.failures = 0;
    lease.sentAt = sentAt;
    lease.roundTripMs = roundTripMs;
    this.schedule(entry, sentAt, roundTripMs, result.expiresAt);
    this.arm(entry.nextDue);
    // The hot path (every renewal of every lease): no closure, a plain try.
    try {
      lease.onRenewed(result.expiresAt);
    } catch (err) {
      rethrowLater(err);
    }
  }
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

const keepers = new WeakMap<Persister, LeaseKeeper>();

/** The one keeper of a persister, shared by every `Singleton` on it. */
export function keeperFor(persister: Persister): LeaseKeeper {
  let keeper = keepers.get(persister);
  if (!keeper) {
    keeper = new LeaseKeeper(persister);
    keepers.set(persister, keeper);
  }
  return keeper;
}
