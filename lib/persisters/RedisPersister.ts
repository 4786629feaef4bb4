import type { Cluster, Redis } from 'ioredis';
import { PersisterError, toPersisterError } from '../errors';
import { redisThreadDescriptor } from '../keepAlive/redisDescriptor';
import type { ThreadDescriptor } from '../keepAlive/descriptor';
import { checkBoolean, checkInteger, describeValue, expected } from '../validate';
import { getDefaultLogger, isLogger, type Logger } from '../logger';
import { type ConfigClient, warnIfLeasesCanBeEvicted } from './redis/evictionPolicy';
import { ReconnectWatcher, type ReconnectingClient } from './redis/reconnect';
import { deliver, RedisChannelSubscriber, SUBSCRIBER_CONNECTION_OPTIONS, type SubscriberConnection } from './RedisChannelSubscriber';
import { RedisAdmin } from './redis/admin';
import { withRedisTimeout } from './redisTimeout';
import type {
  AcquireRequest,
  AcquireResult,
  ListOptions,
  LockInfo,
  Persister,
  PersisterCapabilities,
  ReleaseRequest,
  RenewRequest,
  RenewResult,
} from './Persister';
import {
  ACQUIRE_SCRIPT,
  INSPECT_SCRIPT,
  RELEASE_SCRIPT,
  RENEW_MANY_CHUNK,
  RENEW_MANY_SCRIPT,
  RENEW_SCRIPT,
  type RedisScript,
} from './redisScripts';

/** Options of {@link RedisPersister}. */
export interface RedisPersisterOptions {
  /**
   * Prepended to every key and channel; the lock name follows in braces (a Cluster hash tag).
   * @default 'singleton:'
   */
  keyPrefix?: string;
  /**
   * Longest wait for one store operation before it fails with a `PersisterError`.
   * @default 5000
   */
  operationTimeoutMs?: number;
  /**
   * Whether `close()` also quits the client passed in. `persisterFromUrl` sets it for the client it made.
   * @default false
   */
  ownsClient?: boolean;
  /**
   * Where the persister logs (once: a warning when Redis may evict leases). Any pino-compatible logger.
   * @default the library's pino logger (level from SINGLETON_LOG_LEVEL, else warn)
   */
  logger?: Logger;
}

/** Defaults of {@link RedisPersisterOptions}. */
export const REDIS_PERSISTER_DEFAULTS = Object.freeze({
  keyPrefix: 'singleton:',
  operationTimeoutMs: 5_000,
  ownsClient: false,
});

type Arg = string | number;
type PipelineReply = Array<[Error | null, unknown]> | null;

/** The slice of ioredis this persister uses (the same on `Redis` and `Cluster`). */
interface ScriptClient {
  readonly isCluster?: boolean;
  readonly status?: string;
  evalsha(sha1: string, numberOfKeys: number, ...args: Arg[]): Promise<unknown>;
  eval(source: string, numberOfKeys: number, ...args: Arg[]): Promise<unknown>;
  script(subcommand: 'LOAD', source: string): Promise<unknown>;
  pipeline(): { evalsha(sha1: string, numberOfKeys: number, ...args: Arg[]): unknown; exec(): Promise<PipelineReply> };
  duplicate(...overrides: unknown[]): SubscriberConnection;
  quit(): Promise<unknown>;
  disconnect(): void;
  on(event: 'error' | 'ready', listener: (error: Error) => void): unknown;
}

/** The lock's holder as the scripts return it: owner, host, pid, fence, at, exp. */
function holderFrom(name: string, reply: readonly string[], offset: number): LockInfo {
  const [owner, hostname, pid, fence, at, exp] = reply.slice(offset, offset + 6);
  return {
    name,
    owner,
    hostname,
    pid: Number(pid),
    fencingToken: Number(fence),
    acquiredAt: new Date(Number(at)),
    expiresAt: new Date(Number(exp)),
  };
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.includes('NOSCRIPT');
}

