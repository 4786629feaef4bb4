/**
 * The history format shared by the chaos workers (which write it) and the
 * checker (which reads it). One JSON object per line, appended with a
 * synchronous write, so a SIGKILL loses at most the step being taken.
 *
 * Times are microseconds on the host's monotonic clock (`process.hrtime`,
 * CLOCK_MONOTONIC on Linux): the same clock in every process on the host, so
 * steps of different workers can be ordered, and immune to wall-clock jumps.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

/** The two registers of the storage Redis: plain GET/SET, and a fenced Lua check. */
export type Register = 'unfenced' | 'fenced';

/** One step of a worker, as written to its history file. */
export type Step =
  | { type: 'start' }
  | { type: 'invoke'; op: string }
  | { type: 'acquired'; op: string; fence: string }
  | { type: 'read'; op: string; reg: Register; ids: number; last?: string }
  | { type: 'read-refused'; op: string; reg: Register; highest: string }
  | { type: 'write'; op: string; reg: Register }
  | { type: 'write-ack'; op: string; reg: Register }
  | { type: 'write-refused'; op: string; reg: Register; highest: string }
  | { type: 'storage-error'; op: string; reg: Register; error: string }
  | { type: 'skip-write'; op: string }
  | { type: 'section-end'; op: string }
  | { type: 'lost'; op?: string; reason: string }
  | { type: 'abort'; op: string; reason: string }
  | { type: 'done'; op: string }
  | { type: 'run-error'; op: string; error: string }
  | { type: 'store-error'; error: string }
  | { type: 'unhandled'; error: string }
  | { type: 'stopped' };

/** A step with the fields every line carries. */
export type Entry = Step & { t: number; slot: number; pid: number };

/** What the orchestrator records about the run: phases, nemesis actions, worker exits. */
export type RunEvent =
  | { type: 'phase'; name: string; start: number; end: number }
  | { type: 'nemesis'; kind: string; slot: number; pid: number; start: number; end: number; back?: number }
  | { type: 'exit'; slot: number; pid: number; code: number | null; signal: string | null; expected: boolean; t: number };

/** What a worker tells the suite over IPC when it has read the registers and starts its work (the suite aims its strikes with it). */
export interface AcquiredMessage {
  acquired: string;
  workMs: number;
}

/** Microseconds on the host's monotonic clock. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** An append-only history file; each step is on disk (in the page cache) before `append` returns. */
export class HistoryFile {
  private readonly fd: number;

  constructor(
    path: string,
    private readonly slot: number,
  ) {
    this.fd = openSync(path, 'a');
  }

  /** Writes `step` now, synchronously. */
  append(step: Step): void {
    const line = JSON.stringify({ t: nowUs(), slot: this.slot, pid: process.pid, ...step });
    writeSync(this.fd, `${line}\n`);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Keys of the registers on the storage Redis. */
export const REGISTER_KEYS = Object.freeze({
  unfenced: 'chaos:register:unfenced',
  fenced: 'chaos:register:fenced',
  highestFence: 'chaos:register:fenced:highest',
});

/**
 * The fenced register's one operation. KEYS: register, highest fence seen.
 * ARGV: fence (decimal integer), 'read' | 'write', value (write only).
 * Returns { 'REFUSED', highest } when the fence is lower than the highest seen,
 * else records the fence as the highest and returns { 'OK', value } (read) or { 'OK' } (write).
 * Fences are server-clock microseconds (< 2^53), exact as Lua numbers.
 */
export const FENCED_SCRIPT = `
local highest = redis.call('GET', KEYS[2])
if highest and tonumber(ARGV[1]) < tonumber(highest) then return {'REFUSED', highest} end
if not highest or tonumber(ARGV[1]) > tonumber(highest) then redis.call('SET', KEYS[2], ARGV[1]) end
if ARGV[2] == 'read' then return {'OK', redis.call('GET', KEYS[1]) or '[]'} end
redis.call('SET', KEYS[1], ARGV[3])
return {'OK'}
`;
