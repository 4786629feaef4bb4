/**
 * Real child processes for the process-level tests: spawn a fixture script
 * (TypeScript, run by Node through `--import tsx`), collect the JSON lines it
 * prints, wait for a given event or for its exit within a bounded time, and
 * kill whatever is still running when the test ends.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import type { HolderConfig } from '../fixtures/holder';

/** The repository root (where node_modules/tsx lives). */
export const REPO_ROOT = resolve(__dirname, '..', '..');
/** The lock-holder fixture. */
export const HOLDER_FIXTURE = join(REPO_ROOT, 'spec', 'fixtures', 'holder.ts');

/** One line a fixture printed: `event`, `t` (its `Date.now()`), `pid`, and the event's fields. */
export interface ChildEvent {
  event: string;
  t: number;
  pid: number;
  [field: string]: unknown;
}

/** How a child ended, and when the test saw it (`Date.now()`). */
export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/** The process-level listeners whose counts the tests compare with a baseline. */
export const WATCHED_LISTENERS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'uncaughtException', 'unhandledRejection'] as const;
/** Listener counts by {@link WATCHED_LISTENERS} name. */
export type ListenerCounts = Record<(typeof WATCHED_LISTENERS)[number], number>;

/** How many listeners this process has for each of {@link WATCHED_LISTENERS}. */
export function listenerCounts(): ListenerCounts {
  const counts = {} as ListenerCounts;
  for (const name of WATCHED_LISTENERS) counts[name] = process.listenerCount(name);
  return counts;
}

interface Waiter {
  match: (e: ChildEvent) => boolean;
  resolve: (e: ChildEvent) => void;
  reject: (err: Error) => void;
}

/** How to start a fixture. */
export interface SpawnOptions {
  /**
   * Run the fixture under `bash -c`, which prints `{"event":"shell-status","status":$?}`
   * once it ends: the exit status as a shell sees it (143 after SIGTERM). Signal the
   * fixture itself then (the `pid` of its events), not the shell.
   */
  viaShell?: boolean;
}

/** `bash -c` script: run the command given as arguments, then report its status as a JSON line. */
const SHELL_WRAPPER = '"$0" "$@"; echo "{\\"event\\":\\"shell-status\\",\\"t\\":0,\\"pid\\":$$,\\"status\\":$?}"';

const live = new Set<FixtureChild>();

/** A running fixture and everything it printed so far. */
export class FixtureChild {
  readonly process: ChildProcess;
  /** Every JSON line printed on stdout, in order. */
  readonly events: ChildEvent[] = [];
  /** Everything printed on stderr. */
  stderr = '';
  /** Lines on stdout that were not JSON (kept for diagnostics). */
  readonly noise: string[] = [];
  /** Set once the child has exited. */
  exitInfo: ChildExit | undefined;

  private readonly exitPromise: Promise<ChildExit>;
  private readonly waiters = new Set<Waiter>();
  private pendingStdout = '';

