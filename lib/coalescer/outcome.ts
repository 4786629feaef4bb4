/**
 * The one serialisation of a coalesced run's outcome (DESIGN.md §2): JSON, the same for
 * the runner's own callers as for every remote waiter. The runner encodes once; every
 * caller, local or remote, decodes that same text, so a `Date` is an ISO string for
 * everyone, and no two callers ever share one mutable object.
 */
import { SingletonError } from '../errors';

/** Who produced an outcome: the lease it ran under (for diagnostics and logs). */
export interface RunInfo {
  /** The coalescing key. */
  key: string;
  /** Owner of the runner (`${hostname}:${pid}` by default). */
  owner: string;
  /** Fencing token of the lease the run held, as a decimal string. */
  fencingToken: string;
  /** When the run finished (ISO 8601, the runner's clock). */
  finishedAt: string;
}

/** An error as it travels. */
export interface SerializedError {
  /** The original `name` (`'Error'` when it had none). */
  name: string;
  /** The original `message`. */
  message: string;
  /** The original `code`, when it was a string or a finite number. */
  code?: string | number;
  /** The original stack, when it had one. */
  stack?: string;
  /** Its other own enumerable properties that JSON can carry (others are left out). */
  props?: Record<string, unknown>;
}

/** Properties a rebuilt error sets itself, never copied from `props`. */
const RESERVED = new Set(['name', 'message', 'code', 'stack', 'key', 'cause']);

/**
 * The stored and broadcast form of an outcome (`v` is the format version). A value of
 * `undefined` is stored without the `value` field.
 */
export type OutcomeEnvelope =
  | { v: 1; run: RunInfo; ok: true; value?: unknown }
  | { v: 1; run: RunInfo; ok: false; error: SerializedError };

/**
 * The error every caller of a coalesced run receives when `fn` threw: an `Error` carrying
 * the original `name`, `message`, `code`, its other JSON-safe own properties and its stack
 * (as the original process saw it), rebuilt the same way in the runner's process and in
 * every waiting one.
 *
 * @example
 * ```ts
 * try {
 *   await coalescer.run('report', build);
 * } catch (err) {
 *   if (err instanceof CoalescedError && err.code === 'E_QUOTA') retryLater();
 * }
 * ```
 */
export class CoalescedError extends Error {
  /** The original error's `code`, when it had a string or number one. */
  readonly code: string | number | undefined;
  /** The coalescing key whose run failed. */
  readonly key: string;

  constructor(key: string, error: SerializedError) {
    super(error.message);
    // The original name, so `err.name === 'ValidationError'` checks keep working across processes.
    Object.defineProperty(this, 'name', { value: error.name, writable: true, configurable: true, enumerable: false });
    this.code = error.code;
    this.key = key;
    if (error.props) {
      for (const [prop, value] of Object.entries(error.props)) if (!RESERVED.has(prop)) (this as Record<string, unknown>)[prop] = value;
    }
    if (typeof error.stack === 'string') {
      Object.defineProperty(this, 'stack', { value: error.stack, writable: true, configurable: true, enumerable: false });
    }
  }
}

/** Encodes a successful run. A value JSON cannot carry becomes a `SINGLETON_NOT_SERIALIZABLE` error outcome. */
export function encodeValue(value: unknown, run: RunInfo): string {
  if (value === undefined) return JSON.stringify({ v: 1, run, ok: true });
  let text: string | undefined;
  try {
    text = JSON.stringify({ v: 1, run, ok: true, value });
    // A top-level function or symbol is silently dropped by JSON.stringify: refuse it instead.
    if (typeof value === 'function' || typeof value === 'symbol') text = undefined;
  } catch (err) {
    return encodeError(notSerializable(run.key, value, err instanceof Error ? err.message : String(err)), run);
  }
  if (text === undefined) return encodeError(notSerializable(run.key, value, `a ${typeof value} is not a JSON value`), run);
  return text;
}

/** Encodes a failed run: `name`, `message`, `code`, JSON-safe own properties and the stack. */
export function encodeError(thrown: unknown, run: RunInfo): string {
  return JSON.stringify({ v: 1, run, ok: false, error: serializeError(thrown) });
}

/** The travelling fields of anything `fn` threw (an `Error` or not). */
export function serializeError(thrown: unknown): SerializedError {
  if (thrown instanceof Error || (thrown !== null && typeof thrown === 'object' && 'message' in thrown)) {
    const e = thrown as { name?: unknown; message?: unknown; code?: unknown };
    const out: SerializedError = {
      name: typeof e.name === 'string' && e.name.length > 0 ? e.name : 'Error',
      message: typeof e.message === 'string' ? e.message : String(e.message),
    };
    if (typeof e.code === 'string' || (typeof e.code === 'number' && Number.isFinite(e.code))) out.code = e.code;
    const stack = (thrown as { stack?: unknown }).stack;
    if (typeof stack === 'string') out.stack = stack;
    const props = jsonSafeProps(thrown as object);
    if (props) out.props = props;
    return out;
  }
  return { name: 'Error', message: typeof thrown === 'string' ? thrown : safeString(thrown) };
}

