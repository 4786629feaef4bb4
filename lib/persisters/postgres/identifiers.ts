/**
 * Table and schema names go into SQL text (identifiers cannot be bound as parameters),
 * so they are checked strictly here, once, at construction, and always double-quoted.
 */
import { expected } from '../../validate';

/** The longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes); longer ones are cut. */
export const MAX_IDENTIFIER_LENGTH = 63;

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/**
 * Throws a TypeError unless `value` is a plain lower-case identifier of at most 63
 * characters (letters a-z, digits, underscores; not starting with a digit): the names
 * PostgreSQL folds unquoted SQL to, so the table a team creates by hand with the README's
 * statement is the one this library quotes.
 */
export function checkIdentifier(what: string, value: unknown): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value) || value.length > MAX_IDENTIFIER_LENGTH) {
    throw new TypeError(
      expected(what, `a lower-case SQL identifier of 1 to ${MAX_IDENTIFIER_LENGTH} characters (a-z, 0-9, _; not starting with a digit)`, value),
    );
  }
  return value;
}

/** A checked table name, optionally in a checked schema. */
export interface TableName {
  /** The schema, or undefined for the connection's `search_path`. */
  schema: string | undefined;
  /** The table. */
  table: string;
}

/** `"schema"."table"` or `"table"`, for SQL text. */
export function quoted({ schema, table }: TableName): string {
  return schema ? `"${schema}"."${table}"` : `"${table}"`;
}

/** `schema.table` or `table`: how the table is named in messages and as its NOTIFY channel. */
export function plain({ schema, table }: TableName): string {
  return schema ? `${schema}.${table}` : table;
}

/**
 * The NOTIFY channel of a table: its plain name (`schema.table`), one channel per table,
 * the payload naming the lock. A channel is an identifier too, so the whole must fit 63 bytes.
 */
export function channelOf(name: TableName, what: string): string {
  const channel = plain(name);
  if (channel.length > MAX_IDENTIFIER_LENGTH) {
    throw new RangeError(
      expected(what, `a schema and table whose "schema.table" fits in ${MAX_IDENTIFIER_LENGTH} characters (it names the NOTIFY channel)`, channel),
    );
  }
  return channel;
}
