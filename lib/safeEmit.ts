import type { EventEmitter } from 'node:events';

/**
 * Calls every listener of `event` with `payload`, each on its own: a listener that throws
 * neither stops the listeners after it nor the library code that emitted. Its error is not
 * swallowed: it is thrown again in a tick of its own, so it surfaces as an uncaught
 * exception exactly as a throwing callback does anywhere in Node. (`once` listeners are
 * called through their wrappers, so they still remove themselves.)
 *
 * Returns whether anyone listened.
 */
export function safeEmit(emitter: EventEmitter, event: string, payload: unknown): boolean {
  if (emitter.listenerCount(event) === 0) return false;
  const listeners = emitter.rawListeners(event) as Array<(this: EventEmitter, arg: unknown) => unknown>;
  if (listeners.length === 0) return false;
  for (const listener of listeners) {
    try {
      listener.call(emitter, payload);
    } catch (err) {
      rethrowLater(err);
    }
  }
  return true;
}

/** Throws `err` in a tick of its own: reported as uncaught, never swallowed, never in our stack. */
export function rethrowLater(err: unknown): void {
  process.nextTick(() => {
    throw err;
  });
}

/** Runs `fn`, re-throwing anything it throws in a tick of its own (see {@link rethrowLater}). */
export function isolated(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    rethrowLater(err);
  }
}
