import type { Client, ClientConfig, Pool } from 'pg';
import { PersisterError } from '../errors';
import { checkBoolean, checkInteger, expected } from '../validate';
import { checkQueryable, isPool, listenClientFactory, pgError, type PgQueryable, SerialQueue, withTimeout } from './postgres/connection';
import { createTableIfMissing } from './postgres/createTable';
import { channelOf, checkIdentifier, plain, type TableName } from './postgres/identifiers';
import { createTableSql, type LeaseRow, leaseStatements, type LeaseStatements } from './postgres/leaseSql';
import { PgListener } from './postgres/PgListener';
import { forcedReleaseHolder, isTrue, toLockInfo } from './postgres/rows';
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

/** Options of {@link PostgresPersister}. */
export interface PostgresPersisterOptions {
  /**
   * The table holding one row per lock (a lower-case SQL identifier).
   * @default 'singleton_process_leases'
   */
  table?: string;
  /** The table's schema (a lower-case SQL identifier); by default the connection's `search_path` decides. */
  schema?: string;
  /**
   * Longest wait for one store operation before it fails with a `PersisterError`.
   * @default 5000
   */
  operationTimeoutMs?: number;
  /**
   * Create the table (`CREATE TABLE IF NOT EXISTS`, the statement the README prints) on
   * first use when it is missing. Turn it off when your migrations create it.
   * @default true
   */
  createTable?: boolean;
  /**
   * Release notifications: `LISTEN` on one dedicated connection while someone waits. By
   * default it is opened with the pool's (or client's) own settings; pass connection
   * settings to open it elsewhere — straight to PostgreSQL when the pool goes through
   * PgBouncer in transaction mode, which cannot carry `LISTEN` — or `false` to have waiters
   * poll instead.
   * @default true
   */
  listen?: boolean | ClientConfig;
  /**
   * Whether `close()` also ends the pool or client passed in. `persisterFromUrl` sets it for the pool it made.
   * @default false
   */
  ownsPool?: boolean;
}

/** Defaults of {@link PostgresPersisterOptions}. */
export const POSTGRES_PERSISTER_DEFAULTS = Object.freeze({
  table: 'singleton_process_leases',
  operationTimeoutMs: 5_000,
});

const MAX_PID = 2 ** 31 - 1;

/**
 * Leases in PostgreSQL through `pg` (node-postgres) 8: one row per lock name in one table,
 * each operation ONE statement decided by the server's clock (`clock_timestamp()`).
 *
 * - **acquire** is one `INSERT … ON CONFLICT (name) DO UPDATE` that takes the row when it
 *   is free, released or run out, with the fence `greatest(fence + 1, server µs)`, and
 *   otherwise answers with the holder, in the same round trip. Taking over a lease whose
 *   holder never released it reports that holder as `expired`.
 * - **renew** and **release** are single statements that match the holder's token; release
 *   keeps the row (so the fence survives) and sends `NOTIFY` (channel: the table's name,
 *   payload: the lock name) in the same statement. `renewMany` renews any number of
 *   leases in one statement.
 * - **watch** `LISTEN`s on one dedicated connection per persister, opened while someone
 *   waits and closed when nobody does.
 * - No session state (no advisory lock, no named prepared statement, no `SET`): any
 *   connection of a pool can run any statement, so it works through PgBouncer in
 *   transaction mode and with a pool of one connection.
 *
 * The table is created on first use when missing (`createTable`); the driver is the
 * caller's (this module imports nothing from `pg` but types). A pool you pass in is never
 * ended by this persister unless `ownsPool` is set.
 *
 * @example
 * ```ts
 * import { Pool } from 'pg';
 * const persister = new PostgresPersister(new Pool({ connectionString: process.env.DATABASE_URL }));
 * const singleton = new Singleton('nightly-report', persister);
 * ```
 */
export class PostgresPersister implements Persister {
  /** Server clock, fencing, persistence, listing; notifications unless `listen: false`. */
  readonly capabilities: PersisterCapabilities;
  /** The lease table, as `schema.table` or `table`. */
  readonly table: string;
  /** The table's schema and name, checked. */
  readonly tableName: Readonly<TableName>;
  /** The NOTIFY channel of releases (the table's plain name). */
  readonly channel: string;
  /** Longest wait for one store operation, in ms. */
  readonly operationTimeoutMs: number;
  /** Whether the table is created on first use. */
  readonly createTable: boolean;

