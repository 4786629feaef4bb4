import { fileURLToPath } from 'node:url';
import type { MongoClientOptions } from 'mongodb';
import type { RedisOptions } from 'ioredis';
import type { PoolConfig } from 'pg';
import { SingletonError } from '../errors';
import { cloneable, type ThreadDescriptor } from '../keepAlive/descriptor';
import { checkInteger, expected } from '../validate';
import { FilePersister } from './FilePersister';
import { DEFAULT_MONGO_COLLECTION, MongoPersister } from './MongoPersister';
import type { Persister } from './Persister';
import { POSTGRES_PERSISTER_DEFAULTS, PostgresPersister } from './PostgresPersister';
import { RedisPersister } from './RedisPersister';

/** URL schemes {@link persisterFromUrl} understands. */
export const PERSISTER_URL_SCHEMES = Object.freeze(['redis:', 'rediss:', 'mongodb:', 'mongodb+srv:', 'postgres:', 'postgresql:', 'file:'] as const);

/** The database used when a MongoDB URL names none. */
export const DEFAULT_MONGO_DATABASE = 'singleton';

/** Options of {@link persisterFromUrl}; each also has a URL query parameter where noted (the option wins). */
export interface PersisterFromUrlOptions {
  /**
   * Redis: prefix of every key and channel. URL: `?keyPrefix=`.
   * @default 'singleton:'
   */
  keyPrefix?: string;
  /**
   * Redis and PostgreSQL: longest wait for one operation before it fails with a `PersisterError`. URL: `?operationTimeoutMs=`.
   * @default 5000
   */
  operationTimeoutMs?: number;
  /**
   * MongoDB: the collection holding the locks. URL: `?collection=`.
   * @default 'singleton_leases'
   */
  collection?: string;
  /**
   * PostgreSQL: the table holding the locks. URL: `?table=`.
   * @default 'singleton_process_leases'
   */
  table?: string;
  /** PostgreSQL: the table's schema (default: the connection's `search_path`). URL: `?schema=`. */
  schema?: string;
  /**
   * PostgreSQL: extra `pg` Pool options, over the lock-friendly defaults
   * (`connectionTimeoutMillis` = the operation timeout, `keepAlive: true`).
   */
  pgPoolOptions?: PoolConfig;
  /**
   * Redis: extra ioredis options, over the lock-friendly defaults
   * (`lazyConnect: true`, `maxRetriesPerRequest: 1`, `enableOfflineQueue: true`).
   */
  redisOptions?: RedisOptions;
  /**
   * MongoDB: extra `MongoClient` options. Without `serverSelectionTimeoutMS` here or
   * in the URL, it is 5000 ms (the driver's 30 s is long for a lock).
   */
  mongoClientOptions?: MongoClientOptions;
}

/** A persister that owns its connection: `close()` is always there and closes it. */
export type OwnedPersister = Persister & {
  /** Closes the connection the persister made (it owns it). */
  close(): Promise<void>;
};

/** Loads an optional driver; replaceable in tests to simulate a missing one. */
export type DriverImporter = (driver: Driver) => Promise<unknown>;

/** The optional drivers, by package name. */
export type Driver = 'ioredis' | 'mongodb' | 'pg';

const importDriver: DriverImporter = (driver) =>
  driver === 'ioredis' ? import('ioredis') : driver === 'mongodb' ? import('mongodb') : import('pg');

/** The ioredis options a lock client gets unless the caller says otherwise. */
export const REDIS_URL_CLIENT_DEFAULTS: Readonly<RedisOptions> = Object.freeze({
  // Do not wait for a connection at creation: the first operation connects.
  lazyConnect: true,
  // A command waits for at most one reconnection before failing (as a PersisterError), instead of 20.
  maxRetriesPerRequest: 1,
  // Commands issued while connecting are queued, not refused.
  enableOfflineQueue: true,
  // close() of a connection that never came up must not keep the process alive for 2 s.
  disconnectTimeout: 100,
});

/** MongoDB's server selection limit when neither the URL nor the options set one. */
const MONGO_SERVER_SELECTION_TIMEOUT_MS = 5_000;

