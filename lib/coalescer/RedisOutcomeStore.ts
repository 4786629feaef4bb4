import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { PersisterError } from '../errors';
import { RedisChannelSubscriber, SUBSCRIBER_CONNECTION_OPTIONS, type SubscriberConnection } from '../persisters/RedisChannelSubscriber';
import { withRedisTimeout } from '../persisters/redisTimeout';
import { checkInteger, expected } from '../validate';
import type { OutcomeStore } from './OutcomeStore';

type Arg = string | number;

/** The slice of ioredis (`Redis` or `Cluster`) the outcome store uses. */
export interface OutcomeRedisClient {
  /** True on an ioredis `Cluster`. */
  readonly isCluster?: boolean;
  /** `GET key`. */
  get(key: string): Promise<string | null>;
  /** `EVALSHA sha1 numkeys key… arg…`. */
  evalsha(sha1: string, numberOfKeys: number, ...args: Arg[]): Promise<unknown>;
  /** `EVAL source numkeys key… arg…`. */
  eval(source: string, numberOfKeys: number, ...args: Arg[]): Promise<unknown>;
  /** A new connection with the same settings (for pub/sub). */
  duplicate(...overrides: unknown[]): SubscriberConnection;
}

/**
 * Stores an outcome and broadcasts it, in one atomic step.
 * KEYS[1] the outcome key `<prefix>{<key>}:outcome`, also the channel name;
 * ARGV[1] the outcome envelope (JSON); ARGV[2] its lifetime in ms.
 * Returns the number of subscribers the broadcast reached.
 */
const PUT_SCRIPT = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('PUBLISH', KEYS[1], ARGV[1])
`;
const PUT_SHA1 = createHash('sha1').update(PUT_SCRIPT).digest('hex');

/** Options of {@link RedisOutcomeStore}. */
export interface RedisOutcomeStoreOptions {
  /**
   * Prepended to every key and channel, as on the `RedisPersister` the leases live in.
   * @default 'singleton:'
   */
  keyPrefix?: string;
  /**
   * Longest wait for one store operation before it fails with a `PersisterError`.
   * @default 5000
   */
  operationTimeoutMs?: number;
}

/**
 * Outcomes in Redis: the outcome of `key` is a string at `<prefix>{<key>}:outcome`
 * written with `SET … PX resultTtlMs` and, in the same script, `PUBLISH`ed on a channel of
 * the same name. One channel per key, so a process only ever receives the outcomes it
 * waits for. Subscriptions share one duplicated connection per store, opened on first
 * use, with each channel subscribed while at least one waiter listens. Messages missed
 * while that connection was down are covered by the waiters' polling of `get`.
 *
 * @example
 * ```ts
 * const coalescer = new Coalescer(persister, { outcomes: new RedisOutcomeStore(redis, { keyPrefix: 'myapp:' }) });
 * ```
 */
export class RedisOutcomeStore implements OutcomeStore {
  /** Shown in messages and logs. */
  readonly kind = 'redis';
  /** Prefix of every key and channel. */
  readonly keyPrefix: string;
  /** Longest wait for one store operation, in ms. */
  readonly operationTimeoutMs: number;

  private readonly client: OutcomeRedisClient;
  private readonly subscriber: RedisChannelSubscriber;
  private closed = false;

  /**
   * @param client an ioredis `Redis` or `Cluster` (never closed by this store).
   * @param options see {@link RedisOutcomeStoreOptions}.
   */
  constructor(client: Redis | Cluster, options: RedisOutcomeStoreOptions = {}) {
    const c = client as unknown as Record<string, unknown> | null;
    if (!c || typeof c !== 'object' || !['get', 'evalsha', 'eval', 'duplicate'].every((m) => typeof c[m] === 'function')) {
      throw new TypeError(expected('client', 'an ioredis Redis or Cluster client', client));
    }
    this.client = client as unknown as OutcomeRedisClient;
    const { keyPrefix = 'singleton:', operationTimeoutMs = 5_000 } = options;
    if (typeof keyPrefix !== 'string') throw new TypeError(expected('options.keyPrefix', 'a string', keyPrefix));
    this.keyPrefix = keyPrefix;
    this.operationTimeoutMs = checkInteger('options.operationTimeoutMs', operationTimeoutMs, 1, 2 ** 31 - 1);
    // Messages missed while the connection was down are covered by the waiters' polling of `get`.
    this.subscriber = new RedisChannelSubscriber(() => this.duplicate(), this.timed.bind(this));
  }

  /** `SET <prefix>{<key>}:outcome … PX ttlMs` and `PUBLISH` on the channel of that name, in one script. */
  async put(key: string, outcome: string, ttlMs: number): Promise<void> {
    const name = this.outcomeKey(key);
    await this.timed(`Storing the outcome of "${key}"`, async () => {
      try {
        return await this.client.evalsha(PUT_SHA1, 1, name, outcome, ttlMs);
      } catch (error) {
        if (!(error instanceof Error && error.message.includes('NOSCRIPT'))) throw error;
        return this.client.eval(PUT_SCRIPT, 1, name, outcome, ttlMs);
      }
    });
  }

  /** The stored outcome of `key` (Redis expires it), or `null`. */
  async get(key: string): Promise<string | null> {
    return this.timed(`Reading the outcome of "${key}"`, () => this.client.get(this.outcomeKey(key)));
  }

  /** Listens on the channel of `key` (shared connection, one subscription per channel); resolves once subscribed. */
  async subscribe(key: string, onOutcome: (outcome: string) => void): Promise<() => Promise<void>> {
    if (this.closed) throw new PersisterError(`Subscribing to the outcome of "${key}" failed: the Coalescer is closed.`);
    return this.subscriber.subscribe(this.outcomeKey(key), onOutcome, `Subscribing to the outcome of "${key}"`);
  }

  /** Closes the subscriber connection (never the client passed in). */
  async close(): Promise<void> {
    this.closed = true;
    this.subscriber.close();
  }

  /** `<prefix>{<key>}:outcome`: in the lease's Cluster slot; also the channel's name. */
  outcomeKey(key: string): string {
    return `${this.keyPrefix}{${key}}:outcome`;
  }

  /** A connection for pub/sub with the client's settings (see SUBSCRIBER_CONNECTION_OPTIONS). */
  private duplicate(): SubscriberConnection {
    const override = { ...SUBSCRIBER_CONNECTION_OPTIONS };
    return this.client.isCluster ? this.client.duplicate([], override) : this.client.duplicate(override);
  }

  private timed<T>(what: string, op: () => Promise<T>): Promise<T> {
    return withRedisTimeout(what, this.operationTimeoutMs, op);
  }
}

