/**
 * The supervisor: a small process between singleton-run and its command, so
 * that the command never outlives singleton-run, however it ends (SIGKILL too).
 *
 * singleton-run starts it (see `supervised.ts`) as
 * `node supervisor.js MODE KILL_AFTER_MS PARENT_PID COMMAND [ARGS…]` with an IPC channel.
 * It starts the command (see {@link CommandMode}) when singleton-run says `start` — only
 * while singleton-run is still there, so a singleton-run killed meanwhile never has its
 * command started — reports `started`, `spawn-error` and `exit`, applies the signals and
 * stops singleton-run asks for, and watches the channel: when it closes without the
 * command having exited — singleton-run died — it sends SIGTERM to the command's
 * processes, SIGKILL at most {@link PARENT_GONE_GRACE_MS} later, and exits once they are
 * gone. After a forwarded signal, once the command exited, the processes it leaves in its
 * group (a shell's background jobs ignore SIGINT) get SIGTERM, SIGKILL KILL_AFTER_MS later:
 * the lock is released only when they are gone.
 *
 * It ignores SIGINT, SIGTERM, SIGHUP and SIGQUIT: with a terminal it shares the
 * command's process group and gets Ctrl-C with it, and it must outlive
 * singleton-run to do its job.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { type CommandMode, type CommandProcesses, commandProcesses } from './processTree';
import { type FromSupervisor, isToSupervisor } from './supervisorProtocol';

/** After singleton-run died: SIGTERM, then SIGKILL at most this long after, so the command is gone within a second. */
export const PARENT_GONE_GRACE_MS = 500;
/** After SIGKILL, how long to wait for the command's processes to disappear before giving up on them. */
const SIGKILL_GRACE_MS = 2_000;
const POLL_MS = 10;
const IGNORED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

class Supervisor {
  private child: ChildProcess | undefined;
  private processes: CommandProcesses | undefined;
  private exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** When the command's processes get SIGKILL, once a stop began. */
  private killAt = Infinity;
  private killTimer: NodeJS.Timeout | undefined;
  private parentGone = false;
  private finishing = false;
  /** Whether singleton-run forwarded a signal to the command (a shutdown). */
  private signalled = false;
  /** SIGTERM → SIGKILL once singleton-run died, ms. */
  private readonly parentGoneGraceMs: number;

  constructor(
    private readonly mode: CommandMode,
    /** SIGTERM → SIGKILL for the processes a signalled command leaves behind, ms (`--kill-after`). */
    private readonly killAfterMs: number,
    /** singleton-run's pid (once it died, `process.ppid` names whoever adopted us). */
    private readonly parentPid: number,
    private readonly command: string,
    private readonly args: string[],
  ) {
    this.parentGoneGraceMs = Math.min(killAfterMs, PARENT_GONE_GRACE_MS);
  }

  /** Listens to singleton-run; the command starts on its `start`. */
  listen(): void {
    for (const signal of IGNORED_SIGNALS) process.on(signal, () => undefined);
    // A closed or hung-up stderr (EPIPE, EIO) must not end the supervisor before the command.
    process.stderr.on('error', () => undefined);
    process.on('message', (m: unknown) => {
      if (!isToSupervisor(m)) return;
      if (m.type === 'start') this.start();
      else if (m.type === 'signal') {
        this.signalled = true;
        this.processes?.signal(m.signal);
      } else this.stop(m.killAfterMs);
    });
    process.on('disconnect', () => this.onParentGone());
    if (!this.parentThere()) this.onParentGone();
  }

  /** Whether singleton-run is still our parent, and its channel open. */
  private parentThere(): boolean {
    return process.connected && process.ppid === this.parentPid;
  }

  private start(): void {
    // singleton-run died after asking (a message can arrive after the channel closed): not started.
    if (this.child || this.parentGone || !this.parentThere()) return;
    let child: ChildProcess;
    try {
      // group: the command leads a new session and process group (setsid); terminal: it stays in ours.
      child = spawn(this.command, this.args, { stdio: 'inherit', detached: this.mode === 'group' });
    } catch (err) {
      this.spawnFailed(err);
      return;
    }
    this.child = child;
    child.once('error', (err) => {
      if (child.pid === undefined) this.spawnFailed(err);
    });
    child.once('exit', (code, signal) => {
      this.exited = { code, signal };
      void this.finish();
    });
    if (child.pid !== undefined) {
      this.processes = commandProcesses(this.mode, child.pid);
      this.send({ type: 'started', pid: child.pid });
    }
    if (!process.connected) this.onParentGone();
  }

  private onParentGone(): void {
    if (this.parentGone) return;
    this.parentGone = true;
    if (this.exited || !this.child?.pid) {
      // Nothing runs any more, or never did.
      if (!this.finishing) process.exit(0);
      return;
    }
    process.stderr.write(
      `singleton-run: singleton-run (pid ${this.parentPid}) ended; stopping ${this.command} (pid ${this.child.pid}) with SIGTERM, SIGKILL after ${this.parentGoneGraceMs} ms\n`,
    );
    this.stop(this.parentGoneGraceMs);
  }

  /** SIGTERM now, SIGKILL after `killAfterMs` (the earliest deadline asked for wins). */
  private stop(killAfterMs: number): void {
    const killAt = Date.now() + killAfterMs;
    if (killAt >= this.killAt) return;
    this.killAt = killAt;
    this.processes?.signal('SIGTERM');
    clearTimeout(this.killTimer);
    this.killTimer = setTimeout(() => this.processes?.signal('SIGKILL'), killAfterMs);
  }

  /**
   * The command exited. After a stop, its other processes (a shell's background
   * jobs) must be gone too: wait for them, SIGKILL them at the deadline.
   */
  private async finish(): Promise<void> {
    this.finishing = true;
    const processes = this.processes;
    // A forwarded signal ended the command but not every process of its group: stop the rest.
    if (processes && this.signalled && this.killAt === Infinity && processes.alive()) this.stop(this.killAfterMs);
    if (processes && this.killAt !== Infinity) {
      let giveUpAt = Infinity;
      while (processes.alive() && Date.now() < giveUpAt) {
        if (giveUpAt === Infinity && Date.now() >= this.killAt) {
          processes.signal('SIGKILL');
          giveUpAt = Date.now() + SIGKILL_GRACE_MS;
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    }
    clearTimeout(this.killTimer);
    if (this.exited && !this.parentGone) this.send({ type: 'exit', ...this.exited }, () => process.exit(0));
    else process.exit(0);
  }

  private spawnFailed(err: unknown): void {
    const e = err as NodeJS.ErrnoException;
    this.send({ type: 'spawn-error', code: e?.code, message: e instanceof Error ? e.message : String(err) }, () => process.exit(0));
  }

  private send(message: FromSupervisor, then?: () => void): void {
    if (!process.connected || !process.send) {
      then?.();
      return;
    }
    process.send(message, undefined, {}, () => then?.());
  }
}

function main(argv: string[]): void {
  const [mode, killAfter, parent, command, ...args] = argv;
  const killAfterMs = Number(killAfter);
  const parentPid = Number(parent);
  const valid =
    (mode === 'group' || mode === 'terminal') && Number.isSafeInteger(killAfterMs) && killAfterMs >= 0 && Number.isSafeInteger(parentPid) && parentPid > 0 && command;
  if (!process.send || !valid) {
    process.stderr.write('singleton-run supervisor: internal helper of singleton-run; not meant to be run by hand\n');
    process.exit(70);
  }
  new Supervisor(mode, killAfterMs, parentPid, command, args).listen();
}

main(process.argv.slice(2));
