import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import pino from 'pino';
import type { LostEvent } from '../events';
import type { Logger } from '../logger';
import { FilePersister } from '../persisters/FilePersister';
import { persisterFromUrl } from '../persisters/fromUrl';
import type { Persister } from '../persisters/Persister';
import { describeHolder, Singleton } from '../Singleton';
import { PROGRAM, redactSecret, type RunArgs, UsageError } from './args';
import { ExitCode, FORWARDED_SIGNALS, signalExitCode } from './exitCodes';

/** Longest wait for the release after the command exited; the lease expires on its own anyway. */
const RELEASE_TIMEOUT_MS = 5_000;
/** Longest wait for the store connection to close. */
const CLOSE_TIMEOUT_MS = 2_000;
/** Store errors while waiting or running are retried by the library; print at most one line per this long. */
const STORE_WARNING_INTERVAL_MS = 30_000;
/** After SIGKILL, how long to wait for the process group to disappear before giving up on it. */
const SIGKILL_GRACE_MS = 2_000;

/** Prints one `singleton-run: …` line on stderr. */
export function say(line: string): void {
  process.stderr.write(`${PROGRAM}: ${line}\n`);
}

/** An error's message on one line. */
export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** How a store is named in messages: its URL without password, or the default file store. */
export function describeStore(url: string | undefined): string {
  return url === undefined ? 'the default file store' : redactSecret(url, url);
}

/**
 * The persister for `url` (`persisterFromUrl`), or the file store in the OS
 * temp directory when there is none. The persister owns its connection: close
 * it with {@link closeStore}.
 *
 * @throws UsageError when the URL itself is unusable; other errors (a driver
 * that is not installed, for instance) mean the store is unavailable.
 */
export async function openStore(url: string | undefined): Promise<Persister> {
  if (url === undefined) return new FilePersister();
  try {
    return await persisterFromUrl(url);
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError) {
      throw new UsageError(redactSecret(`invalid store URL ${JSON.stringify(url)}: ${oneLine(err)}`, url));
    }
    throw err;
  }
}

/** Closes what the persister opened, bounded in time; never throws. */
export async function closeStore(persister: Persister | undefined): Promise<void> {
  if (!persister?.close) return;
  await withTimeout(persister.close(), CLOSE_TIMEOUT_MS).catch(() => undefined);
}

/**
 * The library's logger for the CLI: pino on stderr at `SINGLETON_LOG_LEVEL`,
 * else `error`, so the CLI's own one-line messages are the only output by default.
 */
export function cliLogger(): Logger {
  const level = process.env.SINGLETON_LOG_LEVEL || 'error';
  const destination = pino.destination({ fd: 2, sync: true });
  try {
    return pino({ name: PROGRAM, level }, destination);
  } catch {
    return pino({ name: PROGRAM, level: 'error' }, destination);
  }
}

/**
 * `singleton-run --name NAME … -- COMMAND ARGS`: takes the lock (or waits for
 * it), runs COMMAND in its own process group while the lock is held, and
 * resolves the exit code (see {@link ExitCode}): the command's own code, or
 * 128 + signal number, or one of 69, 70, 75 (or `--conflict-exit-code`), 126, 127.
 *
 * It handles SIGINT, SIGTERM and SIGHUP itself while it runs: before the command
 * started they end the wait at once (a second one exits immediately); while it
 * runs they are forwarded to its process group.
 */
export async function runCommand(args: RunArgs): Promise<number> {
  return new LockedRun(args).run();
}

/** Where a run is: the signal handler and the `lost` listener act on this. */
type Phase = 'starting' | 'waiting' | 'running' | 'finishing';

class LockedRun {
  private phase: Phase = 'starting';
  /** The first signal received before the command started: no command is started after it. */
  private shutdownSignal: NodeJS.Signals | undefined;
  private readonly waitAbort = new AbortController();
  private readonly signalListeners = new Map<NodeJS.Signals, () => void>();
  private persister: Persister | undefined;
  private singleton: Singleton | undefined;
  private child: ChildProcess | undefined;
  private lost: LostEvent | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private killDeadline = Infinity;
  private lastStoreWarning = -Infinity;

