/** Waiting for a bench fixture's IPC answers (bench/fixtures/*.ts). */
import type { ChildProcess } from 'node:child_process';

/**
 * The next message from `child` that has `key`; rejects on a message with `error`, when the
 * child exits first, or after `timeoutMs`. `label` names the fixture in those errors.
 */
export function fixtureMessage<T extends object>(child: ChildProcess, key: keyof T & string, timeoutMs: number, label = 'holder fixture'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`${label} sent no "${key}" within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (m: T & { error?: string }) => {
      if (m.error) done(new Error(`${label} failed: ${m.error}`));
      else if (key in m) done(undefined, m);
    };
    const onExit = (code: number | null) => done(new Error(`${label} exited (${code}) before "${key}"`));
    function done(error?: Error, value?: T) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(value as T);
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}