/**
 * Builds a persister from a store URL, importing the store's driver only now
 * (so `ioredis` and `mongodb` stay optional). It does not wait for a
 * connection: the first operation connects, and a failure there rejects with a
 * `PersisterError`. The persister owns the connection it made, and its
 * `close()` closes it.
 *
 * - `redis://[user:pass@]host[:port][/db][?keyPrefix=…&operationTimeoutMs=…]`,
 *   `rediss://…` (TLS): a {@link RedisPersister} on a new ioredis client. Other
 *   query parameters go to ioredis as it documents.
 * - `mongodb://…/[database][?collection=…&…]`, `mongodb+srv://…`: a
 *   {@link MongoPersister} on a new `MongoClient`, in `database` (default
 *   `singleton`) and `collection` (default `singleton_leases`); every other parameter
 *   goes to the driver, and the URL's database stays its default auth source.
 * - `postgres://[user:pass@]host[:port]/[database][?table=…&schema=…&operationTimeoutMs=…]`,
 *   `postgresql://…`: a {@link PostgresPersister} on a new `pg` Pool it owns (`close()`
 *   ends it), in `table` (default `singleton_process_leases`, created on first use); every
 *   other parameter (`sslmode`, …) goes to the driver.
 * - `file:` (the default directory), `file:///var/lock/app`, `file:relative/dir`:
 *   a {@link FilePersister} in that directory (one host only).
 *
 * @throws TypeError (rejected) for a URL that is not a string, cannot be parsed,
 *   or has another scheme: the message lists the supported ones. Credentials in
 *   the URL are never repeated in messages.
 * @throws SingletonError with code `SINGLETON_DRIVER_MISSING` (rejected) when the
 *   driver is not installed, saying which package to install.
 * @example
 * ```ts
 * const persister = await persisterFromUrl(process.env.SINGLETON_STORE ?? 'file:');
 * try { ... } finally { await persister.close(); }
 * ```
 */
export function persisterFromUrl(url: string, options: PersisterFromUrlOptions = {}): Promise<OwnedPersister> {
  return createPersisterFromUrl(url, options, importDriver);
}

/**
 * {@link persisterFromUrl} with the driver importer as a parameter (for tests).
 * @internal
 */
export async function createPersisterFromUrl(
  url: string,
  options: PersisterFromUrlOptions = {},
  importModule: DriverImporter = importDriver,
): Promise<OwnedPersister> {
  if (options === null || typeof options !== 'object') throw new TypeError(expected('options', 'an object', options));
  const scheme = schemeOf(url);
  switch (scheme) {
    case 'redis:':
    case 'rediss:':
      return describedByUrl(await redisFromUrl(url, options, importModule), url, options);
    case 'mongodb:':
    case 'mongodb+srv:':
      return describedByUrl(await mongoFromUrl(url, scheme, options, importModule), url, options);
    case 'postgres:':
    case 'postgresql:':
      return describedByUrl(await postgresFromUrl(url, options, importModule), url, options);
    case 'file:':
      return new FilePersister(fileDir(url));
  }
}

type Scheme = (typeof PERSISTER_URL_SCHEMES)[number];

/**
 * Gives a URL-made persister the description `keepAlive: 'thread'` needs: its URL and
 * options, so the keep-alive thread makes its own persister exactly as this one was made.
 */
function describedByUrl(persister: OwnedPersister, url: string, options: PersisterFromUrlOptions): OwnedPersister {
  const threadDescriptor = (): ThreadDescriptor => {
    const dropped: string[] = [];
    const cloned = cloneable(options, '', dropped) as Record<string, unknown>;
    return { kind: 'url', url, options: cloned, ...(dropped.length ? { dropped } : {}) };
  };
  Object.defineProperty(persister, 'threadDescriptor', { value: threadDescriptor, configurable: true, writable: true });
  return persister;
}

function supported(): string {
  return `a store URL starting with ${PERSISTER_URL_SCHEMES.map((s) => (s === 'file:' ? 'file:' : `${s}//`)).join(', ')}`;
}

