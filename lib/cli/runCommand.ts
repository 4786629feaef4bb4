import pino from 'pino';
import { LockLostError } from '../errors';
import { type Lease, trackWork } from '../Lease';
import type { Logger } from '../logger';
import { FilePersister } from '../persisters/FilePersister';
import { persisterFromUrl } from '../persisters/fromUrl';
import type { Persister } from '../persisters/Persister';
import { describeHolder, describeTakeover, Singleton } from '../Singleton';
import { PROGRAM, redactSecret, type RunArgs, UsageError } from './args';
import { commandEnv } from './commandEnv';
import { ExitCode, FORWARDED_SIGNALS, signalExitCode } from './exitCodes';
import { type CommandOutcome, SupervisedCommand } from './supervised';
import { commandMode, inTerminalForeground } from './terminal';

/** Longest wait for the release after the command exited; the lease expires on its own anyway. */
const RELEASE_TIMEOUT_MS = 5_000;
/** Longest wait for the store connection to close. */
const CLOSE_TIMEOUT_MS = 2_000;
/**
 * The same after a shutdown signal (the wait ends at once, and so does the goodbye) or a store
 * failure during the run (a goodbye the store cannot answer is not worth waiting for).
 */
const CLOSE_IN_A_HURRY_TIMEOUT_MS = 200;
/** Store errors while waiting or running are retried by the library; print at most one line per this long. */
const STORE_WARNING_INTERVAL_MS = 30_000;

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

