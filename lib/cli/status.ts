import type { LockInfo } from '../persisters/Persister';
import type { StatusArgs } from './args';
import { ExitCode } from './exitCodes';
import { withStore } from './withStore';

/** The object `singleton-run status --json` prints, on one line. */
export type StatusJson =
  | { name: string; held: false }
  | {
      name: string;
      held: true;
      owner: string;
      hostname: string;
      pid: number;
      /** A decimal string: fencing tokens may exceed what a JSON number holds exactly. */
      fencingToken: string;
      /** ISO 8601. */
      acquiredAt: string;
      /** ISO 8601. */
      expiresAt: string;
    };

/** The `--json` form of a lock's state. */
export function statusJson(name: string, holder: LockInfo | null): StatusJson {
  if (!holder) return { name, held: false };
  return {
    name,
    held: true,
    owner: holder.owner,
    hostname: holder.hostname,
    pid: holder.pid,
    fencingToken: String(holder.fencingToken),
    acquiredAt: holder.acquiredAt.toISOString(),
    expiresAt: holder.expiresAt.toISOString(),
  };
}

/** The human-readable form of a lock's state, ending in a newline. */
export function statusText(name: string, holder: LockInfo | null, now = Date.now()): string {
  if (!holder) return `"${name}" is free\n`;
  const left = holder.expiresAt.getTime() - now;
  const held = Math.max(0, now - holder.acquiredAt.getTime());
  const rows: Array<[string, string]> = [
    ['owner', holder.owner],
    ['host', holder.hostname],
    ['pid', String(holder.pid)],
    ['fencing token', String(holder.fencingToken)],
    ['acquired', `${holder.acquiredAt.toISOString()} (${formatDuration(held)} ago)`],
    left >= 0 ? ['expires in', `${left} ms`] : ['expired', `${-left} ms ago`],
  ];
  return `"${name}" is held by ${holder.owner}\n${rows.map(([k, v]) => `  ${`${k}:`.padEnd(15)}${v}\n`).join('')}`;
}

/** A duration for people: `850 ms`, `42 s`, `17 min`, `3 h 5 min`. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${ms} ms`;
  const s = Math.floor(ms / 1_000);
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/**
 * `singleton-run status --name NAME [--store URL] [--json]`: prints who holds
 * the lock, or that it is free, and resolves 0; 69 when the store cannot be reached.
 */
export async function status(args: StatusArgs): Promise<number> {
  return withStore(args.store, async (persister) => {
    const holder = await persister.inspect(args.name);
    process.stdout.write(args.json ? `${JSON.stringify(statusJson(args.name, holder))}\n` : statusText(args.name, holder));
    return ExitCode.OK;
  });
}
