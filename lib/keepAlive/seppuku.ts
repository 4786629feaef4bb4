/**
 * The keep-alive thread's last resort: end the whole process, from a worker thread,
 * while the main thread is blocked.
 *
 * `process.exit()` in a worker only ends the worker, and a catchable signal (SIGTERM)
 * would wait for the blocked main thread, whose handler (the library's own process
 * hooks among them) never runs. SIGKILL is the one way that cannot be delayed, so the
 * process ends by SIGKILL (status 137 in a shell) rather than with code 70. SIGKILL
 * also skips the logger, `exit` handlers and the release of other leases (they expire
 * in the store), so the thread writes the one log line itself, synchronously, straight
 * to stderr (file descriptor 2), in pino's JSON format: the user's logger lives on the
 * blocked main thread.
 *
 * One place where even that fails: a process that is PID 1 of its pid namespace (Node run
 * directly as a container's entry point) — the kernel ignores a SIGKILL it sends itself.
 * The log line says so; run such a process under an init (`docker run --init`, tini).
 */
import { writeSync } from 'node:fs';
import { hostname } from 'node:os';
import type { LostReason } from '../errors';
import type { LockInfo } from '../persisters/Persister';
import type { LeaseOwnerLog } from './protocol';

/** pino's numeric level of `fatal`. */
const FATAL = 60;

/** The log line written just before the kill (one JSON line, pino's fields). */
export function seppukuLine(name: string, log: LeaseOwnerLog, reason: LostReason, holder: LockInfo | undefined, blockedMs: number): string {
  const by = holder ? `; now held by ${holder.owner} (pid ${holder.pid} on ${holder.hostname}, fencing token ${String(holder.fencingToken)})` : '';
  const msg =
    `killing the process (SIGKILL): lock "${name}" was lost (${reason}${by}) while the event loop was blocked ` +
    `for ${Math.round(blockedMs)} ms, and no 'lost' listener handles it; listen for 'lost' or set onLost: 'emit' to handle it yourself` +
    (process.pid === 1 ? ". This process is PID 1, which ignores a SIGKILL it sends itself: run it under an init (docker run --init, tini)" : '');
  return `${JSON.stringify({
    level: FATAL,
    time: Date.now(),
    pid: process.pid,
    hostname: hostname(),
    name: 'singleton-process',
    lock: name,
    owner: log.owner,
    reason,
    blockedMs: Math.round(blockedMs),
    signal: 'SIGKILL',
    msg,
  })}\n`;
}

/** Writes `line` to stderr, synchronously, then SIGKILLs this process. Does not return. */
export function seppuku(line: string): void {
  try {
    writeSync(2, line);
  } catch {
    // stderr closed: end the process all the same
  }
  process.kill(process.pid, 'SIGKILL');
}
