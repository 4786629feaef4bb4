import { constants as osConstants } from 'node:os';

/**
 * Exit codes of `singleton-run` (DESIGN.md §5). The numbers follow BSD
 * `sysexits.h` where one fits and the shell where a command could not be run;
 * when the command itself ran, its own exit code (or 128 + signal number) is
 * passed through instead.
 */
export const ExitCode = Object.freeze({
  /** Success (or the command's own 0). */
  OK: 0,
  /** EX_USAGE: bad flags or arguments; nothing was locked or run. */
  USAGE: 64,
  /** EX_UNAVAILABLE: the store could not be reached (or its driver is not installed). */
  UNAVAILABLE: 69,
  /** EX_SOFTWARE: an internal error in singleton-run. */
  SOFTWARE: 70,
  /** The lock was lost while the command ran; the command was stopped. Same number as EX_SOFTWARE. */
  LOST: 70,
  /** EX_TEMPFAIL: the lock is held elsewhere (or `--wait-timeout` ran out). The default of `--conflict-exit-code`. */
  TEMPFAIL: 75,
  /** Alias of {@link ExitCode.TEMPFAIL}: the default conflict exit code. */
  CONFLICT: 75,
  /** The command exists but could not be executed (EACCES, ENOEXEC…), as in a shell. */
  CANNOT_EXECUTE: 126,
  /** The command was not found (ENOENT), as in a shell. */
  NOT_FOUND: 127,
});

/** The signals `singleton-run` forwards to the command's process group. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = Object.freeze(['SIGINT', 'SIGTERM', 'SIGHUP'] as NodeJS.Signals[]);

/**
 * The exit status a shell reports for a process killed by `signal`: 128 + its number
 * (SIGINT 130, SIGTERM 143, SIGHUP 129, SIGKILL 137).
 */
export function signalExitCode(signal: NodeJS.Signals): number {
  const n = osConstants.signals[signal];
  return 128 + (typeof n === 'number' ? n : 0);
}
