import type { Cluster, Redis } from 'ioredis';
import { toPersisterError } from '../errors';
import type { ThreadDescriptor } from '../keepAlive/descriptor';
import { redisThreadDescriptor } from '../keepAlive/redisDescriptor';
import { getDefaultLogger, isLogger, type Logger } from '../logger';
import { checkBoolean, checkInteger, expected } from '../validate';
import type {
  OwnerInfo,
  AcquireRequest,
  AcquireResult,
  ListOptions,
  LockInfo,
  Persister,
  PersisterCapabilities,
  ReleaseRequest,
  RenewRequest,
  RenewResult,
  WatchEnd,
  WatchTurn,
} from './Persister';
import { ACQUIRE_SCRIPT, conflictServerMs, parseAcquireReply } from './redis/acquire';
import { inspectLease } from './redis/inspect';
import { keysOfChannel, type LockKeys, lockKeys, RELEASED_SUFFIX, releaseChannel, turnChannel } from './redis/keys';
import { encodeHolder } from './redis/record';
import { releaseLease } from './redis/release';
import { renewLease } from './redis/renew';
import { renewLeases } from './redis/renewMany';
import type { ScriptClient } from './redis/script';
import { ScriptRunner } from './redis/runner';
import { RedisAdmin } from './redis/admin';
import { type ConfigClient, warnIfLeasesCanBeEvicted } from './redis/evictionPolicy';
import { ReconnectWatcher, type ReconnectingClient } from './redis/reconnect';
import { type Turn, Turns } from './redis/turns';
import { monotonicNow } from '../time';
import { markWatched } from './redis/watch';
import { deliver, RedisChannelSubscriber, SUBSCRIBER_CONNECTION_OPTIONS, type SubscriberConnection } from './RedisChannelSubscriber';

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

/** The slice of ioredis this persister uses (the same on `Redis` and `Cluster`): the scripts' and the connection's. */
interface PersisterClient extends ScriptClient {
  readonly status?: string;
  duplicate(...overrides: unknown[]): SubscriberConnection;
  quit(): Promise<unknown>;
  disconnect(): void;
  on(event: 'error' | 'ready', listener: (error: Error) => void): unknown;
}