function checkClient(client: unknown): ScriptClient {
  const c = client as Record<string, unknown> | null;
  if (!c || typeof c !== 'object' || !['evalsha', 'eval', 'duplicate'].every((m) => typeof c[m] === 'function')) {
    throw new TypeError(expected('client', 'an ioredis Redis or Cluster client', client));
  }
  return client as ScriptClient;
}

/**
 * Leases in Redis (standalone, Sentinel or Cluster through ioredis): one Lua
 * script per operation, times from the server's clock, fencing tokens seeded
 * from the server's time in µs, release notifications by pub/sub.
 *
 * @example
 * ```ts
 * const persister = new RedisPersister(new Redis(url), { keyPrefix: 'myapp:' });
 * ```
 */
export class RedisPersister implements Persister {
  /** Redis decides expiry on its clock, notifies releases, fences and outlives processes. */
  readonly capabilities: PersisterCapabilities = Object.freeze({
    serverClock: true,
    notify: true,
    fencing: true,
    persistent: true,
    list: true,
  });

  /** Prefix of every key and channel. */
  readonly keyPrefix: string;
  /** Longest wait for one store operation, in ms. */
  readonly operationTimeoutMs: number;

  private readonly client: ScriptClient;
  private readonly ownsClient: boolean;

  /** The ioredis client this persister runs on (the `Coalescer` keeps outcomes beside the leases). */
  get redisClient(): Redis | Cluster {
    return this.client as unknown as Redis | Cluster;
  }

  private lastConnectionError: Error | undefined;
  private readonly releases: RedisChannelSubscriber;
  private reconnects: ReconnectWatcher | undefined;
  private readonly logger: Logger;
  private evictionChecked = false;
  private readonly admin: RedisAdmin;

  /**
   * @param client an ioredis `Redis` or `Cluster`; it is never closed unless `ownsClient` is set.
   * @param options see {@link RedisPersisterOptions}.
   * @throws TypeError / RangeError naming a bad client or option.
   */
  constructor(client: Redis | Cluster, options: RedisPersisterOptions = {}) {
    this.client = checkClient(client);
    if (options === null || typeof options !== 'object') {
      throw new TypeError(expected('options', 'an object', options));
    }
    const { keyPrefix, operationTimeoutMs, ownsClient } = { ...REDIS_PERSISTER_DEFAULTS, ...stripUndefined(options) };
    if (typeof keyPrefix !== 'string' || /[{}]/.test(keyPrefix)) {
      // Braces in the prefix would move the Cluster hash tag away from the lock name.
      throw new TypeError(expected('options.keyPrefix', 'a string without { or }', keyPrefix));
    }
    this.keyPrefix = keyPrefix;
    this.operationTimeoutMs = checkInteger('options.operationTimeoutMs', operationTimeoutMs, 1, 2 ** 31 - 1);
    this.ownsClient = checkBoolean('options.ownsClient', ownsClient);
    if (options.logger !== undefined && !isLogger(options.logger)) {
      throw new TypeError(expected('options.logger', 'a pino-compatible logger (with debug, info, warn and error methods)', options.logger));
    }
    this.logger = options.logger ?? getDefaultLogger();
    if (this.ownsClient) {
      // Our own connection: its failures reach callers as PersisterErrors (naming the last
      // connection error), so ioredis must not also print "Unhandled error event" to stderr.
      this.client.on('error', (error: Error) => {
        this.lastConnectionError = error;
      });
      this.client.on('ready', () => {
        this.lastConnectionError = undefined;
      });
    }
    // After a reconnect every watcher is woken once: a release may have been missed meanwhile.
    this.releases = new RedisChannelSubscriber(() => this.duplicate(), this.timed.bind(this), (_channel, listeners) =>
      deliver(listeners, ''),
    );
    this.admin = new RedisAdmin({
      client: this.redisClient,
      keyPrefix,
      keys: (name) => this.keys(name),
      channel: (name) => this.channel(name),
      run: (what, script, keys, args) => this.run(what, script, keys, args),
      timed: (what, op) => this.timed(what, op),
      inspect: (name) => this.inspect(name),
    });
  }

