import { PersisterError, toPersisterError } from '../errors';

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
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new PersisterError(
          `${what} timed out after ${timeoutMs} ms. Check that Redis is reachable and not overloaded; the operation can be retried.`,
        ),
      );
    }, timeoutMs);
    timer.unref();
    let pending: Promise<T>;
    try {
      pending = op();
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(toPersisterError(what, explain(error)));
      },
    );
  });
}