/** The own enumerable properties of `source` that survive JSON, each checked on its own. */
function jsonSafeProps(source: object): Record<string, unknown> | undefined {
  let out: Record<string, unknown> | undefined;
  for (const prop of Object.keys(source)) {
    if (RESERVED.has(prop)) continue;
    try {
      const text = JSON.stringify((source as Record<string, unknown>)[prop]);
      if (text === undefined) continue;
      (out ??= {})[prop] = JSON.parse(text);
    } catch {
      // BigInt, circular…: left out rather than failing the whole outcome.
    }
  }
  return out;
}

/** What {@link decodeOutcome} found: the value, or the error to throw. */
export type DecodedOutcome = { ok: true; value: unknown; run: RunInfo } | { ok: false; error: Error; run: RunInfo };

/**
 * Parses an envelope. `SINGLETON_NOT_SERIALIZABLE` comes back as the library's own
 * `SingletonError`; any other failure as a {@link CoalescedError}. Throws a
 * `SingletonError` (`SINGLETON_REMOTE`) for text that is not an envelope.
 */
export function decodeOutcome(key: string, text: string): DecodedOutcome {
  let envelope: OutcomeEnvelope;
  try {
    envelope = JSON.parse(text) as OutcomeEnvelope;
  } catch (err) {
    throw malformed(key, err instanceof Error ? err.message : String(err));
  }
  if (envelope === null || typeof envelope !== 'object' || envelope.v !== 1 || typeof envelope.ok !== 'boolean') {
    throw malformed(key, 'not an outcome envelope (v: 1)');
  }
  if (envelope.ok) return { ok: true, value: envelope.value, run: envelope.run };
  const error = envelope.error;
  if (error === null || typeof error !== 'object' || typeof error.name !== 'string' || typeof error.message !== 'string') {
    throw malformed(key, 'its error has no name or message');
  }
  if (error.code === 'SINGLETON_NOT_SERIALIZABLE' && error.name === 'SingletonError') {
    return { ok: false, error: new SingletonError('SINGLETON_NOT_SERIALIZABLE', error.message), run: envelope.run };
  }
  return { ok: false, error: new CoalescedError(key, error), run: envelope.run };
}

function notSerializable(key: string, value: unknown, detail: string): SingletonError {
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  return new SingletonError(
    'SINGLETON_NOT_SERIALIZABLE',
    `The result of the coalesced run "${key}" (${type}) cannot be sent as JSON: ${detail}. ` +
      'Return a plain JSON value (convert BigInt to a string, break circular references, drop functions).',
  );
}

function malformed(key: string, detail: string): SingletonError {
  return new SingletonError(
    'SINGLETON_REMOTE',
    `The stored outcome of "${key}" could not be read: ${detail}. Another program (or an incompatible version) may write under the same keys.`,
  );
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Any function: what the JSON round trip drops from objects and turns into `null` in arrays. */
export type AnyFunction = (...args: never[]) => unknown;
/** What an array slot becomes after the JSON round trip: `null` for `undefined`, symbols and functions. */
export type JsonItem<T> = T extends undefined | symbol | AnyFunction ? null : Jsonified<T>;

/**
 * The type a value has after the JSON round trip every coalesced result makes: `Date`
 * (anything with `toJSON`) becomes what `toJSON` returns (a string), methods and symbol
 * keys disappear, array slots holding `undefined` or functions become `null`, and BigInt
 * or functions have no JSON form (`never`; at run time they are a
 * `SINGLETON_NOT_SERIALIZABLE` error). A top-level `undefined` stays `undefined`.
 */
export type Jsonified<T> = 0 extends 1 & T
  ? any
  : unknown extends T
    ? unknown
    : T extends {
          /** The value's own JSON form (as `Date` has). */
          toJSON(...args: never[]): infer R;
        }
      ? Jsonified<R>
      : T extends string | number | boolean | null | undefined | void
        ? T
        : T extends bigint | symbol | AnyFunction
          ? never
          : T extends readonly unknown[]
            ? { -readonly [K in keyof T]: JsonItem<T[K]> }
            : T extends object
              ? {
                  [K in keyof T as K extends symbol ? never : T[K] extends AnyFunction | symbol ? never : K]: Jsonified<T[K]>;
                }
              : never;
