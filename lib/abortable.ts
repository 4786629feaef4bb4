/**
 * Settles like `promise`, or rejects with `signal.reason` as soon as `signal` aborts,
 * whichever comes first. The abort listener is removed either way.
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Resolves after `ms`, or rejects with `signal.reason` when it aborts first. Like any wait the
 * program awaits, its timer keeps the process alive (a standby's backoff between two runs of
 * its task is all the process does then); an abort clears it.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * One controller for a wait bounded by the caller's `signal` and `timeoutMs`: it aborts with
 * an `AbortError` (the caller's reason when it is an Error) or a `TimeoutError`. Call
 * `dispose()` when the wait is over, to clear the timer and the listener.
 */
export function waitController(
  limits: { signal?: AbortSignal; timeoutMs?: number },
  onTimeout: () => Error,
  onAbort: (reason: unknown) => Error,
): { controller: AbortController; dispose(): void } {
  const controller = new AbortController();
  const { signal, timeoutMs } = limits;
  const abortFromCaller = () => controller.abort(onAbort(signal?.reason));
  if (signal?.aborted) abortFromCaller();
  else signal?.addEventListener('abort', abortFromCaller, { once: true });
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => controller.abort(onTimeout()), timeoutMs);
  return {
    controller,
    dispose() {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', abortFromCaller);
    },
  };
}
