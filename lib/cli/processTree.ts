import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * How the command's processes are reached:
 * - `group`: the command leads its own session and process group (no
 *   controlling terminal); a signal goes to the whole group.
 * - `terminal`: the command stays in singleton-run's process group, so it keeps
 *   the terminal as its controlling terminal and stays in the foreground; a
 *   signal goes to the command and every process descending from it.
 */
export type CommandMode = 'group' | 'terminal';

/** The processes of one running command, as one target for signals. */
export interface CommandProcesses {
  /** Sends `signal` to every process of the command; what is gone already is skipped. */
  signal(signal: NodeJS.Signals): void;
  /** Whether any process of the command still runs (a zombie does not). */
  alive(): boolean;
}

/** The processes of the command whose pid is `pid`, reached as `mode` says. */
export function commandProcesses(mode: CommandMode, pid: number): CommandProcesses {
  return mode === 'group' ? new ProcessGroup(pid) : new ProcessTree(pid);
}

class ProcessGroup implements CommandProcesses {
  constructor(private readonly pgid: number) {}

  signal(signal: NodeJS.Signals): void {
    sendSignal(-this.pgid, signal);
  }

  alive(): boolean {
    return groupAlive(this.pgid);
  }
}

/**
 * The command and its descendants. A process that left the tree (a daemon that
 * forked twice) is reached only if it was seen before it left: every signal
 * remembers the processes it reached, and later ones reach them again.
 */
class ProcessTree implements CommandProcesses {
  private readonly seen = new Set<number>();

  constructor(private readonly root: number) {}

  signal(signal: NodeJS.Signals): void {
    this.refresh();
    for (const pid of this.seen) sendSignal(pid, signal);
  }

  alive(): boolean {
    this.refresh();
    for (const pid of this.seen) if (processAlive(pid)) return true;
    return false;
  }

  private refresh(): void {
    for (const pid of [...this.seen]) if (!processAlive(pid)) this.seen.delete(pid);
    if (processAlive(this.root)) this.seen.add(this.root);
    for (const pid of descendants(this.root)) this.seen.add(pid);
  }
}

/** `process.kill`, where a process or group that is gone already is fine. */
function sendSignal(target: number, signal: NodeJS.Signals): void {
  try {
    process.kill(target, signal);
  } catch {
    // ESRCH: gone already; EPERM: not ours to signal.
  }
}

/** Every process descending from `root` (not `root` itself), found through /proc or `ps`. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parentsOfAll()) {
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift() as number) ?? []) {
      if (found.includes(child) || child === root) continue;
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/** [pid, parent pid] of every process. */
function parentsOfAll(): Array<[number, number]> {
  if (process.platform === 'linux') {
    const pairs: Array<[number, number]> = [];
    for (const entry of listProc()) {
      const stat = procStat(entry);
      if (stat) pairs.push([entry, stat.ppid]);
    }
    return pairs;
  }
  const ps = spawnSync('ps', ['-A', '-o', 'pid=', '-o', 'ppid='], { encoding: 'utf8' });
  return (ps.stdout ?? '')
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number))
    .filter((pair): pair is [number, number] => pair.length === 2 && pair.every(Number.isSafeInteger));
}

/**
 * Whether process group `pgid` still has a live member. A zombie is not live:
 * where nothing reaps orphans (a container without an init), the group would
 * otherwise look alive for ever. Zombies are recognised through /proc on Linux.
 */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (process.platform !== 'linux') return true;
  for (const pid of listProc()) {
    const stat = procStat(pid);
    if (stat && stat.pgrp === pgid && isRunning(stat.state)) return true;
  }
  return false;
}

/** Whether `pid` is a live process (a zombie is not; on Linux, told through /proc). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (process.platform !== 'linux') return true;
  const stat = procStat(pid);
  return stat === undefined || isRunning(stat.state);
}

function isRunning(state: string): boolean {
  return state !== 'Z' && state !== 'X';
}

function listProc(): number[] {
  try {
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map(Number);
  } catch {
    return [];
  }
}

/** Fields of /proc/<pid>/stat (Linux), or undefined. */
export interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  /** The terminal's foreground process group (-1 when there is no controlling terminal). */
  tpgid: number;
}

/** State, parent, process group, session and terminal foreground group of `pid` (Linux), or undefined. */
export function procStat(pid: number | 'self'): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid pgrp session tty_nr tpgid …" — comm may contain spaces and parentheses.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], ppid: Number(f[1]), pgrp: Number(f[2]), session: Number(f[3]), tpgid: Number(f[5]) };
  } catch {
    return undefined;
  }
}