/** The URL with any password replaced (in the authority, or a `password=` parameter), for messages. */
export function redactUrl(url: string): string {
  return url.replace(/^(\s*[a-z][a-z0-9+.-]*:\/*[^/?#@]*?:)[^/?#@]*@/i, '$1***@').replace(/([?&]password=)[^&#]*/gi, '$1***');
}

function badUrl(url: unknown, why?: string, cause?: unknown): TypeError {
  const shown = typeof url === 'string' ? redactUrl(url) : url;
  const error = new TypeError(`${expected('url', supported(), shown)}${why ? `: ${why}` : ''}`, cause ? { cause } : undefined);
  return error;
}

function schemeOf(url: unknown): Scheme {
  if (typeof url !== 'string') throw badUrl(url);
  const match = /^([a-z][a-z0-9+.-]*):/i.exec(url.trim());
  const scheme = match ? (`${match[1].toLowerCase()}:` as Scheme) : undefined;
  if (!scheme || !PERSISTER_URL_SCHEMES.includes(scheme)) {
    throw badUrl(url, match ? `the scheme "${match[1]}" is not supported` : 'it has no scheme');
  }
  return scheme;
}

function isMissingModule(error: unknown, driver: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (code !== 'MODULE_NOT_FOUND' && code !== 'ERR_MODULE_NOT_FOUND') return false;
  return typeof message !== 'string' || message.includes(`'${driver}'`) || message.includes(`"${driver}"`) || !message.includes("'");
}

async function loadDriver<T>(driver: Driver, scheme: string, importModule: DriverImporter): Promise<T> {
  try {
    return (await importModule(driver)) as T;
  } catch (error) {
    if (isMissingModule(error, driver)) {
      throw new SingletonError(
        'SINGLETON_DRIVER_MISSING',
        `A ${scheme}// store needs the "${driver}" driver, which is not installed. Install it next to singleton-process: npm install ${driver}`,
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * Refuses a parameter that is one of ours spelt in another case (`?keyprefix=`): the driver
 * would ignore it, and the locks would quietly go where the default puts them.
 */
function checkOwnParams(url: string, params: URLSearchParams, ours: readonly string[]): void {
  for (const key of params.keys()) {
    const meant = ours.find((own) => own !== key && own.toLowerCase() === key.toLowerCase());
    if (meant) throw badUrl(url, `its parameter "${key}" is spelt "${meant}"`);
  }
}

/** A query parameter read and removed (first occurrence wins). */
function takeParam(params: URLSearchParams, key: string): string | undefined {
  const value = params.get(key);
  params.delete(key);
  return value ?? undefined;
}

async function redisFromUrl(url: string, options: PersisterFromUrlOptions, importModule: DriverImporter): Promise<OwnedPersister> {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch (error) {
    throw badUrl(url, 'it cannot be parsed', error);
  }
  if (!/^[a-z]+:\/\//i.test(url.trim())) throw badUrl(url, `a Redis URL starts with ${parsed.protocol}//`);
  // ioredis reads the database index from the path or `?db=`, and a non-number would reach the
  // server as SELECT NaN, a rejection nobody handles: refuse it here, naming it.
  let path: string;
  try {
    path = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  } catch (error) {
    throw badUrl(url, 'its path is not valid percent-encoding', error);
  }
  for (const [where, value] of [
    ['path', path],
    ['parameter db', parsed.searchParams.get('db') ?? ''],
  ] as const) {
    if (value !== '' && !/^\d{1,9}$/.test(value)) throw badUrl(url, `the database index ${JSON.stringify(value)} (URL ${where}) is not a whole number`);
  }
  // ioredis would read every query parameter as one of its options: take ours out first.
  checkOwnParams(url, parsed.searchParams, ['keyPrefix', 'operationTimeoutMs']);
  const prefixParam = takeParam(parsed.searchParams, 'keyPrefix');
  const timeoutParam = takeParam(parsed.searchParams, 'operationTimeoutMs');
  const keyPrefix = options.keyPrefix ?? prefixParam;
  const operationTimeoutMs =
    options.operationTimeoutMs ??
    (timeoutParam === undefined ? undefined : checkInteger('operationTimeoutMs (URL parameter)', Number(timeoutParam), 1, 2 ** 31 - 1));
  const driver = await loadDriver<{ default?: unknown; Redis?: unknown }>('ioredis', parsed.protocol, importModule);
  const Redis = (driver.Redis ?? driver.default) as new (url: string, options: RedisOptions) => import('ioredis').Redis;
  const client = new Redis(parsed.toString(), { ...REDIS_URL_CLIENT_DEFAULTS, ...options.redisOptions });
  try {
    return new RedisPersister(client, { keyPrefix, operationTimeoutMs, ownsClient: true });
  } catch (error) {
    client.disconnect();
    throw error;
  }
}

/** What {@link parseMongoUrl} reads from a MongoDB URL. */
export interface MongoUrlParts {
  /** The URL the driver gets: our own parameters removed. */
  driverUrl: string;
  /** The database from the path, percent-decoded, or {@link DEFAULT_MONGO_DATABASE}. */
  database: string;
  /** `?collection=`, when given. */
  collection: string | undefined;
  /** Whether the URL sets `serverSelectionTimeoutMS` itself. */
  hasServerSelectionTimeout: boolean;
}

/**
 * Splits a MongoDB connection string by hand: it may list several hosts
 * (`mongodb://a:1,b:2/db`), which WHATWG `URL` cannot parse.
 */
export function parseMongoUrl(url: string): MongoUrlParts {
  const trimmed = url.trim();
  const schemeEnd = trimmed.indexOf('://');
  if (schemeEnd < 0) throw badUrl(url, 'a MongoDB URL starts with mongodb:// or mongodb+srv://');
  const afterScheme = trimmed.slice(schemeEnd + 3);
  const hashAt = afterScheme.indexOf('#');
  const withoutHash = hashAt < 0 ? afterScheme : afterScheme.slice(0, hashAt);
  const queryAt = withoutHash.indexOf('?');
  const beforeQuery = queryAt < 0 ? withoutHash : withoutHash.slice(0, queryAt);
  const query = queryAt < 0 ? '' : withoutHash.slice(queryAt + 1);
  // The credentials may not contain a raw '/', so the first '/' after the last '@' ends the hosts.
  const at = beforeQuery.lastIndexOf('@');
  const slash = beforeQuery.indexOf('/', at + 1);
  const hosts = slash < 0 ? beforeQuery : beforeQuery.slice(0, slash);
  const path = slash < 0 ? '' : beforeQuery.slice(slash + 1);
  if (!hosts.slice(at + 1)) throw badUrl(url, 'it names no host');
  let database: string;
  try {
    database = decodeURIComponent(path);
  } catch (error) {
    throw badUrl(url, 'its database name is not valid percent-encoding', error);
  }
  if (database.includes('/')) throw badUrl(url, `"${database}" is not a database name`);
  const params = new URLSearchParams(query);
  checkOwnParams(url, params, ['collection']);
  const collection = takeParam(params, 'collection');
  const rest = params.toString();
  return {
    driverUrl: `${trimmed.slice(0, schemeEnd + 3)}${hosts}/${path}${rest ? `?${rest}` : ''}`,
    database: database || DEFAULT_MONGO_DATABASE,
    collection,
    hasServerSelectionTimeout: [...params.keys()].some((k) => k.toLowerCase() === 'serverselectiontimeoutms'),
  };
}

async function mongoFromUrl(
  url: string,
  scheme: string,
  options: PersisterFromUrlOptions,
  importModule: DriverImporter,
): Promise<OwnedPersister> {
  const parts = parseMongoUrl(url);
  const driver = await loadDriver<{ MongoClient: typeof import('mongodb').MongoClient }>('mongodb', scheme, importModule);
  const clientOptions: MongoClientOptions = { ...options.mongoClientOptions };
  if (!parts.hasServerSelectionTimeout && clientOptions.serverSelectionTimeoutMS === undefined) {
    clientOptions.serverSelectionTimeoutMS = MONGO_SERVER_SELECTION_TIMEOUT_MS;
  }
  let client: import('mongodb').MongoClient;
  try {
    client = new driver.MongoClient(parts.driverUrl, clientOptions); // parses now, connects on the first operation
  } catch (error) {
    throw badUrl(url, `the MongoDB driver refused it (${error instanceof Error ? error.message : String(error)})`, error);
  }
  try {
    return new MongoPersister(client.db(parts.database), {
      collection: options.collection ?? parts.collection ?? DEFAULT_MONGO_COLLECTION,
      ownsClient: true,
    });
  } catch (error) {
    await client.close().catch(() => undefined);
    throw error;
  }
}

/** The directory of a `file:` URL; undefined for the default one. */
export function fileDir(url: string): { dir?: string } {
  const trimmed = url.trim();
  const rest = trimmed.slice('file:'.length);
  if (rest === '' || rest === '//') return {};
  if (rest.startsWith('//')) {
    try {
      return { dir: fileURLToPath(new URL(trimmed)) };
    } catch (error) {
      throw badUrl(url, `it is not a local file URL (${error instanceof Error ? error.message : String(error)})`, error);
    }
  }
  // `file:relative/dir`, `file:./dir`, `file:/abs/dir`: a path, percent-decoded.
  try {
    return { dir: decodeURIComponent(rest) };
  } catch (error) {
    throw badUrl(url, 'its path is not valid percent-encoding', error);
  }
}

/** What {@link parsePostgresUrl} reads from a PostgreSQL URL. */
export interface PostgresUrlParts {
  /** The connection string the driver gets: our own parameters removed. */
  driverUrl: string;
  /** `?table=`, when given. */
  table: string | undefined;
  /** `?schema=`, when given. */
  schema: string | undefined;
  /** `?operationTimeoutMs=`, when given. */
  operationTimeoutMs: number | undefined;
}

/** Takes our parameters (`table`, `schema`, `operationTimeoutMs`) out of a PostgreSQL URL. */
export function parsePostgresUrl(url: string): PostgresUrlParts {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch (error) {
    throw badUrl(url, 'it cannot be parsed', error);
  }
  if (!/^[a-z]+:\/\//i.test(url.trim())) throw badUrl(url, `a PostgreSQL URL starts with ${parsed.protocol}//`);
  checkOwnParams(url, parsed.searchParams, ['table', 'schema', 'operationTimeoutMs']);
  const table = takeParam(parsed.searchParams, 'table');
  const schema = takeParam(parsed.searchParams, 'schema');
  const timeoutParam = takeParam(parsed.searchParams, 'operationTimeoutMs');
  const operationTimeoutMs =
    timeoutParam === undefined ? undefined : checkInteger('operationTimeoutMs (URL parameter)', Number(timeoutParam), 1, 2 ** 31 - 1);
  return { driverUrl: parsed.toString(), table, schema, operationTimeoutMs };
}

async function postgresFromUrl(url: string, options: PersisterFromUrlOptions, importModule: DriverImporter): Promise<OwnedPersister> {
  const parts = parsePostgresUrl(url);
  const operationTimeoutMs = options.operationTimeoutMs ?? parts.operationTimeoutMs;
  const driver = await loadDriver<{ Pool?: unknown; default?: { Pool?: unknown } }>('pg', schemeOf(url), importModule);
  const Pool = (driver.Pool ?? driver.default?.Pool) as new (config: PoolConfig) => import('pg').Pool;
  // The pool connects on the first operation; a connection attempt never outlasts the operation it serves.
  const pool = new Pool({
    connectionString: parts.driverUrl,
    connectionTimeoutMillis: operationTimeoutMs ?? POSTGRES_PERSISTER_DEFAULTS.operationTimeoutMs,
    keepAlive: true,
    ...options.pgPoolOptions,
  });
  try {
    return new PostgresPersister(pool, {
      table: options.table ?? parts.table,
      schema: options.schema ?? parts.schema,
      operationTimeoutMs,
      ownsPool: true,
    });
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}
