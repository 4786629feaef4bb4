/**
 * What every store's `list()` and `forceRelease()` share (the operator's view of a store,
 * DESIGN.md §5): the checks of their arguments, the order of a listing, and how an
 * evicted holder is told who evicted it.
 *
 * A forced release ends the lease whoever holds it. The store keeps a small marker
 * naming the evicted lease (a hash of its token, never the token) and who evicted it,
 * so that the evicted holder's next renewal is answered `{ renewed: false, holder }`
 * with {@link evictionHolder}: the holder becomes `lost` with reason `taken-over`
 * rather than `expired`, and the operator's host and pid show in its log line.
 */
import { hostname } from 'node:os';
import { checkName, expected } from '../validate';
import type { ListOptions, LockInfo } from './Persister';

/** The `owner` of the holder reported to a lease evicted by a forced release. */
export const FORCED_RELEASE_OWNER = 'release --force';

/** Who forced a release, and what it ended: what a store keeps beside the fence. */
export interface EvictionRecord {
  /** When the lease was ended, ms since the epoch (store clock). */
  at: number;
  /** Host of the process that forced the release. */
  hostname: string;
  /** Its pid. */
  pid: number;
  /** The fencing token of the evicted lease. */
  fence: bigint | number;
}

/** The host and pid this process records as the operator of a forced release. */
export function operatorIdentity(): { hostname: string; pid: number } {
  return { hostname: hostname(), pid: process.pid };
}

/**
 * The holder a refused renewal reports to the evicted lease when nobody took the lock
 * since: owner {@link FORCED_RELEASE_OWNER}, the operator's host and pid, the evicted
 * lease's fence, and the time of the eviction as both `acquiredAt` and `expiresAt`.
 */
export function evictionHolder(name: string, record: EvictionRecord): LockInfo {
  const at = new Date(record.at);
  return {
    name,
    owner: FORCED_RELEASE_OWNER,
    hostname: record.hostname,
    pid: record.pid,
    fencingToken: record.fence,
    acquiredAt: at,
    expiresAt: new Date(record.at),
  };
}

/**
 * Checks the argument of `list()`: `undefined` or `{ prefix?: string }`.
 * @returns the name prefix to keep ('' for every name).
 * @throws TypeError naming the bad value.
 */
export function checkListOptions(options: ListOptions | undefined): string {
  if (options === undefined) return '';
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(expected('options', 'an object like { prefix }', options));
  }
  const { prefix } = options;
  if (prefix !== undefined && typeof prefix !== 'string') throw new TypeError(expected('options.prefix', 'a string', prefix));
  return prefix ?? '';
}

/** Checks the lock name given to `forceRelease()`, as a `Singleton` checks its own. */
export function checkForceReleaseName(name: unknown): string {
  return checkName(name, 'name');
}

/** Sorts a listing by lock name (code-unit order, the same on every store). */
export function byName(leases: LockInfo[]): LockInfo[] {
  return leases.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
