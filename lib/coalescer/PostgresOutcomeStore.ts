import { checkIdentifier, channelOf, MAX_IDENTIFIER_LENGTH, plain, type TableName } from '../persisters/postgres/identifiers';
import { createTableIfMissing } from '../persisters/postgres/createTable';
import { type PgQueryable, withTimeout } from '../persisters/postgres/connection';
import type { PgListener } from '../persisters/postgres/PgListener';
import type { PostgresPersister } from '../persisters/PostgresPersister';
import { expected } from '../validate';
import { createOutcomeTableSql, type OutcomeStatements, outcomeStatements } from './outcomeSql';
import type { OutcomeStore } from './OutcomeStore';

/** Appended to the lease table's name to name the outcome table beside it. */
export const OUTCOME_TABLE_SUFFIX = '_outcomes';

/** NOTIFY payloads must stay under 8000 bytes: a larger outcome is announced by key only and read back. */
const MAX_INLINE_PAYLOAD_BYTES = 7_900;

/** What a notification carries: the key, and the outcome when it fits. */
interface Payload {
  k: string;
  o?: string;
}

/**
 * Outcomes in PostgreSQL, beside a `PostgresPersister`'s leases: one row per key in the
 * table `<lease table>_outcomes` (created on first use when the persister creates its
 * own), readable until `expires_at` by the server's clock. `put` stores the outcome and
 * sends a `NOTIFY` on the outcome table's channel in the same statement (the outcome
 * itself in the payload when it fits, else the key, and subscribers read it back).
 * Subscriptions share the persister's one dedicated LISTEN connection. Expired rows are
 * replaced by the next run of their key or removed by {@link sweep}.
 */
export class PostgresOutcomeStore implements OutcomeStore {
  /** Shown in messages and logs. */
  readonly kind = 'postgres';
  /** The outcome table, as `schema.table` or `table`. */
  readonly table: string;
  /** The NOTIFY channel of outcomes (the outcome table's plain name). */
  readonly channel: string;

  private readonly runner: PgQueryable;
  private readonly listener: PgListener | undefined;
  private readonly sql: OutcomeStatements;
  private readonly tableName: TableName;
  private readonly timeoutMs: number;
  private readonly createTable: boolean;
  private ready: Promise<void> | undefined;

  /** Outcomes beside the leases of `persister`, on its pool and its LISTEN connection. */
  constructor(persister: PostgresPersister) {
    const { schema, table } = persister.tableName;
    if (table.length + OUTCOME_TABLE_SUFFIX.length > MAX_IDENTIFIER_LENGTH) {
      throw new RangeError(
        expected(
          'table',
          `a lease table name of at most ${MAX_IDENTIFIER_LENGTH - OUTCOME_TABLE_SUFFIX.length} characters, so "<table>${OUTCOME_TABLE_SUFFIX}" can hold the Coalescer's outcomes (or pass \`outcomes\` to the Coalescer)`,
          table,
        ),
      );
    }
    this.tableName = { schema, table: checkIdentifier('table', `${table}${OUTCOME_TABLE_SUFFIX}`) };
    this.table = plain(this.tableName);
    this.channel = channelOf(this.tableName, 'table');
    this.runner = persister.pgRunner;
    this.listener = persister.pgListener;
    this.timeoutMs = persister.operationTimeoutMs;
    this.createTable = persister.createTable;
    this.sql = outcomeStatements(this.tableName);
    if (!this.listener) this.subscribe = undefined; // listen: false: waiters poll `get`
  }

  /** Stores the outcome of `key` for `ttlMs` (server clock) and notifies subscribers, in one statement. */
  async put(key: string, outcome: string, ttlMs: number): Promise<void> {
    const inline = JSON.stringify({ k: key, o: outcome } satisfies Payload);
    const payload = Buffer.byteLength(inline) <= MAX_INLINE_PAYLOAD_BYTES ? inline : JSON.stringify({ k: key } satisfies Payload);
    await this.query(`Storing the outcome of "${key}"`, this.sql.put, [key, outcome, ttlMs, this.channel, payload]);
  }

  /** The outcome of `key` stored less than its `ttlMs` ago (server clock), or `null`. */
  async get(key: string): Promise<string | null> {
    const rows = await this.query<{ outcome: string }>(`Reading the outcome of "${key}"`, this.sql.get, [key]);
    return rows.length === 0 ? null : rows[0].outcome;
  }

  /** Calls `onOutcome` with every outcome put for `key` from now on; resolves once LISTEN is in place. */
  subscribe?: (key: string, onOutcome: (outcome: string) => void) => Promise<() => Promise<void>> = async (key, onOutcome) => {
    const listener = this.listener as PgListener;
    return listener.listen(
      this.channel,
      (payload) => {
        if (payload === undefined) return; // connection dropped or back: the Coalescer's waiters poll `get` anyway
        let message: Payload;
        try {
          message = JSON.parse(payload) as Payload;
        } catch {
          return; // not ours
        }
        if (message.k !== key) return;
        if (typeof message.o === 'string') onOutcome(message.o);
        else {
          this.get(key).then(
            (outcome) => outcome !== null && onOutcome(outcome),
            () => undefined, // the waiter's next poll reports store failures
          );
        }
      },
      `Subscribing to the outcome of "${key}"`,
    );
  };

  /** Deletes the outcome of `key` if it expired. */
  async sweep(key: string): Promise<void> {
    await this.query(`Removing the expired outcome of "${key}"`, this.sql.sweep, [key]);
  }

  private async query<Row>(what: string, text: string, values: unknown[]): Promise<Row[]> {
    return withTimeout(what, this.timeoutMs, async () => {
      await this.ensureTable();
      return (await this.runner.query(text, values)).rows as Row[];
    });
  }

  private ensureTable(): Promise<void> {
    if (!this.createTable) return Promise.resolve();
    this.ready ??= createTableIfMissing(this.runner, this.tableName, createOutcomeTableSql(this.tableName), this.timeoutMs).catch(
      (error: unknown) => {
        this.ready = undefined;
        throw error;
      },
    );
    return this.ready;
  }
}
