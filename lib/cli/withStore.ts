import type { Persister } from '../persisters/Persister';
import { redactSecret, UsageError } from './args';
import { ExitCode } from './exitCodes';
import { closeStore, describeStore, oneLine, openStore, say } from './runCommand';

/**
 * Opens the store of `url` (the default file store when `undefined`), resolves what `use`
 * resolves, and closes the store in every case. A store that cannot be opened or reached
 * is one line on stderr and {@link ExitCode.UNAVAILABLE} (69); a bad URL is a `UsageError`.
 * For the one-shot commands (`status`, `list`, `release --force`).
 */
export async function withStore(url: string | undefined, use: (persister: Persister) => Promise<number>): Promise<number> {
  let persister: Persister;
  try {
    persister = await openStore(url);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    say(redactSecret(`cannot use ${describeStore(url)}: ${oneLine(err)}`, url));
    return ExitCode.UNAVAILABLE;
  }
  try {
    return await use(persister);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    say(redactSecret(`cannot reach ${describeStore(url)}: ${oneLine(err)}`, url));
    return ExitCode.UNAVAILABLE;
  } finally {
    await closeStore(persister);
  }
}

/**
 * Says that the store of `url` lacks `method` (a persister with no `capabilities.list`)
 * and resolves {@link ExitCode.UNAVAILABLE}.
 */
export function unsupported(url: string | undefined, what: string): number {
  say(redactSecret(`${describeStore(url)} cannot ${what}: its persister offers no list() / forceRelease() (capabilities.list is not set)`, url));
  return ExitCode.UNAVAILABLE;
}
