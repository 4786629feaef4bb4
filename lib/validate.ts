/**
 * Argument checks with one message template for every bad value:
 * "Expected `x` to be …, got … (type)".
 */

/** Renders a value for an error message: short, quoted where it helps, with its type. */
export function describeValue(value: unknown): string {
  let shown: string;
  if (typeof value === 'string') shown = JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  else if (typeof value === 'bigint') shown = `${value}n`;
  else if (typeof value === 'function') shown = `[function ${value.name || 'anonymous'}]`;
  else if (value !== null && typeof value === 'object') {
    try {
      shown = JSON.stringify(value) ?? String(value);
    } catch {
      shown = Object.prototype.toString.call(value);
    }
    if (shown.length > 60) shown = `${shown.slice(0, 60)}…`;
  } else shown = String(value);
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  return `${shown} (${type})`;
}

/** The message every bad-argument error uses. */
export function expected(what: string, allowed: string, value: unknown): string {
  return `Expected \`${what}\` to be ${allowed}, got ${describeValue(value)}`;
}

/** Throws a `TypeError` (wrong type) or `RangeError` (right type, out of range) for a whole number of ms. */
export function checkInteger(what: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(expected(what, `a whole number from ${min} to ${max}`, value));
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(expected(what, `a whole number from ${min} to ${max}`, value));
  }
  return value;
}

/** Throws a `TypeError` unless `value` is a boolean. */
export function checkBoolean(what: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new TypeError(expected(what, 'true or false', value));
  return value;
}

/** The longest lock name, in characters. */
export const MAX_NAME_LENGTH = 200;

// C0 and C1 control characters, DEL, and lone surrogates are not printable.
const NOT_PRINTABLE = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Validates a lock name: 1..200 printable characters. Throws a `TypeError` naming the bad value. */
export function checkName(value: unknown, what = 'name'): string {
  const allowed = `a string of 1 to ${MAX_NAME_LENGTH} printable characters (no control characters)`;
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NAME_LENGTH || NOT_PRINTABLE.test(value)) {
    throw new TypeError(expected(what, allowed, value));
  }
  return value;
}

/** The caller-side limits of a wait: `signal` and `timeoutMs`, checked (shared by Singleton and Coalescer). */
export interface WaitLimits {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** Checks `{ signal?, timeoutMs? }`; throws a `TypeError`/`RangeError` naming the bad value. */
export function checkWaitLimits(options: WaitLimits): WaitLimits {
  if (options === null || typeof options !== 'object') throw new TypeError(expected('options', 'an object', options));
  const { signal, timeoutMs } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError(expected('signal', 'an AbortSignal', signal));
  if (timeoutMs !== undefined) checkInteger('timeoutMs', timeoutMs, 0);
  return { signal, timeoutMs };
}

/** Throws a `TypeError` naming the first key of `options` that is not in `known`, and listing the allowed ones. */
export function checkKnownOptions(options: object, known: ReadonlySet<string>): void {
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new TypeError(`Unknown option \`${key}\`; allowed options are: ${[...known].join(', ')}`);
  }
}
