/**
 * The per-name lease record: `<key>.lock`, a small JSON file that is only ever replaced
 * whole (write a temporary file, then `rename` it over the record: readers see the old
 * record or the new one, never a mix), so reads need no mutex.
 *
 * The record is kept on release, with the token cleared, so the fencing counter survives
 * releases and takeovers. It holds a SHA-256 of the holder's token, never the token.
 *
 * No `fsync`: a lease is only meaningful while its holder process runs, and a power loss or
 * kernel crash ends every process on the host. A record lost or torn by such a crash reads
 * as "no record", and the fence then restarts from the clock (it is never below the time
 * in microseconds), so it still never repeats. fsync would cost milliseconds per operation.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PersisterError } from '../../errors';
import type { LockInfo } from '../Persister';
import { asIdentity, isDead, type ProcessIdentity } from './liveness';
import type { MutexGuard } from './mutex';
import { TEMP_SUFFIX, type LockPaths } from './names';
import { errorCode, fileError } from './errors';

/** What `<key>.lock` holds. */
export interface LeaseRecord {
  /** Format version. */
  v: 1;
  /** The lock name (checked on read: the file key is a hash of it). */
  name: string;
  /** SHA-256 (hex) of the holder's token; null once released. */
  tokenHash: string | null;
  /** The holder's human-readable identity, as it asked. */
  owner: string;
  /** The holder's host, as it asked. */
  hostname: string;
  /** The holder's pid, as it asked (shown to others). */
  pid: number;
  /** Fencing token of this lease; the next lease gets `max(fence + 1, now µs)`. */
  fence: number;
  /** When this lease was acquired (ms since the epoch, host clock). */
  acquiredAt: number;
  /** When it expires unless renewed (ms since the epoch, host clock). */
  expiresAt: number;
  /** True when the holder released it (so the next taker reports no `expired`). */
  released: boolean;
  /** The process that actually wrote the lease, whose death frees it at once (unless a guard runs). */
  holder: ProcessIdentity;
  /**
   * A process that keeps the lease held while it runs, even once the holder died: set by
   * `FilePersister.guardLease` (singleton-run's supervisor, which outlives singleton-run
   * until the command's processes are gone). The lease still expires at `expiresAt`.
   */
  guard?: ProcessIdentity;
  /** The last lease ended by a forced release (kept across later leases), so its holder learns it was evicted. */
  evicted?: EvictedLease;
}

/** A lease ended by `forceRelease()`, as its record keeps it. */
export interface EvictedLease {
  /** SHA-256 (hex) of the evicted holder's token. */
  tokenHash: string;
  /** When it was ended (ms since the epoch, host clock). */
  at: number;
  /** Host of the process that forced the release. */
  hostname: string;
  /** Its pid. */
  pid: number;
  /** The evicted lease's fence. */
  fence: number;
}

/** SHA-256 of a token, as stored. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** True when the process that wrote the lease is gone, and so is its guard, if it has one: the lease is free at once. */
export function holderGone(record: LeaseRecord): boolean {
  return isDead(record.holder) && (record.guard === undefined || isDead(record.guard));
}

/** True while the record is a lease someone holds: not released, not expired, its process (or its guard) alive. */
export function isHeld(record: LeaseRecord, now: number): boolean {
  return record.tokenHash !== null && record.expiresAt > now && !holderGone(record);
}

/** The record as others may see it (no token, no hash). */
export function toLockInfo(record: LeaseRecord): LockInfo {
  return {
    name: record.name,
    owner: record.owner,
    hostname: record.hostname,
    pid: record.pid,
    fencingToken: record.fence,
    acquiredAt: new Date(record.acquiredAt),
    expiresAt: new Date(record.expiresAt),
  };
}

function parse(text: string): LeaseRecord | null {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object') return null;
  const holder = asIdentity(value.holder);
  const numbers = ['pid', 'fence', 'acquiredAt', 'expiresAt'] as const;
  if (
    value.v !== 1 ||
    typeof value.name !== 'string' ||
    (value.tokenHash !== null && typeof value.tokenHash !== 'string') ||
    typeof value.owner !== 'string' ||
    typeof value.hostname !== 'string' ||
    typeof value.released !== 'boolean' ||
    !holder ||
    numbers.some((key) => typeof value[key] !== 'number' || !Number.isFinite(value[key]))
  ) {
    return null;
  }
  const { evicted, guard: guardValue, ...rest } = value as unknown as LeaseRecord;
  const guard = asIdentity(guardValue);
  return { ...rest, holder, ...(guard ? { guard } : {}), ...(isEvictedLease(evicted) ? { evicted } : {}) };
}

function isEvictedLease(value: unknown): value is EvictedLease {
  const e = value as Record<string, unknown> | null | undefined;
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof e.tokenHash === 'string' &&
    typeof e.hostname === 'string' &&
    ['at', 'pid', 'fence'].every((key) => typeof e[key] === 'number' && Number.isFinite(e[key]))
  );
}

/**
 * Reads the record of `name`; null when there is none. A record that does not parse (torn
 * by a crash, or not ours) also reads as null: the next lease overwrites it, and its fence
 * is seeded from the clock, so it still increases.
 */
export function readRecord(paths: LockPaths, name: string, dir: string): LeaseRecord | null {
  const record = readRecordFile(paths.state, dir);
  if (record && record.name !== name) {
    throw new PersisterError(
      `FilePersister: ${paths.state} holds lock "${record.name}", not "${name}" (a hash collision or a foreign file). Remove the file or use another directory.`,
    );
  }
  return record;
}

/** Reads the record file at `path`; null when it is absent or does not parse. */
export function readRecordFile(path: string, dir: string): LeaseRecord | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw fileError('reading the lock file', path, dir, error);
  }
  return parse(text);
}

/**
 * Replaces the record atomically: writes `<key>.<pid>.<random>.tmp`, checks the mutex is
 * still held, renames the temporary file over the record. Call it only under the mutex.
 */
export function writeRecord(paths: LockPaths, record: LeaseRecord, dir: string, guard: MutexGuard): void {
  const temp = join(dir, `${paths.key}.${process.pid}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
  try {
    writeFileSync(temp, JSON.stringify(record), { flag: 'wx' });
    guard.assertHeld();
    renameSync(temp, paths.state);
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // not created, or already renamed
    }
    if (errorCode(error) === undefined) throw error; // MutexLostError and our own errors pass through
    throw fileError('writing the lock file', paths.state, dir, error);
  }
}
