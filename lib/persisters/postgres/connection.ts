/**
 * The slice of `pg` (node-postgres) the PostgreSQL store uses, typed locally so this
 * package imports nothing from `pg` at run time: the pool or client comes from the user
 * (or from `persisterFromUrl`, which imports the driver only then).
 */
import type { ClientConfig, Notification } from 'pg';
import { PersisterError } from '../../errors';
import { expected } from '../../validate';
import { withOperationTimeout } from '../operationTimeout';

/** What a statement answers (rows as plain objects). */
export interface PgResult<Row> {
  /** The rows the statement returned. */
  rows: Row[];
  /** How many rows it touched, where the server says. */
  rowCount: number | null;
}

/** A `pg` Pool or Client: anything that runs one parameterised statement. */
export interface PgQueryable {
  /** Runs `text` with `$1…` bound to `values`. */
  query(text: string, values?: unknown[]): Promise<PgResult<any>>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** A dedicated connection for LISTEN: a `pg` Client. */
export interface PgListenClient {
  connect(): Promise<unknown>;
  query(text: string): Promise<unknown>;
  end(): Promise<void>;
  on(event: 'notification', listener: (message: Notification) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
}

type ClientConstructor = new (config?: ClientConfig) => PgListenClient;

/** The pieces of a `pg.Pool` used to open a connection beside it. */
interface PoolLike extends PgQueryable {
  Client?: ClientConstructor;
  options?: ClientConfig;
  totalCount?: number;
  connect(): Promise<unknown>;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** The pieces of a `pg.Client` used to open a second connection like it. */
interface ClientLike extends PgQueryable {
  connectionParameters?: ClientConfig;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** Whether `value` is a `pg.Pool` (a Client has no pool counters). */
export function isPool(value: PgQueryable): value is PoolLike {
  return typeof (value as PoolLike).totalCount === 'number' && typeof (value as PoolLike).connect === 'function';
}

/** Throws a TypeError unless `value` looks like a `pg` Pool or Client. */
export function checkQueryable(value: unknown): PgQueryable & { end(): Promise<void>; on(event: 'error', l: (e: Error) => void): unknown } {
  const v = value as Record<string, unknown> | null;
  if (!v || typeof v !== 'object' || typeof v.query !== 'function' || typeof v.end !== 'function' || typeof v.on !== 'function') {
    throw new TypeError(expected('pool', 'a pg (node-postgres) Pool or connected Client', value));
  }
  return value as PgQueryable & { end(): Promise<void>; on(event: 'error', l: (e: Error) => void): unknown };
}

/**
 * How to open the dedicated LISTEN connection: with `config` when given (e.g. straight to
 * PostgreSQL when the pool goes through PgBouncer in transaction mode, which cannot carry
 * LISTEN), else with the pool's or client's own settings. Never a connection of the user's
 * pool: holding one for as long as someone waits could starve a small pool.
 */
export function listenClientFactory(target: PgQueryable, config: ClientConfig | undefined): () => PgListenClient {
  const Client = (isPool(target) ? target.Client : (target as object).constructor) as ClientConstructor | undefined;
  if (typeof Client !== 'function') {
    throw new TypeError(expected('pool', 'a pg Pool or Client (its Client class opens the LISTEN connection)', target));
  }
  const settings = config ?? (isPool(target) ? target.options : (target as ClientLike).connectionParameters);
  return () => new Client({ ...settings });
}

/**
 * Runs one PostgreSQL operation bounded by `timeoutMs`: its value, or a `PersisterError`
 * saying `what` failed (timed out, or the driver's error kept as `cause`).
 */
export function withTimeout<T>(what: string, timeoutMs: number, op: () => Promise<T>): Promise<T> {
  return withOperationTimeout(what, timeoutMs, 'PostgreSQL', op, (error) => pgError(what, error));
}

/** SQLSTATE codes worth a word of advice. */
const ADVICE: Record<string, string> = {
  '42P01': 'the table does not exist: create it with the statement in the README, or let the persister create it (createTable: true)',
  '42501': 'permission denied: grant this role SELECT, INSERT and UPDATE on the table (and CREATE on the schema for createTable)',
  '25006': 'the server is read-only (a standby?): point the pool at the primary',
  '40P01': 'deadlock detected; the operation can be retried',
};

/**
 * The driver's error as a `PersisterError` saying `what` failed, with advice for the
 * SQLSTATEs users meet; the driver's error is its `cause` (one level).
 */
export function pgError(what: string, error: unknown): PersisterError {
  if (error instanceof PersisterError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const advice = typeof code === 'string' ? ADVICE[code] : undefined;
  const detail = messageOf(error).replace(/\.?$/, '');
  const then = advice ? ` (${advice}).` : /reachable|retr(y|ied)/i.test(detail) ? '.' : '. Check that PostgreSQL is reachable; the operation can be retried.';
  return new PersisterError(`${what} failed: ${detail}${then}`, { cause: error });
}

/** A driver error's message; a connection refused on every address is an AggregateError with none of its own. */
function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.message) return error.message;
  const inner = (error as { errors?: unknown[] }).errors?.find((e): e is Error => e instanceof Error && e.message !== '');
  if (inner) return inner.message;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error.name;
}

/**
 * Runs operations one after the other: a lone `pg` Client must not be given a query while
 * another runs (deprecated in pg 8, refused in pg 9). A failure does not stop the queue.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `op` once every operation queued before it has settled. */
  run<T>(op: () => Promise<T>): Promise<T> {
    const result = this.tail.then(op, op);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