/** Closes what the persister opened, bounded in time (`timeoutMs`); never throws. */
export async function closeStore(persister: Persister | undefined, timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
  if (!persister?.close) return;
  await withTimeout(persister.close(), timeoutMs).catch(() => undefined);
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
 * it), runs COMMAND under a supervisor (`supervisor.ts`) while the lock is
 * held, and resolves the exit code (see {@link ExitCode}): the command's own
 * code, or 128 + signal number, or one of 69, 70, 75 (or `--conflict-exit-code`), 126, 127.
 *
 * The command runs in its own process group, or, when singleton-run was started
 * from a terminal, in singleton-run's group so that it keeps the terminal (see
 * `terminal.ts`). If singleton-run dies, even by SIGKILL, the supervisor ends
 * the command within a second.
 *
 * It handles SIGINT, SIGTERM and SIGHUP itself while it runs: before the command
 * started they end the wait at once (a second one exits immediately); while it
 * runs they are forwarded to the command's processes (except a SIGINT from the
 * terminal, which the command got already).
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
  private command: SupervisedCommand | undefined;
  private lost: LockLostError | undefined;
  private lastStoreWarning = -Infinity;
  /** Whether a store call failed during this run (the close then waits less). */
  private storeFailed = false;

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
    // The command runs under the lease, like any work: its signal stops the command.
    const lease = singleton.lease;
    if (!lease || lease.signal.aborted) {
      return this.lostBeforeStart(lease?.signal.reason instanceof LockLostError ? lease.signal.reason.reason : 'expired');
    }
    lease.signal.addEventListener('abort', () => this.onLeaseEnded(lease.signal.reason), { once: true });
    return this.spawnCommand(commandEnv(process.env, name, lease.fencingToken, this.persister.capabilities), lease);
  }

  private async spawnCommand(env: NodeJS.ProcessEnv, lease: Lease): Promise<number> {
    let command: SupervisedCommand;
    try {
      command = new SupervisedCommand(commandMode(), this.args.command, this.args.args, env, this.args.killAfterMs);
    } catch (err) {
      say(`cannot start the supervisor of ${this.args.command}: ${oneLine(err)}`);
      return ExitCode.SOFTWARE;
    }
    this.command = command;
    // The file store frees a lease at once when its holder dies; singleton-run's death must
    // not free it while the command's processes still run: the supervisor, which outlives
    // singleton-run until they are gone, guards it (Redis and the others hold it for its ttl).
    if (this.persister instanceof FilePersister && command.supervisorPid !== undefined) {
      await this.persister.guardLease(this.args.name, command.supervisorPid).catch(() => false);
    }
    // A signal or a loss that came while the supervisor started: the command never starts.
    if (this.shutdownSignal || this.lost || lease.signal.aborted) {
      command.abandon();
      await command.ended;
      if (this.shutdownSignal) return signalExitCode(this.shutdownSignal);
      return this.lostBeforeStart(this.lost?.reason ?? 'expired');
    }
    this.phase = 'running';
    command.start();
    trackWork(lease, command.ended);
    const outcome = await command.ended;
    this.phase = 'finishing';
    return this.exitCodeOf(outcome);
  }

  /** The lease ended before the command started: it is not started. */
  private lostBeforeStart(reason: string): number {
    say(`lost lock "${this.args.name}" before ${this.args.command} started (${reason}); not running it`);
    return ExitCode.LOST;
  }

  private exitCodeOf(outcome: CommandOutcome): number {
    const { command } = this.args;
    switch (outcome.kind) {
      case 'spawn-error':
        return spawnFailure(command, outcome.code, outcome.message);
      case 'supervisor-died':
        say(`the supervisor of ${command} ended unexpectedly (${outcome.signal ?? `exit code ${outcome.code}`}); ${command} was killed`);
        return ExitCode.SOFTWARE;
      case 'exit':
        // After a loss the supervisor reports only once every process of the command is gone.
        if (this.lost) return ExitCode.LOST;
        if (outcome.code !== null) return outcome.code;
        return outcome.signal ? signalExitCode(outcome.signal) : ExitCode.SOFTWARE;
    }
  }

  private onSignal(signal: NodeJS.Signals): void {
    switch (this.phase) {
      case 'running':
        // Ctrl-C reached the whole foreground group, the command included: do not send it twice.
        if (signal === 'SIGINT' && this.command?.mode === 'terminal' && inTerminalForeground()) return;
        this.command?.signal(signal);
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

  /** The lease ended while the command ran (lost): stop the command. Our own release comes only after it exited. */
  private onLeaseEnded(reason: unknown): void {
    if (!(reason instanceof LockLostError) || reason.reason === 'released' || reason.reason === 'shutdown') return;
    if (this.phase === 'finishing' || this.lost) return;
    const e = reason;
    this.lost = e;
    const command = this.command;
    if (this.phase !== 'running' || !command) return;
    const by = e.holder ? `, ${describeTakeover(e.holder)}` : '';
    const pid = command.commandPid === undefined ? '' : ` (pid ${command.commandPid})`;
    say(
      `lost lock "${this.args.name}" (${e.reason}${by}); stopping ${this.args.command}${pid} with SIGTERM, SIGKILL after ${this.args.killAfterMs} ms`,
    );
    command.stop(this.args.killAfterMs);
  }

  private onStoreError(error: Error): void {
    this.storeFailed = true;
    if (this.phase !== 'waiting' && this.phase !== 'running') return;
    const now = Date.now();
    if (now - this.lastStoreWarning < STORE_WARNING_INTERVAL_MS) return;
    this.lastStoreWarning = now;
    say(redactSecret(`store error, retrying: ${oneLine(error)}`, this.args.store));
  }

  private async cleanup(): Promise<void> {
    this.waitAbort.abort();
    if (this.singleton) {
      try {
        await withTimeout(this.singleton.release(), RELEASE_TIMEOUT_MS);
      } catch (err) {
        say(`could not release lock "${this.args.name}" (it expires by itself within its ttl): ${oneLine(err)}`);
      }
    }
    await closeStore(this.persister, this.storeFailed || this.shutdownSignal ? CLOSE_IN_A_HURRY_TIMEOUT_MS : CLOSE_TIMEOUT_MS);
  }
}

function spawnFailure(command: string, code: string | undefined, message: string): number {
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    say(`${command}: command not found`);
    return ExitCode.NOT_FOUND;
  }
  say(`${command}: cannot execute: ${oneLine(message)}`);
  return ExitCode.CANNOT_EXECUTE;
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
