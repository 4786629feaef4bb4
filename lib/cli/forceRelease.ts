import { hostname, userInfo } from 'node:os';
import pino from 'pino';
import type { LockInfo } from '../persisters/Persister';
import { describeHolder } from '../Singleton';
import { type ForceReleaseArgs, PROGRAM } from './args';
import { ExitCode } from './exitCodes';
import { describeStore } from './runCommand';
import { unsupported, withStore } from './withStore';

/** Who ran `release --force`: the user, host and pid the audit line names. */
export interface Operator {
  /** The OS user name (`$USER` where the OS cannot tell). */
  user: string;
  /** This host. */
  hostname: string;
  /** This process. */
  pid: number;
}

/** The operator running this process. */
export function currentOperator(): Operator {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
  return { user, hostname: hostname(), pid: process.pid };
}

/** The one audit line of a forced release: who forced it, and the holder it evicted (or that none was). */
export function auditLine(name: string, evicted: LockInfo | null, operator: Operator, store: string): string {
  const by = `${operator.user}@${operator.hostname} (pid ${operator.pid})`;
  if (!evicted) return `release --force of "${name}" in ${store} by ${by}: it was not held, nothing released`;
  return `release --force of "${name}" in ${store} by ${by}: evicted ${describeHolder(evicted)}`;
}

/**
 * `singleton-run release --force --name NAME [--store URL]`: ends the lease of NAME whoever
 * holds it. Prints the audit line on stdout and logs it as one JSON line (pino, level warn,
 * whatever `SINGLETON_LOG_LEVEL` says) on stderr. Resolves 0 (also when nothing was held);
 * 69 when the store cannot be reached or offers no forced release.
 */
export async function forceRelease(args: ForceReleaseArgs): Promise<number> {
  return withStore(args.store, async (persister) => {
    if (!persister.capabilities.list || !persister.forceRelease) return unsupported(args.store, 'force a release');
    const evicted = await persister.forceRelease(args.name);
    const operator = currentOperator();
    const line = auditLine(args.name, evicted, operator, describeStore(args.store));
    process.stdout.write(`${line}\n`);
    auditLogger().warn(
      {
        audit: 'release --force',
        lock: args.name,
        operator,
        evicted: evicted && { ...evicted, fencingToken: String(evicted.fencingToken) },
      },
      line,
    );
    return ExitCode.OK;
  });
}

/** pino on stderr, at `SINGLETON_LOG_LEVEL` when that is more verbose than warn, else warn: an audit line is never filtered out. */
function auditLogger(): pino.Logger {
  const destination = pino.destination({ fd: 2, sync: true });
  const wanted = process.env.SINGLETON_LOG_LEVEL;
  const level = wanted && ['trace', 'debug', 'info'].includes(wanted) ? wanted : 'warn';
  return pino({ name: PROGRAM, level }, destination);
}
