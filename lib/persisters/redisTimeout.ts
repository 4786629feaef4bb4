import { toPersisterError } from '../errors';
import { withOperationTimeout } from './operationTimeout';

/**
 * Runs one Redis operation bounded by `timeoutMs`: resolves its value, or rejects
 * with a `PersisterError` that says `what` failed (timed out, or the driver's
 * error, optionally re-described by `explain`, e.g. with the last connection error).
 * The timer is unref'd and always cleared.
 */
export function withRedisTimeout<T>(
  what: string,
  timeoutMs: number,
  op: () => Promise<T>,
  explain: (error: unknown) => unknown = (error) => error,
): Promise<T> {
  return withOperationTimeout(what, timeoutMs, 'Redis', op, (error) => toPersisterError(what, explain(error)));
}
