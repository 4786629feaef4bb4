/**
 * Is a process still alive? The file store breaks a lock (or a stale mutex) at once
 * when the process that wrote it is gone, instead of waiting out the lease.
 *
 * A process is named by more than its pid, because pids alone lie in three ways:
 * - another host (a shared network directory) or another pid namespace (containers
 *   sharing a volume) has its own pids: there the pid says nothing, and only the
 *   lease's expiry decides;
 * - after a reboot every old pid is dead, even when a new process got the same number:
 *   the kernel's boot id tells (Linux);
 * - a pid can be reused by an unrelated process, and a killed child stays a zombie until
 *   its parent reaps it: the process start time and state in `/proc/<pid>/stat` tell
 *   (Linux). Elsewhere `process.kill(pid, 0)` alone decides (ESRCH: dead, EPERM: alive).
 */
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/** Who wrote a lock or mutex file, precisely enough to tell later whether it is still running. */
export interface ProcessIdentity {
  /** Process id. */
  pid: number;
  /** `os.hostname()` of the writer. */
  host: string;
  /** Linux boot id ('' where unknown). */
  boot: string;
  /** Linux pid namespace, e.g. `pid:[4026531836]` ('' where unknown). */
  ns: string;
  /** Process start time in clock ticks since boot, from `/proc/<pid>/stat` ('' where unknown). */
  start: string;
}

function readOr(read: () => string, fallback: string): string {
  try {
    return read().trim();
  } catch {
    return fallback;
  }
}

/** Fields 3 (state) and 22 (starttime) of `/proc/<pid>/stat`, or null where there is no procfs. */
function procStat(pid: number | 'self'): { state: string; start: string } | null | 'gone' {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' && hasProcfs() ? 'gone' : null;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', start: fields[19] ?? '' };
}

let procfs: boolean | undefined;
function hasProcfs(): boolean {
  procfs ??= existsSync('/proc/self/stat');
  return procfs;
}

let self: ProcessIdentity | undefined;

/** This process's identity (computed once; the pid is read each time, for forks). */
export function selfIdentity(): ProcessIdentity {
  if (!self || self.pid !== process.pid) {
    const stat = procStat('self');
    self = {
      pid: process.pid,
      host: hostname(),
      boot: readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'latin1'), ''),
      ns: readOr(() => readlinkSync('/proc/self/ns/pid'), ''),
      start: stat && stat !== 'gone' ? stat.start : '',
    };
  }
  return self;
}

/**
 * The identity of process `pid` of this host, boot and pid namespace (a child this process
 * started, say); undefined when it is not running or cannot be told apart from a later one.
 */
export function identityOf(pid: number): ProcessIdentity | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const stat = procStat(pid);
  if (stat === 'gone' || (stat !== null && (stat.state === 'Z' || stat.state === 'X'))) return undefined;
  const me = selfIdentity();
  return { pid, host: me.host, boot: me.boot, ns: me.ns, start: stat === null ? '' : stat.start };
}

/** What `process.kill(pid, 0)` says: ours to signal, someone else's (EPERM: alive), or no such process. */
type SignalProbe = 'ok' | 'eperm' | 'esrch';

function probeSignal(pid: number): SignalProbe {
  try {
    process.kill(pid, 0);
    return 'ok';
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH' ? 'esrch' : 'eperm';
  }
}

/**
 * The verdict on a process of this host, boot and pid namespace, from the two probes.
 * EPERM proves the process exists: then a missing `/proc/<pid>` only means procfs hides
 * other users' processes (`hidepid=2`), never that it died.
 * @internal exported for the tests.
 */
export function judgeDead(signal: SignalProbe, stat: { state: string; start: string } | null | 'gone', start: string): boolean {
  if (signal === 'esrch') return true;
  if (stat === 'gone') return signal === 'ok';
  if (stat === null) return false;
  if (stat.state === 'Z' || stat.state === 'X') return true; // killed, not yet reaped
  return start !== '' && stat.start !== '' && stat.start !== start; // pid reused
}

/**
 * True only when `who` is certainly not running any more. Unknown (another host, another
 * pid namespace, a malformed identity) is "not dead": the lease's expiry decides then.
 */
export function isDead(who: ProcessIdentity): boolean {
  const me = selfIdentity();
  // A pid of 0 or below would signal a whole process group: never ask about it.
  if (!Number.isSafeInteger(who.pid) || who.pid <= 0 || who.host !== me.host) return false;
  if (who.boot && me.boot && who.boot !== me.boot) return true; // the host rebooted since
  if (who.ns !== me.ns || who.boot !== me.boot) return false;
  if (who.pid === me.pid) return who.start !== '' && me.start !== '' && who.start !== me.start;
  const signal = probeSignal(who.pid);
  return judgeDead(signal, signal === 'esrch' ? null : procStat(who.pid), who.start);
}

/** Whether two identities name the same process. */
export function sameProcess(a: ProcessIdentity, b: ProcessIdentity): boolean {
  return a.pid === b.pid && a.host === b.host && a.boot === b.boot && a.ns === b.ns && a.start === b.start;
}

/** Reads a {@link ProcessIdentity} out of parsed JSON, or undefined when it is not one. */
export function asIdentity(value: unknown): ProcessIdentity | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.pid !== 'number' || typeof v.host !== 'string') return undefined;
  const str = (x: unknown) => (typeof x === 'string' ? x : '');
  return { pid: v.pid, host: v.host, boot: str(v.boot), ns: str(v.ns), start: str(v.start) };
}
