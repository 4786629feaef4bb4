/**
 * A sleep that can be cut short: by a notification (`notify`), an abort signal
 * or its own timer. A notification that arrives while nobody sleeps is kept,
 * so the next `sleep` returns at once — no wake-up is ever lost between an
 * attempt and the next sleep.
 */
export class Waker {
  private pending = false;
  private wakeSleeper: (() => void) | undefined;
  private rejectSleeper: ((reason: unknown) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** Wakes the sleeper now, or the next one if nobody sleeps. */
  notify(): void {
    if (this.wakeSleeper) this.finish();
    else this.pending = true;
  }

  /** Forgets a notification that arrived before an attempt that is about to start anyway. */
  clearPending(): void {
    this.pending = false;
  }

  /** Sleeps up to `ms`; resolves early on `notify()`; rejects with the signal's reason on abort. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        this.wakeSleeper = undefined;
        this.rejectSleeper = undefined;
        reject(signal?.reason);
      };
      this.rejectSleeper = reject;
      this.wakeSleeper = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.timer = setTimeout(() => this.finish(), Math.max(0, ms));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Ends the current sleep, if any, with a rejection (`reason`): for a caller that listens
   * for its abort once per wait rather than once per sleep.
   */
  fail(reason: unknown): void {
    const reject = this.rejectSleeper;
    if (!reject) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.wakeSleeper = undefined;
    this.rejectSleeper = undefined;
    reject(reason);
  }

  /** Ends any sleep and clears the timer. */
  dispose(): void {
    this.finish();
  }

  private finish(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const wake = this.wakeSleeper;
    this.wakeSleeper = undefined;
    this.rejectSleeper = undefined;
    wake?.();
  }
}
