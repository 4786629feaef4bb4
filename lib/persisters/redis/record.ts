/**
 * The fence record of a lock (README: "Redis data model"): a STRING at
 * `<prefix>{<name>}:fence`, written whole by the acquire that starts a lease:
 *
 * ```
 * <state><watched>\n<fence>\n<acquiredAt ms>\n<pid>\n<hostname>\n<owner>
 * ```
 * - `state`: `h` for a lease that was never released (held, or expired), `r` once released;
 * - `watched`: `w` when someone watched the name (releases are then published), else `-`;
 * - `fence`: the last fencing token handed out for the name (decimal);
 * - the rest describes the lease that token was handed to; `owner` is last, so it may
 *   hold any character (the hostname holds no line break).
 *
 * Its expiry is kept exactly `FENCE_RECORD_TTL_MS` (24 h) past the lease it describes
 * (acquire and renew set both), so the lease's expiry is `record PTTL − 24 h` even after
 * the lease key is gone. The record outlives the lease, and with it the fence counter.
 */
import type { LockInfo, OwnerInfo } from '../Persister';
import { expected } from '../../validate';

/** A fence record, read. */
export interface FenceRecord {
  /** The lease it describes was released (not merely expired). */
  released: boolean;
  /** Someone watched the name: releases of its leases are published. */
  watched: boolean;
  /** The last fencing token handed out for the name. */
  fence: number;
  /** When that lease was acquired, ms since the epoch (server clock). */
  acquiredAt: number;
  pid: number;
  hostname: string;
  owner: string;
}

/**
 * The holder part of a record, as the acquire script receives it: `pid\nhostname\nowner`.
 * @throws TypeError when the hostname holds a line break (the record's separator).
 */
export function encodeHolder(owner: OwnerInfo): string {
  if (owner.hostname.includes('\n')) throw new TypeError(expected('owner.hostname', 'a host name without line breaks', owner.hostname));
  return `${owner.pid}\n${owner.hostname}\n${owner.owner}`;
}

/** Reads a record; null when `raw` is not one (empty: no record; or written by something else). */
export function parseRecord(raw: string): FenceRecord | null {
  const fields = raw.split('\n');
  if (fields.length < 6 || fields[0].length !== 2) return null;
  const [head, fence, at, pid, hostname] = fields;
  return {
    released: head[0] === 'r',
    watched: head[1] === 'w',
    fence: Number(fence),
    acquiredAt: Number(at),
    pid: Number(pid),
    hostname,
    owner: fields.slice(5).join('\n'),
  };
}

/**
 * The lease a record describes, expiring at `expiresAtMs`. A record that is missing
 * or unreadable (deleted by hand, evicted) gives empty fields, as the lease is real.
 */
export function holderFromRecord(name: string, raw: string, expiresAtMs: number): LockInfo {
  const record = parseRecord(raw);
  return {
    name,
    owner: record?.owner ?? '',
    hostname: record?.hostname ?? '',
    pid: record?.pid ?? 0,
    fencingToken: record?.fence ?? 0,
    acquiredAt: new Date(record?.acquiredAt ?? 0),
    expiresAt: new Date(expiresAtMs),
  };
}

/** Whether `reply` is a holder reply of the scripts: `[record, expiresAtMs]`. */
export function isHolderReply(reply: unknown): reply is [string, number] {
  return Array.isArray(reply) && reply.length === 2 && typeof reply[0] === 'string' && typeof reply[1] === 'number';
}
