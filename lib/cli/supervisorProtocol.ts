/**
 * The messages between singleton-run and its supervisor (`supervisor.ts`), over
 * the IPC channel of `child_process.spawn`.
 */

/** singleton-run → supervisor. */
export type ToSupervisor =
  /** Start the command now (singleton-run holds the lock, and has guarded it with the supervisor where the store allows). */
  | { type: 'start' }
  /** Send `signal` to the command's processes (a forwarded SIGINT/SIGTERM/SIGHUP). */
  | { type: 'signal'; signal: NodeJS.Signals }
  /** Stop the command: SIGTERM now, SIGKILL `killAfterMs` later if it still runs. */
  | { type: 'stop'; killAfterMs: number };

/** supervisor → singleton-run. */
export type FromSupervisor =
  /** The command runs, as process `pid`. */
  | { type: 'started'; pid: number }
  /** The command could not be started (`code` as in `spawn`'s error: ENOENT, EACCES…). */
  | { type: 'spawn-error'; code: string | undefined; message: string }
  /** The command exited (and, after a stop, its other processes are gone too). */
  | { type: 'exit'; code: number | null; signal: NodeJS.Signals | null };

/** Whether `value` is a message singleton-run sends. */
export function isToSupervisor(value: unknown): value is ToSupervisor {
  const m = value as Partial<Record<string, unknown>> | null;
  if (m === null || typeof m !== 'object') return false;
  if (m.type === 'start') return true;
  if (m.type === 'signal') return typeof m.signal === 'string';
  return m.type === 'stop' && typeof m.killAfterMs === 'number';
}

/** Whether `value` is a message the supervisor sends. */
export function isFromSupervisor(value: unknown): value is FromSupervisor {
  const m = value as Partial<Record<string, unknown>> | null;
  if (m === null || typeof m !== 'object') return false;
  return m.type === 'started' || m.type === 'spawn-error' || m.type === 'exit';
}