  constructor(
    readonly label: string,
    file: string,
    env: Record<string, string>,
    options: SpawnOptions = {},
  ) {
    const node = [process.execPath, '--import', 'tsx', file];
    const [command, ...args] = options.viaShell ? ['bash', '-c', SHELL_WRAPPER, ...node] : node;
    this.process = spawn(command, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process.stdout?.setEncoding('utf8').on('data', (chunk: string) => this.onStdout(chunk));
    this.process.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exitPromise = new Promise((resolveExit) => {
      // 'close' (not 'exit'): stdout and stderr are fully read by then.
      this.process.once('close', (code, signal) => {
        this.exitInfo = { code, signal, at: Date.now() };
        live.delete(this);
        for (const w of this.waiters) {
          w.reject(new Error(`${this.label} exited (code ${code}, signal ${signal}) before the awaited event.\n${this.describe()}`));
        }
        this.waiters.clear();
        resolveExit(this.exitInfo);
      });
    });
    this.process.once('error', (err) => {
      this.stderr += `\n[spawn error] ${err.message}`;
    });
    live.add(this);
  }

  /** The child's pid. */
  get pid(): number {
    return this.process.pid ?? -1;
  }

  /** Whether the child has exited. */
  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  /** Events named `event` printed so far. */
  all(event: string): ChildEvent[] {
    return this.events.filter((e) => e.event === event);
  }

  /**
   * The first event named `event` (already printed or still to come) for which
   * `where` holds, at index `from` or later. Rejects after `timeoutMs` or when
   * the child exits first, with the child's output in the message.
   */
  waitForEvent(event: string, options: { timeoutMs?: number; where?: (e: ChildEvent) => boolean; from?: number } = {}): Promise<ChildEvent> {
    const { timeoutMs = 15_000, where = () => true, from = 0 } = options;
    const match = (e: ChildEvent) => e.event === event && where(e);
    const found = this.events.slice(from).find(match);
    if (found) return Promise.resolve(found);
    if (this.exitInfo) {
      return Promise.reject(new Error(`${this.label} already exited before printing "${event}".\n${this.describe()}`));
    }
    return new Promise<ChildEvent>((resolveEvent, rejectEvent) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        rejectEvent(new Error(`${this.label} did not print "${event}" within ${timeoutMs} ms.\n${this.describe()}`));
      }, timeoutMs);
      const waiter: Waiter = {
        match,
        resolve: (e) => {
          clearTimeout(timer);
          resolveEvent(e);
        },
        reject: (err) => {
          clearTimeout(timer);
          rejectEvent(err);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** Resolves how the child ended; rejects if it is still running after `timeoutMs`. */
  waitForExit(timeoutMs = 15_000): Promise<ChildExit> {
    if (this.exitInfo) return Promise.resolve(this.exitInfo);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rejectExit) => {
      timer = setTimeout(() => rejectExit(new Error(`${this.label} still running after ${timeoutMs} ms.\n${this.describe()}`)), timeoutMs);
    });
    return Promise.race([this.exitPromise, timeout]).finally(() => clearTimeout(timer));
  }

  /** Sends `signal`; returns the `Date.now()` just before sending. */
  kill(signal: NodeJS.Signals): number {
    const at = Date.now();
    if (!this.exited) this.process.kill(signal);
    return at;
  }

  /** Kills the child (SIGKILL) if it still runs and waits for it to be gone. */
  async destroy(): Promise<void> {
    if (!this.exited) this.process.kill('SIGKILL');
    await this.waitForExit(10_000);
  }

  /** Recent output, for failure messages. */
  describe(): string {
    const events = this.events.slice(-15).map((e) => JSON.stringify(e));
    const stderr = this.stderr.length > 3000 ? `…${this.stderr.slice(-3000)}` : this.stderr;
    return [`--- ${this.label} (pid ${this.pid}) last events:`, ...events, `--- stderr:`, stderr, ...this.noise.slice(-5)].join('\n');
  }

  private onStdout(chunk: string): void {
    this.pendingStdout += chunk;
    let newline: number;
    while ((newline = this.pendingStdout.indexOf('\n')) >= 0) {
      const line = this.pendingStdout.slice(0, newline).trim();
      this.pendingStdout = this.pendingStdout.slice(newline + 1);
      if (!line) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        this.noise.push(line);
        continue;
      }
      if (!parsed || typeof parsed !== 'object' || typeof (parsed as ChildEvent).event !== 'string') {
        this.noise.push(line);
        continue;
      }
      const event = parsed as ChildEvent;
      this.events.push(event);
      for (const w of [...this.waiters]) {
        if (w.match(event)) {
          this.waiters.delete(w);
          w.resolve(event);
        }
      }
    }
  }
}

/** Starts `file` (a TypeScript fixture) with `env` added to this process's environment. */
export function spawnFixture(file: string, env: Record<string, string> = {}, label = 'fixture', options: SpawnOptions = {}): FixtureChild {
  return new FixtureChild(label, file, env, options);
}

/** Starts the lock-holder fixture (spec/fixtures/holder.ts) with `config`. */
export function spawnHolder(config: HolderConfig, label = 'holder', options: SpawnOptions = {}): FixtureChild {
  return spawnFixture(HOLDER_FIXTURE, { HOLDER_CONFIG: JSON.stringify(config) }, label, options);
}

/** Kills every fixture still running and waits until each is gone: call it in `afterEach`. */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...live].map((child) => child.destroy()));
}

/**
 * Polls `predicate` every `intervalMs` until it returns true; rejects naming
 * `what` once `timeoutMs` has run out. Resolves the `Date.now()` at which the
 * predicate first held.
 */
export async function pollUntil(
  predicate: () => boolean | Promise<boolean>,
  { timeoutMs = 10_000, intervalMs = 5, what = 'condition' }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return Date.now();
    if (Date.now() > deadline) throw new Error(`pollUntil: ${what} did not hold within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A unique lock name for one test. */
export function uniqueName(label: string): string {
  return `${label}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