function checkClient(client: unknown): PersisterClient {
  const c = client as Record<string, unknown> | null;
  if (!c || typeof c !== 'object' || !['evalsha', 'eval', 'duplicate'].every((m) => typeof c[m] === 'function')) {
    throw new TypeError(expected('client', 'an ioredis Redis or Cluster client', client));
  }
  return client as PersisterClient;
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
  /** Redis decides expiry on its clock, notifies releases, fences, outlives processes and (not on a Cluster) keeps waiters in line. */
  readonly capabilities: PersisterCapabilities;

  /** Prefix of every key and channel. */
  readonly keyPrefix: string;
  /** Longest wait for one store operation, in ms. */
  readonly operationTimeoutMs: number;

  private readonly client: PersisterClient;
  private readonly ownsClient: boolean;

  /** The ioredis client this persister runs on (the `Coalescer` keeps outcomes beside the leases). */
  get redisClient(): Redis | Cluster {
    return this.client as unknown as Redis | Cluster;
  }

  private lastConnectionError: Error | undefined;
  /** Set when the server refused to SELECT the database of a connection we own: every call fails with it. */
  private refusedDatabase: Error | undefined;
  private readonly releases: RedisChannelSubscriber;
  private reconnects: ReconnectWatcher | undefined;
  private readonly logger: Logger;
  private evictionChecked = false;
  private readonly admin: RedisAdmin;
  /** Runs the lease scripts with the operation timeout. */
  private readonly scripts: ScriptRunner;
  private lastKeys: LockKeys | undefined;
  private lastOwner: OwnerInfo | undefined;
  private lastHolder = '';
  /** Waiters in line for a hand-off (`watch` with a turn), by token. */
  private readonly turns = new Turns();

  /**
   * @param client an ioredis `Redis` or `Cluster`; it is never closed unless `ownsClient` is set.
   * @param options see {@link RedisPersisterOptions}.
   * @throws TypeError / RangeError naming a bad client or option.
   */
  constructor(client: Redis | Cluster, options: RedisPersisterOptions = {}) {
    this.client = checkClient(client);
    // Waiters in line need a publish's count of listeners, which on a Cluster covers one node only.
    this.capabilities = Object.freeze({ serverClock: true, notify: true, fencing: true, persistent: true, list: true, queue: !this.client.isCluster });
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
    this.scripts = new ScriptRunner(this.client, this.operationTimeoutMs, (error) => this.explainError(error));
    if (this.ownsClient) {
      // Our own connection: its failures reach callers as PersisterErrors (naming the last
      // connection error), so ioredis must not also print "Unhandled error event" to stderr.
      this.client.on('error', (error: Error) => {
        if (this.refusedDatabase) return;
        this.lastConnectionError = error;
        if (isSelectRefused(error)) {
          // The database index it was given does not exist there: ioredis would go on in
          // database 0, beside whatever else locks there. Stop instead; every call fails, saying why.
          this.refusedDatabase = new Error(`Redis refused the database index in its URL (${error.message}); use an index the server has (its \`databases\` setting)`);
          this.client.disconnect();
        }
      });
      this.client.on('ready', () => {
        if (!this.refusedDatabase) this.lastConnectionError = undefined;
      });
    }
    // After a reconnect every watcher is woken once, as a release may have been missed meanwhile,
    // and the name is marked again, as a restarted Redis may have lost its mark.
    this.releases = new RedisChannelSubscriber(() => this.duplicate(), this.timed.bind(this), (channel, listeners) => {
      if (!channel.endsWith(RELEASED_SUFFIX)) return deliver(listeners, ''); // a turn channel: its waiter tries (and queues) again
      const lock = keysOfChannel(this.keyPrefix, channel);
      const what = `Watching lock "${lock.name}"`;
      this.timed(what, () => markWatched(this.client, lock, what)).catch(() => undefined); // its waiters' next tries mark it too
      deliver(listeners, '');
    });
    this.admin = new RedisAdmin({
      client: this.redisClient,
      keyPrefix,
      keys: (name) => this.keys(name),
      timed: (what, op) => this.timed(what, op),
      inspect: (name) => this.inspect(name),
    });
  }

  /** Take the lease if it is free or expired; otherwise report the holder. */
  acquire(request: AcquireRequest): Promise<AcquireResult> {
    let holder: string;
    try {
      checkInteger('ttlMs', request.ttlMs, 1);
      holder = this.holderOf(request.owner);
    } catch (error) {
      return Promise.reject(error);
    }
    const what = `Acquiring lock "${request.name}"`;
    const found = this.turns.size === 0 ? undefined : this.turns.find(request.token);
    if (found && found.keys.name === request.name) return this.acquireInLine(found, request, holder, what);
    const lock = this.keys(request.name);
    return this.scripts.run(ACQUIRE_SCRIPT, [lock.lease, lock.record], [request.token, request.ttlMs, holder], what, (reply) => {
      this.checkEvictionOnce();
      return parseAcquireReply(lock, request, reply, what);
    });
  }

  /** A waiter in line: a lease handed to it is its answer; otherwise a conflict queues it (and anchors its clock). */
  private acquireInLine(turn: Turn, request: AcquireRequest, holder: string, what: string): Promise<AcquireResult> {
    const granted = this.turns.take(turn);
    if (granted) return Promise.resolve(granted);
    const claimMs = this.turns.queued(turn, request.ttlMs, holder, request.owner);
    const { keys } = turn;
    const sentAt = monotonicNow();
    return this.scripts.run(ACQUIRE_SCRIPT, [keys.lease, keys.record, keys.queue], [request.token, request.ttlMs, holder, 1, claimMs], what, (reply) => {
      this.checkEvictionOnce();
      const result = parseAcquireReply(keys, request, reply, what);
      if (!result.acquired) this.turns.conflicted(turn, sentAt, conflictServerMs(reply), result.holder);
      return result;
    });
  }

  /** Once per persister, once connected (a Cluster knows its masters then), off the acquire's path. */
  private checkEvictionOnce(): void {
    if (this.evictionChecked) return;
    this.evictionChecked = true;
    void warnIfLeasesCanBeEvicted(this.client as unknown as ConfigClient, this.logger);
  }

  /** Extend the lease, only with the holder's token. */
  async renew(request: RenewRequest): Promise<RenewResult> {
    checkInteger('ttlMs', request.ttlMs, 1);
    const what = `Renewing lock "${request.name}"`;
    const result = await renewLease(this.scripts, this.keys(request.name), request, what);
    return this.admin.explain(request, result);
  }

  /**
   * Renews many leases in one round trip (one pipeline). Each slot holds that
   * lease's result or its own `PersisterError`; when the whole batch fails,
   * every slot holds that error. On a Cluster, leases live on several nodes,
   * so the renewals are sent concurrently instead.
   */
  async renewMany(requests: readonly RenewRequest[]): Promise<Array<RenewResult | Error>> {
    for (let i = 0; i < requests.length; i++) checkInteger('ttlMs', requests[i].ttlMs, 1);
    if (requests.length === 0) return [];
    if (this.client.isCluster) return Promise.all(requests.map((r) => this.renew(r).catch((e: unknown) => toPersisterError('Renewing', e))));
    const results: Array<RenewResult | Error | undefined> = new Array(requests.length);
    const what = `Renewing ${requests.length} locks`;
    try {
      await this.timed(what, () => renewLeases(this.client, this.keyPrefix, requests, results));
    } catch (error) {
      const failure = toPersisterError(what, error);
      return requests.map((_, i) => results[i] ?? failure);
    }
    return this.admin.explainAll(requests, results as Array<RenewResult | Error>);
  }

  /** Delete the lease, only with the holder's token; watchers of `name` are notified. */
  release(request: ReleaseRequest): Promise<boolean> {
    return releaseLease(this.scripts, this.keys(request.name), request, `Releasing lock "${request.name}"`);
  }

  /** The current holder, or null when free. Never includes the token. */
  inspect(name: string): Promise<LockInfo | null> {
    return inspectLease(this.scripts, this.keys(name), `Inspecting lock "${name}"`);
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
   * Calls `onRelease` after every release of `name` (and once after the subscriber
   * reconnects, as a release may have been missed). Resolves once the subscription is
   * confirmed; the function it resolves removes this watcher.
   *
   * With a `turn` (not on a Cluster, where a publish cannot tell whether the waiter still
   * listens), the waiter also listens on its own turn channel and its acquires with the
   * turn's token are queued: a release hands the lease to the first waiter in line, and
   * that waiter's next acquire answers with it at once. Ending the watch without `keep`
   * takes the waiter out of the line and gives back a lease handed to it meanwhile.
   */
  async watch(name: string, onRelease: () => void, turn?: WatchTurn): Promise<(end?: WatchEnd) => Promise<void>> {
    const what = `Watching lock "${name}"`;
    const keys = this.keys(name);
    const inLine = turn && this.capabilities.queue === true ? this.turns.open(keys, turn.token) : undefined;
    // Subscribe and mark the name at once (no extra round trip): once both are done, every
    // release is published (the lease is marked) and heard (subscribed). A waiter in line
    // needs no mark: its next acquire, after the subscription, marks the lease it meets (and
    // queues it), and a free lock it takes.
    const marked = inLine ? undefined : this.timed(what, () => markWatched(this.client, keys, what));
    marked?.catch(() => undefined); // awaited below, unless subscribing fails first
    const subscriptions = [this.releases.subscribe(this.channel(name), () => onRelease(), what)];
    if (inLine) {
      const onTurn = (message: string) => {
        this.turns.receive(inLine, message);
        onRelease();
      };
      subscriptions.push(this.releases.subscribe(turnChannel(keys.lease, inLine.token), onTurn, what));
    }
    const stops: Array<() => Promise<void>> = [];
    let stopped: Promise<void> | undefined;
    const stopOnce = async (end?: WatchEnd): Promise<void> => {
      try {
        if (inLine) await this.leaveLine(inLine, end?.keep === true);
      } finally {
        await Promise.all(stops.map((s) => s()));
      }
    };
    const stop = (end?: WatchEnd): Promise<void> => (stopped ??= stopOnce(end));
    const settled = await Promise.allSettled(subscriptions);
    for (const s of settled) if (s.status === 'fulfilled') stops.push(s.value);
    try {
      for (const s of settled) if (s.status === 'rejected') throw s.reason;
      await marked;
    } catch (error) {
      await stop();
      throw error;
    }
    return stop;
  }

  /** Ends a waiter's turn: unless it keeps what it got, out of the line, and a lease handed to it given back (to the next). */
  private async leaveLine(turn: Turn, keep: boolean): Promise<void> {
    this.turns.close(turn);
    if (keep || turn.entry === undefined) return;
    turn.granted = undefined;
    const what = `Leaving the line for lock "${turn.keys.name}"`;
    await releaseLease(this.scripts, turn.keys, { name: turn.keys.name, token: turn.token }, what, turn.entry);
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
    this.turns.clear();
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

  /** The keys of `name` (README: "Redis data model"). */
  private keys(name: string): LockKeys {
    // One entry of memory: a release (or renew) usually follows the acquire of the same name.
    if (this.lastKeys?.name !== name) this.lastKeys = lockKeys(this.keyPrefix, name);
    return this.lastKeys;
  }

  /** The holder part of a fence record for `owner` (remembered for the last owner seen). */
  private holderOf(owner: OwnerInfo): string {
    const last = this.lastOwner;
    if (!last || last.owner !== owner.owner || last.hostname !== owner.hostname || last.pid !== owner.pid) {
      this.lastHolder = encodeHolder(owner);
      this.lastOwner = { owner: owner.owner, hostname: owner.hostname, pid: owner.pid };
    }
    return this.lastHolder;
  }

  private channel(name: string): string {
    return releaseChannel(this.keyPrefix, name);
  }

  /** Races `op` against `operationTimeoutMs` (the scripts' deadlines); any failure becomes a `PersisterError` that says `what` failed. */
  private timed<T>(what: string, op: () => Promise<T>): Promise<T> {
    return this.scripts.timed(what, op);
  }

  /** A driver error as callers read it: naming the last connection error of a connection we own. */
  private explainError(error: unknown): unknown {
    if (this.refusedDatabase) return new Error(this.refusedDatabase.message, { cause: error });
    const connection = this.lastConnectionError;
    return connection ? new Error(`cannot connect to Redis (${connection.message})`, { cause: error }) : error;
  }
}

/** Whether `error` is the server refusing ioredis's `SELECT` of the configured database. */
function isSelectRefused(error: unknown): boolean {
  const command = (error as { command?: { name?: unknown } } | null)?.command;
  return error instanceof Error && error.name === 'ReplyError' && command?.name === 'select';
}

function stripUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}
