import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type CommandMode, commandProcesses } from './processTree';
import { type FromSupervisor, isFromSupervisor, type ToSupervisor } from './supervisorProtocol';

/**
 * The supervisor script beside this file: `supervisor.js` in the build (and the
 * installed package), `supervisor.ts` when singleton-run itself runs from source.
 */
const SUPERVISOR = join(__dirname, __filename.endsWith('.ts') ? 'supervisor.ts' : 'supervisor.js');

/** Node flags for the supervisor: none from the build; the tsx loader from source. */
function supervisorExecArgv(): string[] {
  return SUPERVISOR.endsWith('.ts') ? ['--import', pathToFileURL(require.resolve('tsx')).href] : [];
}

/** How a supervised command ended. */
export type CommandOutcome =
  /** It ran and exited with `code`, or died of `signal`. */
  | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  /** It could not be started; `code` as in `spawn`'s error (ENOENT, EACCES…). */
  | { kind: 'spawn-error'; code: string | undefined; message: string }
  /** The supervisor itself ended without reporting (killed by someone); the command was then SIGKILLed. */
  | { kind: 'supervisor-died'; code: number | null; signal: NodeJS.Signals | null };

/**
 * A command run under the supervisor (`supervisor.ts`), which ends it if this
 * process dies. `mode` says how its processes are reached (see {@link CommandMode}).
 */
export class SupervisedCommand {
  /** The command's pid, once the supervisor reported it started. */
  commandPid: number | undefined;
  /** Resolves how the command ended; never rejects. */
  readonly ended: Promise<CommandOutcome>;
  private readonly supervisor: ChildProcess;

  /**
   * Starts the supervisor, which starts `command args` with `env` once told to
   * ({@link start}), and ends them if this process dies: SIGTERM, then SIGKILL
   * `killAfterMs` later (at most half a second: see `supervisor.ts`). With `group`
   * the supervisor leads a session of its own, so a signal to this process's
   * group (a `kill -9 -PGID`, say) cannot end it along with singleton-run.
   *
   * @throws when the supervisor process cannot be spawned at all.
   */
  constructor(
    readonly mode: CommandMode,
    command: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv,
    killAfterMs: number,
  ) {
    const argv = [...supervisorExecArgv(), SUPERVISOR, mode, String(killAfterMs), String(process.pid), command, ...args];
    this.supervisor = spawn(process.execPath, argv, {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      detached: mode === 'group',
      env,
    });
    let report: FromSupervisor | undefined;
    this.supervisor.on('message', (m: unknown) => {
      if (!isFromSupervisor(m)) return;
      if (m.type === 'started') this.commandPid = m.pid;
      else report = m;
    });
    // A `spawn` error (no such executable) still ends in 'close'.
    this.supervisor.on('error', () => undefined);
    this.ended = new Promise((resolve) => {
      // 'close' comes after 'exit' and after the IPC channel closed, so every report has arrived.
      this.supervisor.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
        if (report?.type === 'exit') resolve({ kind: 'exit', code: report.code, signal: report.signal });
        else if (report?.type === 'spawn-error') resolve({ kind: 'spawn-error', code: report.code, message: report.message });
        else {
          this.killCommand();
          resolve({ kind: 'supervisor-died', code, signal });
        }
      });
    });
  }

  /** The supervisor's pid. */
  get supervisorPid(): number | undefined {
    return this.supervisor.pid;
  }

  /** Starts the command (the supervisor waits for this, so that nothing starts before the lock is guarded). */
  start(): void {
    this.send({ type: 'start' });
  }

  /** Lets the supervisor go without starting the command (a shutdown began first). */
  abandon(): void {
    if (this.supervisor.connected) this.supervisor.disconnect();
  }

  /** Sends `signal` to every process of the command. */
  signal(signal: NodeJS.Signals): void {
    this.send({ type: 'signal', signal });
  }

  /** SIGTERM to every process of the command now, SIGKILL `killAfterMs` later if any still runs. */
  stop(killAfterMs: number): void {
    this.send({ type: 'stop', killAfterMs });
  }

  private send(message: ToSupervisor): void {
    if (!this.supervisor.connected) return;
    // An error means the supervisor is gone: 'close' handles that.
    this.supervisor.send(message, () => undefined);
  }

  /** The supervisor vanished without a word: its command must not run on unsupervised. */
  private killCommand(): void {
    if (this.commandPid !== undefined) commandProcesses(this.mode, this.commandPid).signal('SIGKILL');
  }
}
