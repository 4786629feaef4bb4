/**
 * How a persister describes itself to another thread, so the keep-alive thread
 * (`keepAlive: 'thread'`, DESIGN.md §9) can open its OWN connection to the same
 * store. A description is plain data (it crosses threads by structured clone):
 * no functions, no sockets, no class instances but `Buffer`s and typed arrays.
 */
import { expected } from '../validate';

/** Redis through ioredis: a standalone server or Sentinel group (`new Redis(options)`). */
export interface RedisThreadDescriptor {
  /** Which store this describes. */
  kind: 'redis';
  /** The ioredis options of the client, functions left out (see {@link ThreadDescriptorBase.dropped}). */
  options: Record<string, unknown>;
  /** The persister's key prefix. */
  keyPrefix: string;
  /** The persister's operation timeout, ms. */
  operationTimeoutMs: number;
}

/** Redis Cluster through ioredis (`new Cluster(startupNodes, options)`). */
export interface RedisClusterThreadDescriptor {
  /** Which store this describes. */
  kind: 'redis-cluster';
  /** The nodes the cluster client was started with. */
  startupNodes: unknown[];
  /** The cluster options (with their `redisOptions`), functions left out. */
  options: Record<string, unknown>;
  /** The persister's key prefix. */
  keyPrefix: string;
  /** The persister's operation timeout, ms. */
  operationTimeoutMs: number;
}

/** A store URL, opened with `persisterFromUrl(url, options)` (redis:, rediss:, mongodb:, mongodb+srv:, file:). */
export interface UrlThreadDescriptor {
  /** Which store this describes. */
  kind: 'url';
  /** The URL the persister was made from. */
  url: string;
  /** Its `PersisterFromUrlOptions`, functions left out. */
  options: Record<string, unknown>;
}

/** A MongoDB collection reached by a connection string. */
export interface MongoThreadDescriptor {
  /** Which store this describes. */
  kind: 'mongodb';
  /** The connection string the `MongoClient` was made with. */
  url: string;
  /** Database name. */
  database: string;
  /** Collection name. */
  collection: string;
  /** The persister's write concern. */
  writeConcern: Record<string, unknown>;
}

/** The file store: a directory on this host. */
export interface FileThreadDescriptor {
  /** Which store this describes. */
  kind: 'file';
  /** Absolute directory of the lock files. */
  dir: string;
}

/**
 * Any other store: a module the worker `require`s (an absolute path or a package
 * name), whose export `factory` (default `createPersister`) is called with
 * `argument` and returns the persister (or a promise of it). A custom persister
 * (or the PostgreSQL one, from its connection string) describes itself this way.
 */
export interface ModuleThreadDescriptor {
  /** Which store this describes. */
  kind: 'module';
  /** Absolute path or package name, as `require` takes it. */
  module: string;
  /** The exported factory's name. @default 'createPersister' */
  factory?: string;
  /** Passed to the factory (structured-clonable data). */
  argument?: unknown;
}

/** Fields every description may carry. */
export interface ThreadDescriptorBase {
  /**
   * Options that could not cross to the thread (functions such as a custom
   * `retryStrategy`, or objects such as a TLS `secureContext`), by path. The
   * thread's connection runs without them, on the driver's defaults; they are
   * logged once when the thread starts.
   */
  dropped?: string[];
}

/** What {@link Persister.threadDescriptor} returns: enough for another thread to reach the same store. */
export type ThreadDescriptor = ThreadDescriptorBase &
  (
    | RedisThreadDescriptor
    | RedisClusterThreadDescriptor
    | UrlThreadDescriptor
    | MongoThreadDescriptor
    | FileThreadDescriptor
    | ModuleThreadDescriptor
  );

const KINDS: ReadonlySet<string> = new Set(['redis', 'redis-cluster', 'url', 'mongodb', 'file', 'module']);

/**
 * A copy of `value` that can be posted to a worker: functions and objects that
 * structured clone refuses (or would strip of their class) are left out, and
 * their paths added to `dropped`. Buffers, typed arrays, Dates, plain objects
 * and arrays are kept.
 */
export function cloneable(value: unknown, path: string, dropped: string[]): unknown {
  if (value === null || value === undefined) return value;
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'bigint':
      return value;
    case 'function':
    case 'symbol':
      dropped.push(path);
      return undefined;
  }
  if (ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) return value;
  if (Array.isArray(value)) return value.map((item, i) => cloneable(item, `${path}[${i}]`, dropped));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    dropped.push(path);
    return undefined;
  }
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    const copy = cloneable(item, path ? `${path}.${key}` : key, dropped);
    if (copy !== undefined || item === undefined) out[key] = copy;
  }
  return out;
}

/**
 * The description `persister` gives of itself for the keep-alive thread.
 * @throws TypeError saying why and what to do, when the persister cannot be reached from another thread.
 */
export function threadDescriptorOf(persister: object): ThreadDescriptor {
  const describe = (persister as { threadDescriptor?: () => ThreadDescriptor | undefined }).threadDescriptor;
  const kind = (persister as { constructor?: { name?: string } }).constructor?.name ?? 'this persister';
  if (typeof describe !== 'function') {
    throw new TypeError(
      `keepAlive: 'thread' needs a store that another thread can reach on its own connection, and ${kind} cannot be ` +
        `(${kind === 'MemoryPersister' ? 'its leases live in this thread\'s memory' : 'it has no threadDescriptor() method'}). ` +
        "Use keepAlive: 'loop' (the default) with it, or a Redis, MongoDB or file store, or give a custom persister a " +
        "threadDescriptor() returning { kind: 'module', module, factory, argument } (see the Persister interface).",
    );
  }
  const descriptor = describe.call(persister);
  if (descriptor === null || typeof descriptor !== 'object' || !KINDS.has((descriptor as { kind?: string }).kind ?? '')) {
    throw new TypeError(expected(`${kind}.threadDescriptor()`, `a ThreadDescriptor ({ kind: ${[...KINDS].map((k) => `'${k}'`).join(' | ')}, … })`, descriptor));
  }
  return descriptor;
}
