/**
 * One Redis Lua script as a value: its source, its SHA1 and how to run it
 * (EVALSHA, with EVAL when the server's script cache lost it). Each operation
 * of the `RedisPersister` defines its script with {@link defineScript} in its
 * own file, next to the typed function that builds its arguments and parses its
 * reply (as redis-semaphore's `createEval` does).
 */
import { createHash } from 'node:crypto';
import { PersisterError } from '../../errors';
import { describeValue } from '../../validate';

/** A key or argument of a script call. */
export type Arg = string | number;

/** What an ioredis pipeline's `exec` resolves: one `[error, reply]` per command. */
export type PipelineReply = Array<[Error | null, unknown]> | null;

/** The slice of ioredis the scripts use (the same on `Redis` and `Cluster`). */
export interface ScriptClient {
  readonly isCluster?: boolean;
  evalsha(sha1: string, numberOfKeys: number, ...args: Arg[]): Promise<unknown>;
  eval(source: string, numberOfKeys: number, ...args: Arg[]): Promise<unknown>;
  script(subcommand: 'LOAD', source: string): Promise<unknown>;
  pipeline(): { evalsha(sha1: string, numberOfKeys: number, ...args: Array<Arg | readonly Arg[]>): unknown; exec(): Promise<PipelineReply> };
}

/** A Lua script with its SHA1, runnable on any {@link ScriptClient}. */
export interface RedisScript {
  /** A short name for messages. */
  readonly name: string;
  /** The Lua source. */
  readonly source: string;
  /** SHA1 of `source`, hex: what EVALSHA takes. */
  readonly sha1: string;
  /**
   * Runs the script by SHA; when the server does not know it (NOSCRIPT: a restart,
   * `SCRIPT FLUSH`, a failover), by EVAL, which also caches it again.
   */
  call(client: ScriptClient, keys: readonly string[], args: readonly Arg[]): Promise<unknown>;
}

/** Defines a script: `source` is hashed once, here. */
export function defineScript(name: string, source: string): RedisScript {
  const sha1 = createHash('sha1').update(source, 'utf8').digest('hex');
  return Object.freeze({
    name,
    source,
    sha1,
    async call(client: ScriptClient, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
      try {
        return await client.evalsha(sha1, keys.length, ...keys, ...args);
      } catch (error) {
        if (!isNoScript(error)) throw error;
        return client.eval(source, keys.length, ...keys, ...args);
      }
    },
  });
}

/** Whether `error` is Redis' NOSCRIPT (the script is not in the server's cache). */
export function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.includes('NOSCRIPT');
}

/**
 * The error for a reply no script of ours gives: something else wrote the keys.
 * `what` starts the message (`Acquiring lock "x"`), as every store error's does.
 */
export function unexpectedReply(what: string, keyPrefix: string, reply: unknown): PersisterError {
  return new PersisterError(
    `${what} failed: unexpected reply ${describeValue(reply)} from Redis. Is another program writing under the key prefix "${keyPrefix}"?`,
  );
}
