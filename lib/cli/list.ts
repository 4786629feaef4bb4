import type { LockInfo, Persister } from '../persisters/Persister';
import type { ListArgs } from './args';
import { ExitCode } from './exitCodes';
import { formatDuration, type StatusJson, statusJson } from './status';
import { unsupported, withStore } from './withStore';

/** One element of the array `singleton-run list --json` prints: a held lock as `status --json` shows it, without `held`. */
export type ListEntryJson = Omit<Extract<StatusJson, { held: true }>, 'held'>;

/** The `--json` form of a listing: one object per held lock, sorted by name. */
export function listJson(locks: readonly LockInfo[]): ListEntryJson[] {
  return locks.map((lock) => {
    const { held: _held, ...entry } = statusJson(lock.name, lock) as Extract<StatusJson, { held: true }>;
    return entry;
  });
}

const COLUMNS = ['NAME', 'OWNER', 'HOST', 'PID', 'FENCE', 'ACQUIRED', 'EXPIRES IN'] as const;

/**
 * The text form of a listing: a header and one aligned line per held lock, or one line
 * saying that none is held (naming the prefix, if any). Ends in a newline.
 */
export function listText(locks: readonly LockInfo[], prefix = '', now = Date.now()): string {
  if (locks.length === 0) return prefix ? `no lock held whose name starts with ${JSON.stringify(prefix)}\n` : 'no lock held\n';
  const rows: string[][] = [
    [...COLUMNS],
    ...locks.map((l) => [
      l.name,
      l.owner,
      l.hostname,
      String(l.pid),
      String(l.fencingToken),
      `${l.acquiredAt.toISOString()} (${formatDuration(Math.max(0, now - l.acquiredAt.getTime()))} ago)`,
      formatDuration(Math.max(0, l.expiresAt.getTime() - now)),
    ]),
  ];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => `${r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ')}\n`).join('');
}

/**
 * `singleton-run list [--store URL] [--prefix P] [--json]`: prints every lock held in the
 * store and resolves 0; 69 when the store cannot be reached or cannot list its locks.
 */
export async function listLocks(args: ListArgs): Promise<number> {
  return withStore(args.store, (persister) => printLocks(persister, args));
}

/** Prints the locks `persister` holds as `args` asks; resolves the exit code (69 when it cannot list). */
export async function printLocks(persister: Persister, args: ListArgs): Promise<number> {
  if (!persister.capabilities.list || !persister.list) return unsupported(args.store, 'list its locks');
  const locks = await persister.list({ prefix: args.prefix });
  process.stdout.write(args.json ? `${JSON.stringify(listJson(locks))}\n` : listText(locks, args.prefix));
  return ExitCode.OK;
}