  private readonly pool: PgQueryable & { end(): Promise<void>; on(event: 'error', l: (e: Error) => void): unknown };
  private readonly ownsPool: boolean;
  private readonly sql: LeaseStatements;
  private readonly listener: PgListener | undefined;
  /** For a lone Client: one statement at a time. */
  private readonly serial: SerialQueue | undefined;
  private ready: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  /**
   * @param pool a `pg` Pool (recommended) or a connected Client.
   * @param options see {@link PostgresPersisterOptions}.
   * @throws TypeError / RangeError naming a bad pool or option.
   */
  constructor(pool: Pool | Client, options: PostgresPersisterOptions = {}) {
    this.pool = checkQueryable(pool);
    if (options === null || typeof options !== 'object') throw new TypeError(expected('options', 'an object', options));
    const table = checkIdentifier('options.table', options.table ?? POSTGRES_PERSISTER_DEFAULTS.table);
    const schema = options.schema === undefined ? undefined : checkIdentifier('options.schema', options.schema);
    this.tableName = Object.freeze({ schema, table });
    this.table = plain(this.tableName);
    this.channel = channelOf(this.tableName, 'options.table');
    this.operationTimeoutMs = checkInteger(
      'options.operationTimeoutMs',
      options.operationTimeoutMs ?? POSTGRES_PERSISTER_DEFAULTS.operationTimeoutMs,
      1,
      2 ** 31 - 1,
    );
    this.createTable = options.createTable === undefined ? true : checkBoolean('options.createTable', options.createTable);
    this.ownsPool = options.ownsPool === undefined ? false : checkBoolean('options.ownsPool', options.ownsPool);
    const listen = options.listen ?? true;
    if (typeof listen !== 'boolean' && (listen === null || typeof listen !== 'object')) {
      throw new TypeError(expected('options.listen', 'true, false or pg connection settings (ClientConfig)', listen));
    }
    this.listener =
      listen === false ? undefined : new PgListener(listenClientFactory(this.pool, listen === true ? undefined : listen), this.timed.bind(this));
    this.capabilities = Object.freeze({ serverClock: true, notify: this.listener !== undefined, fencing: true, persistent: true, list: true });
    this.sql = leaseStatements(this.tableName);
    this.serial = isPool(this.pool) ? undefined : new SerialQueue();
    if (this.ownsPool) {
      // Our own pool: an idle connection the server drops must not crash the process
      // ('error' without a listener); the next operation reports the failure.
      this.pool.on('error', noop);
    }
  }

  /** The pool or client the persister runs on (the `Coalescer` keeps outcomes beside the leases). */
  get pgPool(): PgQueryable {
    return this.pool;
  }

  /**
   * The LISTEN connection of this persister, shared with the Coalescer's outcomes.
   * @internal
   */
  get pgListener(): PgListener | undefined {
    return this.listener;
  }

