/**
 * The operator's side of the file store: every record in the directory (for `list()`),
 * and the record a forced release writes (for `forceRelease()`).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { evictionHolder, operatorIdentity } from '../adminSupport';
import type { LockInfo } from '../Persister';
import { errorCode, fileError } from './errors';
import { type LeaseRecord, readRecordFile } from './state';

/** The suffix of record files (`<key>.lock`; see names.ts). */
const RECORD_SUFFIX = '.lock';

/**
 * Every lease record in `dir` that parses (held or not); none when the directory does not
 * exist. A record replaced or removed while being read is read as it is then, or skipped.
 */
export function readAllRecords(dir: string): LeaseRecord[] {
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw fileError('listing the lock directory', dir, dir, error);
  }
  const records: LeaseRecord[] = [];
  for (const file of files) {
    if (!file.endsWith(RECORD_SUFFIX)) continue;
    const record = readRecordFile(join(dir, file), dir);
    if (record) records.push(record);
  }
  return records;
}

/**
 * The record after a forced release of `current` at `now`: no holder, marked released (so
 * the next holder reports no `expired`), the fence kept, and the evicted lease noted so
 * that its holder's next renewal learns it was taken over.
 */
export function evictedRecord(current: LeaseRecord, now: number): LeaseRecord {
  const { hostname, pid } = operatorIdentity();
  return {
    ...current,
    tokenHash: null,
    released: true,
    expiresAt: now,
    evicted: { tokenHash: current.tokenHash ?? '', at: now, hostname, pid, fence: current.fence },
  };
}

/** What a refused renewal with `tokenHash` reports when the record shows no holder: the eviction, or null. */
export function evictionOf(record: LeaseRecord | null, tokenHash: string): LockInfo | null {
  const evicted = record?.evicted;
  if (!record || !evicted || evicted.tokenHash !== tokenHash) return null;
  return evictionHolder(record.name, evicted);
}
