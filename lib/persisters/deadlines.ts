/**
 * Operation timeouts without a timer per operation. Every operation of one persister has
 * the same timeout, so deadlines come in the order operations start: a FIFO list, and one
 * unref'd timer armed for the oldest deadline. Starting and finishing an operation links
 * and unlinks a node; Node's own timers would create a timer (and, with one operation in
 * flight at a time, a timer list) for each, which costs about a microsecond per call —
 * a visible share of a lock + release on a fast store.
 */
import { monotonicNow } from '../time';

/** One operation's place in the list. */
export interface Deadline {
  /** Monotonic ms at which the operation times out. */
  at: number;
  /** Called once if the deadline passes before {@link Deadlines.clear}. */
  onTimeout: () => void;
  prev: Deadline | undefined;
  next: Deadline | undefined;
  /** Whether it is in the list. */
  linked: boolean;
}

/** The deadlines of one persister's operations, all `timeoutMs` long. */
export class Deadlines {
  private head: Deadline | undefined;
  private tail: Deadline | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly timeoutMs: number) {}

  /** Starts timing an operation; `onTimeout` runs if it is not cleared within `timeoutMs`. */
  start(onTimeout: () => void): Deadline {
    const deadline: Deadline = { at: monotonicNow() + this.timeoutMs, onTimeout, prev: this.tail, next: undefined, linked: true };
    if (this.tail) this.tail.next = deadline;
    else this.head = deadline;
    this.tail = deadline;
    if (!this.timer) this.arm(deadline.at);
    return deadline;
  }

  /** The operation finished: its deadline no longer applies. The timer stays until it fires (then it goes if nothing is pending). */
  clear(deadline: Deadline): void {
    if (!deadline.linked) return;
    deadline.linked = false;
    if (deadline.prev) deadline.prev.next = deadline.next;
    else this.head = deadline.next;
    if (deadline.next) deadline.next.prev = deadline.prev;
    else this.tail = deadline.prev;
    deadline.prev = undefined;
    deadline.next = undefined;
  }

  /** Operations pending (for tests). */
  get pending(): number {
    let n = 0;
    for (let d = this.head; d; d = d.next) n += 1;
    return n;
  }

  private arm(at: number): void {
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - monotonicNow()));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    const now = monotonicNow();
    // Operations started later time out later: stop at the first one still running.
    while (this.head && this.head.at <= now) {
      const due = this.head;
      this.clear(due);
      try {
        due.onTimeout();
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    if (this.head) this.arm(this.head.at);
  }
}