  /** Take the lease if it is free, released or ran out (server clock); otherwise name the holder. One statement. */
  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const { name, token, ttlMs, owner } = checkAcquire(request);
    const rows = await this.query<LeaseRow & { acquired: unknown; expired: string | null }>(`Acquiring lock "${name}"`, this.sql.acquire, [
      name,
      token,
      owner.owner,
      owner.hostname,
      owner.pid,
      ttlMs,
    ]);
    const row = this.oneRow(`Acquiring lock "${name}"`, rows);
    const info = toLockInfo(name, row);
    if (!isTrue(row.acquired)) return { acquired: false, holder: info };
    if (!row.expired) return { acquired: true, lease: info };
    return { acquired: true, lease: info, expired: toLockInfo(name, JSON.parse(row.expired) as LeaseRow) };
  }

  /** Extend the lease, only with the holder's token and while it has not run out. One statement. */
  async renew(request: RenewRequest): Promise<RenewResult> {
    const [result] = await this.renewAll(`Renewing lock "${request?.name}"`, [checkRenew(request)]);
    return result;
  }

  /** Renews many leases in ONE statement; each slot holds that lease's result (a failure fails every slot). */
  async renewMany(requests: readonly RenewRequest[]): Promise<Array<RenewResult | Error>> {
    if (!Array.isArray(requests)) throw new TypeError(expected('requests', 'an array of renew requests', requests));
    const checked = requests.map(checkRenew);
    if (checked.length === 0) return [];
    if (new Set(checked.map((r) => r.name)).size !== checked.length) {
      // One UPDATE touches a row once: renew a name asked twice on its own.
      return Promise.all(checked.map((r) => this.renew(r).catch((error: unknown) => pgError(`Renewing lock "${r.name}"`, error))));
    }
    try {
      return await this.renewAll(`Renewing ${checked.length} locks`, checked);
    } catch (error) {
      const failure = pgError(`Renewing ${checked.length} locks`, error);
      return checked.map(() => failure);
    }
  }

  /** End the lease, only with the holder's token; the row (and its fence) stays, and watchers are notified. */
  async release(request: ReleaseRequest): Promise<boolean> {
    const { name, token } = checkRelease(request);
    const rows = await this.query(`Releasing lock "${name}"`, this.sql.release, [name, token, this.channel]);
    return rows.length === 1;
  }

  /** The live lease of `name` by the server's clock, or null. */
  async inspect(name: string): Promise<LockInfo | null> {
    checkLockName(name);
    const rows = await this.query<LeaseRow>(`Inspecting lock "${name}"`, this.sql.inspect, [name]);
    return rows.length === 0 ? null : toLockInfo(name, rows[0]);
  }

  /** Every live lease (server clock), optionally only names starting with `prefix`, sorted by name. */
  async list(options: ListOptions = {}): Promise<LockInfo[]> {
    if (options === null || typeof options !== 'object') throw new TypeError(expected('options', 'an object', options));
    const prefix = options.prefix ?? '';
    if (typeof prefix !== 'string') throw new TypeError(expected('options.prefix', 'a string', prefix));
    const rows = await this.query<LeaseRow & { name: string }>('Listing locks', this.sql.list, [prefix]);
    return rows.map((row) => toLockInfo(row.name, row)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Ends the lease of `name` whoever holds it (the operator's last resort), keeping the
   * fence so the next holder's is higher, and notifies watchers. Resolves the evicted
   * holder, or null when nothing was held. The evicted holder's next renewal is refused
   * and names the forced release as the holder, so it is told `taken-over`.
   */
  async forceRelease(name: string): Promise<LockInfo | null> {
    checkLockName(name);
    const rows = await this.query<LeaseRow>(`Force-releasing lock "${name}"`, this.sql.forceRelease, [name, this.channel]);
    return rows.length === 0 ? null : toLockInfo(name, rows[0]);
  }

  /**
   * Calls `onRelease` after every release of `name` (and once after the LISTEN connection
   * dropped, and once after it came back, as a release may have been missed). Resolves once
   * LISTEN is confirmed, with the function that removes this watcher.
   */
  async watch(name: string, onRelease: () => void): Promise<() => Promise<void>> {
    checkLockName(name);
    if (typeof onRelease !== 'function') throw new TypeError(expected('onRelease', 'a function', onRelease));
    if (!this.listener) throw new PersisterError(`Watching lock "${name}" failed: this persister was made with listen: false; poll instead.`);
    return this.listener.listen(
      this.channel,
      (payload) => {
        if (payload === undefined || payload === name) onRelease();
      },
      `Watching lock "${name}"`,
    );
  }

  /** Closes the LISTEN connection, and ends the pool too if `ownsPool`. */
  async close(): Promise<void> {
    this.closing ??= (async () => {
      await this.listener?.close();
      if (this.ownsPool) await this.timed('Closing the PostgreSQL pool', () => this.pool.end()).catch(noop);
    })();
    return this.closing;
  }

  /** Creates the table on first use (once; again after a failure). */
  ensureTable(): Promise<void> {
    if (!this.createTable) return Promise.resolve();
    this.ready ??= createTableIfMissing(this.statementRunner(), this.tableName, createTableSql(this.tableName), this.operationTimeoutMs).catch(
      (error: unknown) => {
        this.ready = undefined;
        throw error;
      },
    );
    return this.ready;
  }

  private async renewAll(what: string, requests: RenewRequest[]): Promise<RenewResult[]> {
    const rows = await this.query<LeaseRow & { renewed_ms: string | null; held: unknown; evicted: unknown }>(what, this.sql.renew, [
      requests.map((r) => r.name),
      requests.map((r) => r.token),
      requests.map((r) => r.ttlMs),
    ]);
    if (rows.length !== requests.length) {
      throw new PersisterError(`${what} failed: ${rows.length} rows came back for ${requests.length} leases. Check the table ${this.table}.`);
    }
    return rows.map((row, i): RenewResult => {
      const { name } = requests[i];
      if (row.renewed_ms !== null) return { renewed: true, expiresAt: new Date(Number(row.renewed_ms)) };
      if (isTrue(row.held)) return { renewed: false, holder: toLockInfo(name, row) };
      if (isTrue(row.evicted)) return { renewed: false, holder: forcedReleaseHolder(name, row) };
      return { renewed: false, holder: null };
    });
  }

  /** Runs one statement after the table exists, bounded by the operation timeout; failures become `PersisterError`s. */
  private async query<Row>(what: string, text: string, values: unknown[]): Promise<Row[]> {
    return this.timed(what, async () => {
      await this.ensureTable();
      const result = await this.statementRunner().query(text, values);
      return result.rows as Row[];
    });
  }

  /**
   * The pool, or the lone Client behind a queue (one statement at a time): what the
   * Coalescer's outcomes beside the leases run on.
   * @internal
   */
  get pgRunner(): PgQueryable {
    return this.statementRunner();
  }

  /** The pool, or the lone Client behind a queue. */
  private statementRunner(): PgQueryable {
    const { serial, pool } = this;
    return serial ? { query: (text, values) => serial.run(() => pool.query(text, values)) } : pool;
  }

  private oneRow<Row>(what: string, rows: Row[]): Row {
    if (rows.length !== 1) throw new PersisterError(`${what} failed: ${rows.length} rows came back instead of one. Check the table ${this.table}.`);
    return rows[0];
  }

  private timed<T>(what: string, op: () => Promise<T>): Promise<T> {
    return withTimeout(what, this.operationTimeoutMs, op);
  }
}

function checkLockName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.includes('\0')) {
    throw new TypeError(expected('name', 'a non-empty string without NUL characters', name));
  }
  return name;
}