  /** Take the lease if it is free or expired; otherwise report the holder. */
  async acquire({ name, token, ttlMs, owner }: AcquireRequest): Promise<AcquireResult> {
    checkInteger('ttlMs', ttlMs, 1);
    const what = `Acquiring lock "${name}"`;
    const args = [token, ttlMs, owner.owner, owner.hostname, owner.pid];
    const raw = await this.run(what, ACQUIRE_SCRIPT, this.keys(name), args);
    if (!this.evictionChecked) {
      // Once per persister, once connected (a Cluster knows its masters then), off the acquire's path.
      this.evictionChecked = true;
      void warnIfLeasesCanBeEvicted(this.client as unknown as ConfigClient, this.logger);
    }
    if (!Array.isArray(raw)) throw this.unexpected(what, raw);
    const reply = raw as string[];
    if (reply[0] === 'HELD') return { acquired: false, holder: holderFrom(name, reply, 1) };
    if (reply[0] !== 'ACQUIRED') throw this.unexpected(what, reply);
    const [, fence, at, exp] = reply;
    const lease: LockInfo = {
      name,
      owner: owner.owner,
      hostname: owner.hostname,
      pid: owner.pid,
      fencingToken: Number(fence),
      acquiredAt: new Date(Number(at)),
      expiresAt: new Date(Number(exp)),
    };
    return reply.length > 4 ? { acquired: true, lease, expired: holderFrom(name, reply, 4) } : { acquired: true, lease };
  }

  /** Extend the lease, only with the holder's token. */
  async renew(request: RenewRequest): Promise<RenewResult> {
    checkInteger('ttlMs', request.ttlMs, 1);
    const what = `Renewing lock "${request.name}"`;
    const reply = await this.run(what, RENEW_SCRIPT, this.keys(request.name), [request.token, request.ttlMs]);
    return this.admin.explain(request, this.parseRenew(what, request.name, reply));
  }

  /**
   * Renews many leases in one round trip (one pipeline). Each slot holds that
   * lease's result or its own `PersisterError`; when the whole batch fails,
   * every slot holds that error. On a Cluster, leases live on several nodes,
   * so the renewals are sent concurrently instead.
   */
  async renewMany(requests: readonly RenewRequest[]): Promise<Array<RenewResult | Error>> {
    for (const r of requests) checkInteger('ttlMs', r.ttlMs, 1);
    if (requests.length === 0) return [];
    if (this.client.isCluster) return Promise.all(requests.map((r) => this.renew(r).catch((e: unknown) => toPersisterError('Renewing', e))));
    const results: Array<RenewResult | Error | undefined> = new Array(requests.length);
    try {
      await this.timed(`Renewing ${requests.length} locks`, () => this.renewBatch(requests, results));
    } catch (error) {
      const failure = toPersisterError(`Renewing ${requests.length} locks`, error);
      return requests.map((_, i) => results[i] ?? failure);
    }
    return this.admin.explainAll(requests, results as Array<RenewResult | Error>);
  }

  /** Delete the lease, only with the holder's token; watchers of `name` are notified. */
  async release({ name, token }: ReleaseRequest): Promise<boolean> {
    const reply = await this.run(`Releasing lock "${name}"`, RELEASE_SCRIPT, this.keys(name), [token, this.channel(name)]);
    return reply === 1;
  }

  /** The current holder, or null when free. Never includes the token. */
  async inspect(name: string): Promise<LockInfo | null> {
    const reply = await this.run(`Inspecting lock "${name}"`, INSPECT_SCRIPT, this.keys(name), []);
    if (!Array.isArray(reply)) throw this.unexpected(`Inspecting lock "${name}"`, reply);
    return reply.length === 0 ? null : holderFrom(name, reply as string[], 0);
  }

  /** Every lease held now, sorted by name (SCAN over the key prefix; every master of a Cluster). */
  list(options?: ListOptions): Promise<LockInfo[]> {
    return this.admin.list(options);
  }

