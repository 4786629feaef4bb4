import { inspect } from 'node:util';
import type { Logger } from './logger';
import { isolated } from './safeEmit';

/** What the registry needs from a held `Singleton`. */
export interface HookEntry {
  readonly name: string;
  readonly signals: readonly NodeJS.Signals[];
  readonly handleErrors: boolean;
  readonly shutdownTimeoutMs: number;
  /** The instance's logger (made on first use). */
  logger(): Logger;
  /** Aborts the held lease's signal with reason `shutdown`: the work under it is told to stop. */
  stopWork(): void;
  /** Resolves once the work running under the held lease (run(), standby task, Coalescer run) has settled. */
  workSettled(): Promise<void>;
  /** Releases the held lease. */
  release(): Promise<void>;
}

type FatalKind = 'uncaughtException' | 'unhandledRejection';

/**
 * One process-wide registry for signals and fatal errors (DESIGN.md §4).
 *
 * Listeners exist only while at least one registered `Singleton` holds a lease
 * and asked for them, so a process that holds nothing behaves exactly as it
 * would without the library. On a signal: abort every held lease's signal
 * (reason `shutdown`), wait for the work under them to settle, release them all in
 * parallel (all bounded by the longest `shutdownTimeoutMs`), remove our listeners and
 * re-raise the signal, so the process dies the way it would have (exit status
 * 128+n) — unless the application listens for that signal itself, in which
 * case the exit stays the application's decision. A second signal during the
 * releases exits at once. On a fatal error: release, print, exit 1.
 */
class ProcessHooks {
  private readonly entries = new Set<HookEntry>();
  private readonly signalListeners = new Map<NodeJS.Signals, () => void>();
  private fatalListeners: { uncaught: (err: unknown) => void; rejection: (reason: unknown) => void } | undefined;
  private shutdown: Promise<void> | undefined;
  private beforeExitListener: (() => void) | undefined;
  /** How many registered entries want each signal, fatal-error handling, and release on exit. */
  private readonly signalUsers = new Map<NodeJS.Signals, number>();
  private errorUsers = 0;
  private exitUsers = 0;

  /** True once a signal or fatal error started the shutdown; no new lock may be taken then. */
  get shuttingDown(): boolean {
    return this.shutdown !== undefined;
  }

  /** Starts handling signals/errors for `entry` (while it holds a lease). O(1): counts, not a scan. */
  register(entry: HookEntry): void {
    // An entry that wants neither signals nor fatal errors needs nothing from the registry.
    if (entry.signals.length === 0 && !entry.handleErrors) return;
    if (this.entries.has(entry)) return;
    this.entries.add(entry);
    this.count(entry, +1);
    this.sync();
  }

  /** Stops handling `entry`; removes process listeners nobody needs any more. */
  unregister(entry: HookEntry): void {
    if (!this.entries.delete(entry)) return;
    this.count(entry, -1);
    if (!this.shutdown) this.sync();
  }

  /** The process listeners currently installed (for tests and diagnostics). */
  installed(): { signals: NodeJS.Signals[]; errors: boolean } {
    return { signals: [...this.signalListeners.keys()], errors: this.fatalListeners !== undefined };
  }

  private count(entry: HookEntry, delta: 1 | -1): void {
    for (const signal of entry.signals) {
      const n = (this.signalUsers.get(signal) ?? 0) + delta;
      if (n > 0) this.signalUsers.set(signal, n);
      else this.signalUsers.delete(signal);
    }
    if (entry.handleErrors) this.errorUsers += delta;
    if (entry.signals.length > 0 || entry.handleErrors) this.exitUsers += delta;
  }

  /** Installs exactly the listeners the registered entries want, and removes the rest. */
  private sync(): void {
    for (const [signal, listener] of this.signalListeners) {
      if (!this.signalUsers.has(signal)) {
        process.off(signal, listener);
        this.signalListeners.delete(signal);
      }
    }
    for (const signal of this.signalUsers.keys()) {
      if (this.signalListeners.has(signal)) continue;
      const listener = () => this.onSignal(signal);
      this.signalListeners.set(signal, listener);
      process.on(signal, listener);
    }
    // The event loop ran dry while a lease is held (renewal timers are unref'd):
    // release before the process ends instead of leaving the lease to expire.
    if (this.exitUsers > 0 && !this.beforeExitListener) {
      this.beforeExitListener = () => this.onBeforeExit();
      process.on('beforeExit', this.beforeExitListener);
    } else if (this.exitUsers === 0 && this.beforeExitListener) {
      process.off('beforeExit', this.beforeExitListener);
      this.beforeExitListener = undefined;
    }
    if (this.errorUsers > 0 && !this.fatalListeners) {
      this.fatalListeners = {
        uncaught: (err) => this.onFatal('uncaughtException', err),
        rejection: (reason) => this.onFatal('unhandledRejection', reason),
      };
      process.on('uncaughtException', this.fatalListeners.uncaught);
      process.on('unhandledRejection', this.fatalListeners.rejection);
    } else if (this.errorUsers === 0 && this.fatalListeners) {
      this.removeFatalListeners();
    }
  }

