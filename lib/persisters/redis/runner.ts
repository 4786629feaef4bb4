/**
 * How the `RedisPersister` runs its hot scripts (acquire, renew, release, inspect):
 * EVALSHA (EVAL when the server's script cache lost the script), bounded by the
 * persister's operation timeout (one timer for all calls: `Deadlines`), the reply parsed in
 * the same step. Its other calls (`renewMany`'s pipeline, subscriptions, `QUIT`) go through
 * {@link ScriptRunner.timed}: the same deadlines, the same wording of failures. The caller gets
 * one promise — not one per layer (persister method, timeout, script call, parse):
 * each layer of `async` functions costs a promise and a microtask per operation,
 * which on a sequential lock + release loop is a measurable share of the time.
 */
import { PersisterError, toPersisterError } from '../../errors';
import { Deadlines } from '../deadlines';
import { type Arg, isNoScript, type RedisScript, type ScriptClient } from './script';

/** A store error as the persister reports it (for instance naming the last connection error). */
export type ExplainError = (error: unknown) => unknown;

/** Runs scripts (and bounds every other call) on one client with one operation timeout. */
export class ScriptRunner {
  constructor(
    private readonly client: ScriptClient,
    /** Longest wait for one call, ms. */
    private readonly timeoutMs: number,
    /** Turns a driver error into what the caller should read (the persister's own wording). */
    private readonly explain: ExplainError,
  ) {
    this.deadlines = new Deadlines(timeoutMs);
  }

  /** The timeouts of the calls in flight. */
  private readonly deadlines: Deadlines;

  /**
   * Runs `script` on `keys` and `args`; resolves `parse(reply)`. Rejects with a
   * `PersisterError` whose message starts with `what` when the call fails, times out
   * (after `timeoutMs`), or `parse` throws (an unexpected reply).
   */
  run<T>(script: RedisScript, keys: readonly string[], args: readonly Arg[], what: string, parse: (reply: unknown) => T): Promise<T> {
    return this.bounded(what, parse, (answer, fail) => {
      const { client } = this;
      client.evalsha(script.sha1, keys.length, ...keys, ...args).then(answer, (error: unknown) => {
        if (!isNoScript(error)) return fail(error);
        try {
          client.eval(script.source, keys.length, ...keys, ...args).then(answer, fail);
        } catch (thrown) {
          fail(thrown);
        }
      });
    });
  }

  /**
   * Runs any other Redis call (a pipeline, a subscription, `QUIT`) under the same timeout
   * and the same wording of its failures: one timer for everything the persister sends.
   */
  timed<T>(what: string, op: () => Promise<T>): Promise<T> {
    return this.bounded(what, (value: T) => value, (answer, fail) => {
      op().then(answer, fail);
    });
  }

  /**
   * The promise of one call that `send` starts, settled by its first outcome: `answer` (the
   * reply, then `parse`d), `fail`, or the deadline. `send` may throw; that is a failure too.
   */
  private bounded<R, T>(what: string, parse: (reply: R) => T, send: (answer: (reply: R) => void, fail: (error: unknown) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const deadline = this.deadlines.start(() => {
        settled = true;
        reject(
          new PersisterError(
            `${what} timed out after ${this.timeoutMs} ms. Check that Redis is reachable and not overloaded; the operation can be retried.`,
          ),
        );
      });
      const fail = (error: unknown): void => {
        this.deadlines.clear(deadline);
        if (!settled) reject(toPersisterError(what, this.explain(error)));
        settled = true;
      };
      const answer = (reply: R): void => {
        this.deadlines.clear(deadline);
        if (settled) return;
        settled = true;
        try {
          resolve(parse(reply));
        } catch (error) {
          reject(toPersisterError(what, this.explain(error)));
        }
      };
      try {
        send(answer, fail);
      } catch (thrown) {
        fail(thrown);
      }
    });
  }
}