  constructor(private readonly args: RunArgs) {}

  async run(): Promise<number> {
    for (const signal of FORWARDED_SIGNALS) {
      const listener = () => this.onSignal(signal);
      this.signalListeners.set(signal, listener);
      process.on(signal, listener);
    }
    try {
      return await this.lockAndRun();
    } finally {
      this.phase = 'finishing';
      await this.cleanup();
      for (const [signal, listener] of this.signalListeners) process.off(signal, listener);
    }
  }

  private async lockAndRun(): Promise<number> {
    const { name, store } = this.args;
    try {
      this.persister = await openStore(store);
    } catch (err) {
      if (err instanceof UsageError) throw err;
      say(redactSecret(`cannot use ${describeStore(store)}: ${oneLine(err)}`, store));
      return ExitCode.UNAVAILABLE;
    }
    if (this.shutdownSignal) return signalExitCode(this.shutdownSignal);

    const singleton = new Singleton(name, this.persister, {
      ...(this.args.ttlMs === undefined ? {} : { ttlMs: this.args.ttlMs }),
      ...(this.args.keepAlive === undefined ? {} : { keepAlive: this.args.keepAlive }), // --keep-alive (issue 11)
      handleSignals: false,
      handleErrors: false,
      onLost: 'emit',
      logger: cliLogger(),
    });
    this.singleton = singleton;
    singleton.on('lost', (e) => this.onLost(e));
    singleton.on('error', (e) => this.onStoreError(e));

    let held: boolean;
    try {
      held = await singleton.lock();
    } catch (err) {
      if (this.shutdownSignal) return signalExitCode(this.shutdownSignal);
      say(redactSecret(`cannot reach ${describeStore(store)}: ${oneLine(err)}`, store));
      return ExitCode.UNAVAILABLE;
    }
    if (!held && !this.shutdownSignal) {
      const holder = singleton.holder;
      if (!this.args.wait) {
        say(`lock "${name}" is held by ${holder ? describeHolder(holder) : 'another instance'}; not running ${this.args.command}`);
        return this.args.conflictExitCode;
      }
      this.phase = 'waiting';
      try {
        await singleton.waitForLock({ signal: this.waitAbort.signal, timeoutMs: this.args.waitTimeoutMs });
      } catch (err) {
        if (this.shutdownSignal) return signalExitCode(this.shutdownSignal);
        if ((err as Error | undefined)?.name !== 'TimeoutError') throw err;
        const last = singleton.holder;
        say(
          `timed out after ${this.args.waitTimeoutMs} ms waiting for lock "${name}"${last ? `, held by ${describeHolder(last)}` : ''}; not running ${this.args.command}`,
        );
        return this.args.conflictExitCode;
      }
    }
    // The race guard: a signal that arrived while the lock was being taken wins; no command starts.
    if (this.shutdownSignal) return signalExitCode(this.shutdownSignal);
    if (this.lost) {
      say(`lost lock "${name}" before ${this.args.command} started (${this.lost.reason}); not running it`);
      return ExitCode.LOST;
    }
    return this.spawnCommand(singleton.fencingToken);
  }

  private spawnCommand(fencingToken: bigint | number | undefined): Promise<number> {
    const { name, command, args } = this.args;
    const env = { ...process.env, SINGLETON_NAME: name, SINGLETON_FENCING_TOKEN: String(fencingToken) };
    let child: ChildProcess;
    try {
      // detached: the command leads its own process group, so a signal reaches its whole tree.
      child = spawn(command, args, { detached: true, stdio: 'inherit', env });
    } catch (err) {
      return Promise.resolve(spawnFailure(command, err));
    }
    this.child = child;
    this.phase = 'running';
    return new Promise<number>((resolve) => {
      child.once('error', (err) => {
        if (child.pid === undefined) {
          this.phase = 'finishing';
          resolve(spawnFailure(command, err));
        } else say(`${command} (pid ${child.pid}): ${oneLine(err)}`);
      });
      child.once('exit', (code, signal) => {
        this.phase = 'finishing';
        resolve(this.afterExit(code, signal));
      });
    });
  }