  private removeFatalListeners(): void {
    if (!this.fatalListeners) return;
    process.off('uncaughtException', this.fatalListeners.uncaught);
    process.off('unhandledRejection', this.fatalListeners.rejection);
    this.fatalListeners = undefined;
  }

  private removeAll(): void {
    for (const [signal, listener] of this.signalListeners) process.off(signal, listener);
    this.signalListeners.clear();
    if (this.beforeExitListener) process.off('beforeExit', this.beforeExitListener);
    this.beforeExitListener = undefined;
    this.removeFatalListeners();
  }

  /**
   * Hands every target's lock over safely: first tell the work under each lease to stop
   * (its signal aborts with reason `shutdown`), wait for that work to settle, then release
   * them all in parallel — all of it bounded by the longest `shutdownTimeoutMs`.
   */
  private releaseAll(targets: HookEntry[], why: string, level: 'info' | 'warn' = 'warn'): Promise<void> {
    const timeoutMs = Math.max(0, ...targets.map((e) => e.shutdownTimeoutMs));
    for (const entry of targets) entry.logger()[level]({ reason: why }, `releasing lock "${entry.name}" before exit (${why})`);
    for (const entry of targets) isolated(() => entry.stopWork());
    const handOver = Promise.allSettled(
      targets.map(async (e) => {
        await e.workSettled();
        await e.release();
      }),
    ).then(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const entry of targets) {
          entry.logger().error({ timeoutMs }, `lock "${entry.name}" not released within ${timeoutMs} ms; exiting anyway`);
        }
        resolve();
      }, timeoutMs);
    });
    return Promise.race([handOver, deadline]).finally(() => clearTimeout(timer));
  }

  private onBeforeExit(): void {
    const targets = [...this.entries].filter((e) => e.signals.length > 0 || e.handleErrors);
    // Releasing schedules I/O, so the loop runs again and 'beforeExit' fires once more when done.
    void this.releaseAll(targets, 'event loop empty', 'info');
  }

  private onSignal(signal: NodeJS.Signals): void {
    const ours = this.signalListeners.get(signal);
    const appListens = process.listeners(signal).some((l) => l !== ours);
    if (this.shutdown) {
      // Second signal while releasing: exit now, the way the signal would.
      this.removeAll();
      if (!appListens) process.kill(process.pid, signal);
      return;
    }
    const targets = [...this.entries].filter((e) => e.signals.includes(signal));
    this.shutdown = this.releaseAll(targets, signal).then(() => {
      this.removeAll();
      if (appListens) {
        // The application handles this signal itself: it decides whether to exit.
        this.shutdown = undefined;
        this.sync();
        return;
      }
      process.kill(process.pid, signal);
    });
  }

  private onFatal(kind: FatalKind, error: unknown): void {
    const listeners = process.listeners(kind as 'uncaughtException');
    const ours = (l: unknown) => l === this.fatalListeners?.uncaught || l === this.fatalListeners?.rejection;
    const appListens = listeners.some((l) => !ours(l));
    if (appListens) return; // the application handles its own errors; the process would not have crashed
    if (kind === 'unhandledRejection' && process.listeners('uncaughtException').some((l) => !ours(l))) {
      // Without us Node would raise this rejection as an uncaught exception, which the
      // application handles: do the same, and leave it to the application.
      process.nextTick(() => {
        throw error;
      });
      return;
    }
    if (this.shutdown) {
      printFatal(kind, error);
      process.exit(1);
    }
    const targets = [...this.entries].filter((e) => e.handleErrors);
    this.shutdown = this.releaseAll(targets, kind).then(() => {
      this.removeAll();
      printFatal(kind, error);
      process.exit(1);
    });
  }
}

function printFatal(kind: FatalKind, error: unknown): void {
  const prefix = kind === 'unhandledRejection' ? 'Unhandled promise rejection: ' : 'Uncaught exception: ';
  process.stderr.write(`${prefix}${inspect(error)}\n`);
}

/** The process-wide registry. */
export const processHooks = new ProcessHooks();