  /**
   * Ends the lease of `name` whoever holds it, keeping the fence (the next lease's is higher);
   * watchers are notified and the evicted holder's next renewal reports `taken-over`.
   * Resolves the evicted holder, or `null` when nothing was held.
   */
  forceRelease(name: string): Promise<LockInfo | null> {
    return this.admin.forceRelease(name);
  }

  /**
   * Calls `onRelease` after every release of `name` (and once after the
   * subscriber reconnects, as a release may have been missed). Resolves once
   * the subscription is confirmed; the function it resolves removes this watcher.
   */
  watch(name: string, onRelease: () => void): Promise<() => Promise<void>> {
    return this.releases.subscribe(this.channel(name), () => onRelease(), `Watching lock "${name}"`);
  }

  /**
   * Calls `listener` each time the client's connection comes back after a drop (not on its
   * first connect): a restarted Redis may have forgotten every lease. Returns the stop function.
   */
  onReconnect(listener: () => void): () => void {
    return (this.reconnects ??= new ReconnectWatcher(this.client as unknown as ReconnectingClient)).add(listener);
  }

  /**
   * How the keep-alive thread (`keepAlive: 'thread'`) reaches this Redis on its own
   * connection: the client's options (standalone or Sentinel), or the Cluster's
   * startup nodes and options; TLS and credentials included. Options that are
   * functions (a custom `retryStrategy`, `natMap` as a function…) cannot cross
   * threads: the thread's connection uses the defaults instead, and says so in the log.
   */
  threadDescriptor(): ThreadDescriptor {
    return redisThreadDescriptor(this.client, { keyPrefix: this.keyPrefix, operationTimeoutMs: this.operationTimeoutMs });
  }

  /** Closes the subscriber connection this persister opened, and the client too if `ownsClient`. */
  async close(): Promise<void> {
    this.releases.close();
    if (!this.ownsClient) return;
    if (this.client.status !== 'ready') return this.client.disconnect(); // nothing to flush: QUIT would only queue
    try {
      await this.timed('Closing the Redis connection', () => this.client.quit());
    } catch {
      this.client.disconnect(); // quit could not finish (store gone or slow): drop the connection
    }
  }

  /** A connection for pub/sub with the client's settings (see SUBSCRIBER_CONNECTION_OPTIONS). */
  private duplicate(): SubscriberConnection {
    const override = { ...SUBSCRIBER_CONNECTION_OPTIONS };
    return this.client.isCluster ? this.client.duplicate([], override) : this.client.duplicate(override);
  }

  /** Lease key: `<prefix>{<name>}`. */
  private leaseKey(name: string): string {
    // A name starting with '}' would leave the Cluster hash tag empty: Redis would hash whole
    // keys and a lock's keys could land in different slots. Give such a tag a first character
    // that no valid lock name has (control characters are refused by Singleton).
    return name.startsWith('}') ? `${this.keyPrefix}{\u0001${name}}` : `${this.keyPrefix}{${name}}`;
  }

  private keys(name: string): string[] {
    const lease = this.leaseKey(name);
    return [lease, `${lease}:fence`];
  }

  private channel(name: string): string {
    return `${this.leaseKey(name)}:released`;
  }

  private parseRenew(what: string, name: string, reply: unknown): RenewResult {
    if (Array.isArray(reply) && reply[0] === 'RENEWED') return { renewed: true, expiresAt: new Date(Number(reply[1])) };
    if (Array.isArray(reply) && reply[0] === 'NOT_HELD') {
      return { renewed: false, holder: reply.length > 1 ? holderFrom(name, reply as string[], 1) : null };
    }
    throw this.unexpected(what, reply);
  }