  private async afterExit(code: number | null, signal: NodeJS.Signals | null): Promise<number> {
    if (this.lost) {
      await this.reapGroup();
      return ExitCode.LOST;
    }
    if (code !== null) return code;
    return signal ? signalExitCode(signal) : ExitCode.SOFTWARE;
  }

  private onSignal(signal: NodeJS.Signals): void {
    switch (this.phase) {
      case 'running':
        this.signalGroup(signal);
        return;
      case 'finishing':
        // The command has exited; the release is bounded in time.
        return;
      default:
        if (this.shutdownSignal) {
          say(`${signal} again: exiting at once`);
          process.exit(signalExitCode(signal));
        }
        this.shutdownSignal = signal;
        this.waitAbort.abort();
    }
  }

  private onLost(e: LostEvent): void {
    if (this.phase === 'finishing' || this.lost) return;
    this.lost = e;
    const child = this.child;
    if (this.phase !== 'running' || !child) return;
    const by = e.holder ? `, now held by ${describeHolder(e.holder)}` : '';
    say(
      `lost lock "${this.args.name}" (${e.reason}${by}); stopping ${this.args.command} (pid ${child.pid}) with SIGTERM, SIGKILL after ${this.args.killAfterMs} ms`,
    );
    this.signalGroup('SIGTERM');
    this.killDeadline = Date.now() + this.args.killAfterMs;
    this.killTimer = setTimeout(() => this.signalGroup('SIGKILL'), this.args.killAfterMs);
  }

  private onStoreError(error: Error): void {
    if (this.phase !== 'waiting' && this.phase !== 'running') return;
    const now = Date.now();
    if (now - this.lastStoreWarning < STORE_WARNING_INTERVAL_MS) return;
    this.lastStoreWarning = now;
    say(redactSecret(`store error, retrying: ${oneLine(error)}`, this.args.store));
  }

  /** Sends `signal` to the command's whole process group; a group that is gone is fine. */
  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // ESRCH: the group is gone already.
    }
  }

  /**
   * After a loss, the command has exited but its group may not have (a shell's
   * background jobs): wait for it, SIGKILL it at the `--kill-after` deadline.
   */
  private async reapGroup(): Promise<void> {
    const pgid = this.child?.pid;
    if (pgid !== undefined) {
      let giveUpAt = Infinity;
      while (groupAlive(pgid) && Date.now() < giveUpAt) {
        if (giveUpAt === Infinity && Date.now() >= this.killDeadline) {
          this.signalGroup('SIGKILL');
          giveUpAt = Date.now() + SIGKILL_GRACE_MS;
        }
        await sleep(25);
      }
    }
    clearTimeout(this.killTimer);
  }

  private async cleanup(): Promise<void> {
    clearTimeout(this.killTimer);
    this.waitAbort.abort();
    if (this.singleton) {
      try {
        await withTimeout(this.singleton.release(), RELEASE_TIMEOUT_MS);
      } catch (err) {
        say(`could not release lock "${this.args.name}" (it expires by itself within its ttl): ${oneLine(err)}`);
      }
    }
    await closeStore(this.persister);
  }
}

function spawnFailure(command: string, err: unknown): number {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    say(`${command}: command not found`);
    return ExitCode.NOT_FOUND;
  }
  say(`${command}: cannot execute: ${oneLine(err)}`);
  return ExitCode.CANNOT_EXECUTE;
}

/**
 * Whether process group `pgid` still has a live member. A zombie is not live:
 * where nothing reaps orphans (a container without an init), the group would
 * otherwise look alive for ever. Zombies are recognised through /proc on Linux.
 */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (process.platform !== 'linux') return true;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(Number(entry));
    if (stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X') return true;
  }
  return false;
}

/** State and process group of `pid` from /proc/<pid>/stat, or undefined. */
function procStat(pid: number): { state: string; pgrp: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid pgrp …" — comm may contain spaces and parentheses.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], pgrp: Number(fields[2]) };
  } catch {
    return undefined;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or a rejection after `ms`; the timer never keeps the process alive. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
