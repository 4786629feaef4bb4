/**
 * Operation timeouts without a timer per operation. Every operation of one persister has
 * the same timeout, so deadlines come in the order operations start: a FIFO list, and one
 * unref'd timer armed for the oldest deadline. Starting and finishing an operation links
 * and unlinks a node; Node's own timers would create a timer (and, with one operation in
 * flight at a time, a timer list) for each, which costs about a microsecond per call —
 * a visible share of a lock + release on a fast store.
 */
import { LinkedList, type ListNode } from '../LinkedList';
import { monotonicNow } from '../time';

/** One operation's place in the list. */
export interface Deadline extends ListNode<Deadline> {
  /** Monotonic ms at which the operation times out. */
  at: number;
  /** Called once if the deadline passes before {@link Deadlines.clear}. */
  onTimeout: () => void;
}

/** The deadlines of one persister's operations, all `timeoutMs` long. */
export class Deadlines {
  private readonly list = new LinkedList<Deadline>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly timeoutMs: number) {}

  /** Starts timing an operation; `onTimeout` runs if it is not cleared within `timeoutMs`. */
  start(onTimeout: () => void): Deadline {
    const deadline: Deadline = { at: monotonicNow() + this.timeoutMs, onTimeout, prev: undefined, next: undefined, linked: false };
    this.list.push(deadline);
    if (!this.timer) this.arm(deadline.at);
    return deadline;
  }

  /** The operation finished: its deadline no longer applies. The timer stays until it fires (then it goes if nothing is pending). */
  clear(deadline: Deadline): void {
    this.list.unlink(deadline);
  }

  /** Operations pending. */
  get pending(): number {
    return this.list.size;
  }

  /** Whether its timer is set, and whether that timer would keep the process alive (never). @internal */
  get timerState(): { armed: boolean; keepsProcessAlive: boolean } {
    return { armed: this.timer !== undefined, keepsProcessAlive: this.timer?.hasRef() ?? false };
  }

  private arm(at: number): void {
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - monotonicNow()));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    const now = monotonicNow();
    // Operations started later time out later: stop at the first one still running.
    while (this.list.head && this.list.head.at <= now) {
      const due = this.list.head;
      this.clear(due);
      try {
        due.onTimeout();
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    if (this.list.head) this.arm(this.list.head.at);
  }
}