function checkToken(token: unknown): string {
  if (typeof token !== 'string' || token.length === 0 || token.includes('\0')) {
    throw new TypeError(expected('token', 'a non-empty string', token));
  }
  return token;
}

function checkAcquire(request: AcquireRequest): AcquireRequest {
  if (request === null || typeof request !== 'object') throw new TypeError(expected('request', 'an acquire request object', request));
  const { owner } = request;
  if (owner === null || typeof owner !== 'object') throw new TypeError(expected('owner', 'an OwnerInfo object', owner));
  if (typeof owner.owner !== 'string' || owner.owner.includes('\0')) throw new TypeError(expected('owner.owner', 'a string', owner.owner));
  if (typeof owner.hostname !== 'string' || owner.hostname.includes('\0')) {
    throw new TypeError(expected('owner.hostname', 'a string', owner.hostname));
  }
  checkInteger('owner.pid', owner.pid, 0, MAX_PID);
  return {
    name: checkLockName(request.name),
    token: checkToken(request.token),
    ttlMs: checkInteger('ttlMs', request.ttlMs, 1),
    owner,
  };
}

function checkRenew(request: RenewRequest): RenewRequest {
  if (request === null || typeof request !== 'object') throw new TypeError(expected('request', 'a renew request object', request));
  return { name: checkLockName(request.name), token: checkToken(request.token), ttlMs: checkInteger('ttlMs', request.ttlMs, 1) };
}

function checkRelease(request: ReleaseRequest): ReleaseRequest {
  if (request === null || typeof request !== 'object') throw new TypeError(expected('request', 'a release request object', request));
  return { name: checkLockName(request.name), token: checkToken(request.token) };
}

function noop(): void {}
