import { PersisterError } from '../errors';

/**
 * Runs one store operation bounded by `timeoutMs`: resolves its value, or rejects with a
 * `PersisterError` that says `what` failed — timed out (naming `store`), or the
 * operation's own error as `toError` words it. The timer is unref'd and always cleared.
 */
export function withOperationTimeout<T>(
  what: string,
  timeoutMs: number,
  store: string,
  op: () => Promise<T>,
  toError: (error: unknown) => PersisterError,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new PersisterError(
          `${what} timed out after ${timeoutMs} ms. Check that ${store} is reachable and not overloaded; the operation can be retried.`,
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
        reject(toError(error));
      },
    );
  });
}