  /**
   * Sends the batch as ONE pipeline of RENEW_MANY calls of up to `RENEW_MANY_CHUNK`
   * leases of one length each: one command (one ioredis Command and promise)
   * per hundred leases rather than per lease, and one integer back per renewed
   * lease, which is what keeps thousands of held leases cheap for the client.
   * Chunks that met NOSCRIPT are retried once after SCRIPT LOAD.
   */
  private async renewBatch(requests: readonly RenewRequest[], results: Array<RenewResult | Error | undefined>): Promise<void> {
    const byTtl = new Map<number, number[]>();
    requests.forEach(({ ttlMs }, i) => {
      const group = byTtl.get(ttlMs);
      if (group) group.push(i);
      else byTtl.set(ttlMs, [i]);
    });
    let pending: number[][] = []; // chunks of request indexes, one ttl each
    for (const group of byTtl.values()) {
      for (let start = 0; start < group.length; start += RENEW_MANY_CHUNK) pending.push(group.slice(start, start + RENEW_MANY_CHUNK));
    }
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 0) {
        // The script cache was emptied (restart, SCRIPT FLUSH): reload the single-lease renewal too,
        // which the lease keeper sends for a lone lease, so it does not meet NOSCRIPT next.
        await Promise.all([this.client.script('LOAD', RENEW_MANY_SCRIPT.source), this.client.script('LOAD', RENEW_SCRIPT.source)]);
      }
      const pipeline = this.client.pipeline();
      for (const chunk of pending) {
        const keys: Arg[] = [];
        const args: Arg[] = [requests[chunk[0]].ttlMs];
        for (const i of chunk) {
          const lease = this.leaseKey(requests[i].name);
          keys.push(lease, `${lease}:fence`);
          args.push(requests[i].token);
        }
        pipeline.evalsha(RENEW_MANY_SCRIPT.sha1, keys.length, ...keys, ...args);
      }
      const replies = await pipeline.exec();
      if (!replies || replies.length !== pending.length) throw new Error('the pipeline returned no replies');
      const missing: number[][] = [];
      replies.forEach(([error, reply], j) => {
        const chunk = pending[j];
        if (error && isNoScript(error) && attempt === 0) {
          missing.push(chunk);
          return;
        }
        chunk.forEach((i, k) => {
          const { name } = requests[i];
          if (error) results[i] = toPersisterError(`Renewing lock "${name}"`, error);
          else results[i] = this.renewResult(name, Array.isArray(reply) ? (reply[k] as unknown) : reply);
        });
      });
      pending = missing;
    }
  }

  /** One lease's slot of a RENEW_MANY reply; the message is only built when something went wrong. */
  private renewResult(name: string, reply: unknown): RenewResult | Error {
    if (typeof reply === 'number') return { renewed: true, expiresAt: new Date(reply) };
    const what = `Renewing lock "${name}"`;
    if (Array.isArray(reply) && reply[0] === 'ERROR') return toPersisterError(what, new Error(String(reply[1])));
    try {
      return this.parseRenew(what, name, reply);
    } catch (parseError) {
      return toPersisterError(what, parseError);
    }
  }

  /** Runs a script by SHA (EVAL on NOSCRIPT), bounded by the operation timeout; failures become `PersisterError`. */
  private async run(what: string, script: RedisScript, keys: string[], args: Arg[]): Promise<unknown> {
    return this.timed(what, async () => {
      try {
        return await this.client.evalsha(script.sha1, script.numberOfKeys, ...keys, ...args);
      } catch (error) {
        if (!isNoScript(error)) throw error;
        return this.client.eval(script.source, script.numberOfKeys, ...keys, ...args);
      }
    });
  }

  /** Races `op` against `operationTimeoutMs`; any failure becomes a `PersisterError` that says `what` failed. */
  private timed<T>(what: string, op: () => Promise<T>): Promise<T> {
    return withRedisTimeout(what, this.operationTimeoutMs, op, (error) => {
      const connection = this.lastConnectionError;
      return connection ? new Error(`cannot connect to Redis (${connection.message})`, { cause: error }) : error;
    });
  }

  private unexpected(what: string, reply: unknown): PersisterError {
    return new PersisterError(
      `${what} failed: unexpected reply ${describeValue(reply)} from Redis. Is another program writing under the key prefix "${this.keyPrefix}"?`,
    );
  }
}


function stripUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * One pub/sub connection shared by every watcher of one persister: a channel
 * is subscribed while it has at least one watcher. After a reconnect, every
 * watcher is called once, since a release may have been missed meanwhile.
 */
