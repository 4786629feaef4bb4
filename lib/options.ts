import { constants as osConstants, hostname } from 'node:os';
import { type Logger, getDefaultLogger, isLogger } from './logger';
import { checkBoolean, checkInteger, checkKnownOptions, expected } from './validate';

/** Options of `new Singleton(name, persister, options)`. Every one is optional. */
export interface SingletonOptions {
  /**
   * Lease length: the store expires the lock this long after the last renewal.
   * @default 15000
   */
  ttlMs?: number;
  /**
   * Seed-compatible alias of `ttlMs / 1000` (singleton-process v1).
   * Give either this or `ttlMs`, not two different values.
   */
  lockExpireSeconds?: number;
  /**
   * How often a held lease is renewed; must be less than `ttlMs`. A renewal is never due later
   * than halfway between the last one and the moment the lease would be counted lost, so that
   * an interval close to `ttlMs` still leaves time to retry a renewal that failed.
   * @default ttlMs / 3
   */
  renewIntervalMs?: number;
  /**
   * Upper bound between attempts while waiting for the lock. Release
   * notifications and the holder's known expiry usually wake a waiter sooner.
   * @default 1000
   */
  retryIntervalMs?: number;
  /**
   * Human-readable identity of this instance, shown to the others.
   * @default `${hostname}:${pid}`
   */
  owner?: string;
  /**
   * Release on SIGINT, SIGTERM, SIGHUP (or the signals listed), then exit as the
   * signal would have. `false` leaves signals entirely to you.
   * @default true
   */
  handleSignals?: boolean | readonly NodeJS.Signals[];
  /**
   * On `uncaughtException` / `unhandledRejection`: release, print the error, exit 1.
   * @default true
   */
  handleErrors?: boolean;
  /**
   * Longest wait for releases during shutdown before exiting anyway.
   * @default 5000
   */
  shutdownTimeoutMs?: number;
  /**
   * What happens when a held lease is lost: `'exit'` logs one line and exits
   * with code 70; `'emit'` only emits `lost`.
   * @default 'exit' when no `lost` listener is attached, else 'emit'
   */
  onLost?: 'exit' | 'emit';
  /**
   * Any pino-compatible logger; every transition is logged through a child with `{ lock, owner }`.
   * @default pino on stderr, level from SINGLETON_LOG_LEVEL or 'warn'
   */
  logger?: Logger;
  /**
   * Where held leases are renewed. `'loop'`: from this thread's event loop (a block
   * longer than the lease loses it). `'thread'`: from one worker thread per process, on
   * its own store connection, so a busy or frozen event loop keeps the lease for up to
   * `maxBlockMs`, and a short `ttlMs` (fast takeover after a crash) becomes safe. Needs a
   * store another thread can reach (Redis, MongoDB, the file store; not `MemoryPersister`).
   * @default 'loop'
   */
  keepAlive?: 'loop' | 'thread';
  /**
   * With `keepAlive: 'thread'`: the longest the event loop may be unresponsive before its
   * leases are let go. The thread stops renewing once the loop has been blocked this long;
   * the lease then runs out within `ttlMs`, and a loss then ends the process if the
   * effective `onLost` is `'exit'` (the loop cannot). Whole ms, 100 to one week.
   * @default 60000
   */
  maxBlockMs?: number;
}

/** Options after defaults and checks: what the `Singleton` runs on. */
export interface NormalizedOptions {
  ttlMs: number;
  renewIntervalMs: number;
  retryIntervalMs: number;
  owner: string;
  hostname: string;
  pid: number;
  signals: readonly NodeJS.Signals[];
  handleErrors: boolean;
  shutdownTimeoutMs: number;
  onLost: 'exit' | 'emit' | undefined;
  logger: Logger;
  keepAlive: 'loop' | 'thread';
  maxBlockMs: number;
}

/** The defaults, frozen. */
export const DEFAULTS = Object.freeze({
  /** Lease length, ms. */
  ttlMs: 15_000,
  /** Upper bound between attempts while waiting, ms. */
  retryIntervalMs: 1_000,
  /** The signals handled by default: release, then exit as the signal would have. */
  handleSignals: Object.freeze(['SIGINT', 'SIGTERM', 'SIGHUP'] as NodeJS.Signals[]),
  /** Release, print and exit 1 on `uncaughtException` / `unhandledRejection`. */
  handleErrors: true,
  /** Longest wait for releases during shutdown, ms. */
  shutdownTimeoutMs: 5_000,
  /** Where held leases are renewed: the event loop, or the keep-alive thread. */
  keepAlive: 'loop' as 'loop' | 'thread',
  /** With the keep-alive thread: the longest the event loop may be unresponsive before the lease is let go, ms. */
  maxBlockMs: 60_000,
});

/** Smallest `maxBlockMs`: the heartbeat must be able to beat several times within it. */
export const MIN_MAX_BLOCK_MS = 100;

/** Shortest lease the library accepts, in ms. */
export const MIN_TTL_MS = 20;
/** Longest lease the library accepts, in ms (one week). */
export const MAX_TTL_MS = 7 * 24 * 3600 * 1000;

/** The names `SingletonOptions` allows (checked at construction). */
export const KNOWN_OPTIONS: ReadonlySet<string> = new Set([
  'ttlMs',
  'lockExpireSeconds',
  'renewIntervalMs',
  'retryIntervalMs',
  'owner',
  'handleSignals',
  'handleErrors',
  'shutdownTimeoutMs',
  'onLost',
  'logger',
  'keepAlive',
  'maxBlockMs',
]);

/** Checks and completes the TTL-related options; shared with `Coalescer`. */
export function normalizeTtl(options: { ttlMs?: unknown; lockExpireSeconds?: unknown }): number {
  let ttlMs: number = DEFAULTS.ttlMs;
  if (options.ttlMs !== undefined) ttlMs = checkInteger('ttlMs', options.ttlMs, MIN_TTL_MS, MAX_TTL_MS);
  if (options.lockExpireSeconds !== undefined) {
    const s = options.lockExpireSeconds;
    const allowed = `a number of seconds from ${MIN_TTL_MS / 1000} to ${MAX_TTL_MS / 1000}`;
    if (typeof s !== 'number' || Number.isNaN(s)) throw new TypeError(expected('lockExpireSeconds', allowed, s));
    if (s * 1000 < MIN_TTL_MS || s * 1000 > MAX_TTL_MS) throw new RangeError(expected('lockExpireSeconds', allowed, s));
    const fromSeconds = Math.round(s * 1000);
    if (options.ttlMs !== undefined && fromSeconds !== ttlMs) {
      throw new RangeError(
        `Expected \`lockExpireSeconds\` (${s}) and \`ttlMs\` (${ttlMs}) to agree; give only one of them (ttlMs is preferred)`,
      );
    }
    ttlMs = fromSeconds;
  }
  return ttlMs;
}

function normalizeSignals(value: unknown): readonly NodeJS.Signals[] {
  if (value === undefined || value === true) return DEFAULTS.handleSignals;
  if (value === false) return [];
  const allowed = 'true, false, or an array of signal names such as ["SIGTERM", "SIGINT"]';
  if (!Array.isArray(value)) throw new TypeError(expected('handleSignals', allowed, value));
  for (const s of value) {
    if (typeof s !== 'string' || !(s in osConstants.signals) || s === 'SIGKILL' || s === 'SIGSTOP') {
      throw new TypeError(expected('handleSignals', `${allowed}; SIGKILL and SIGSTOP cannot be handled`, s));
    }
  }
  return Object.freeze([...new Set(value as NodeJS.Signals[])]);
}

let cachedHostname: string | undefined;

/** An options object's values when it was normalized (a shallow copy), and the result. */
interface Snapshot {
  input: Record<string, unknown>;
  keys: number;
  result: NormalizedOptions;
}

const normalized = new WeakMap<object, Snapshot>();
let normalizedDefaults: NormalizedOptions | undefined;
/** The last options normalized. */
let last: Snapshot | undefined;

/**
 * Applies defaults and checks every option; throws `TypeError`/`RangeError` naming the bad
 * value. Done once per options object and values: instances built from the same object (or
 * from none) share the frozen result, so making a `Singleton` per name costs no
 * re-validation. An object literal written in a loop (a new object each time, holding the
 * same values) is recognised too: it is compared, key by key, with the last options
 * normalized. An object changed since it was last used is read and checked again.
 */
export function normalizeOptions(options: SingletonOptions | undefined): NormalizedOptions {
  if (options === undefined) {
    if (normalizedDefaults && normalizedDefaults.pid === process.pid) return normalizedDefaults;
    return (normalizedDefaults = Object.freeze(checkOptions({})));
  }
  if (options !== null && typeof options === 'object') {
    const values = options as Record<string, unknown>;
    const known = normalized.get(options);
    if (known && known.result.pid === process.pid && sameValues(values, known.input, known.keys)) return known.result;
    if (last && last.result.pid === process.pid && sameValues(values, last.input, last.keys)) return last.result;
    const result = Object.freeze(checkOptions(options));
    const input: Record<string, unknown> = {};
    let keys = 0;
    for (const key in options) {
      input[key] = values[key];
      keys += 1;
    }
    last = { input, keys, result };
    normalized.set(options, last);
    return result;
  }
  return checkOptions(options);
}

/** Whether `options` holds exactly the `keys` enumerable keys of `input`, with the same values. */
function sameValues(options: Record<string, unknown>, input: Record<string, unknown>, keys: number): boolean {
  let seen = 0;
  for (const key in options) {
    if (!Object.hasOwn(input, key) || options[key] !== input[key]) return false;
    seen += 1;
  }
  return seen === keys;
}

function checkOptions(options: SingletonOptions): NormalizedOptions {
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object') {
    throw new TypeError(expected('options', 'an object or undefined', options));
  }
  checkKnownOptions(options, KNOWN_OPTIONS);
  const ttlMs = normalizeTtl(options);
  const renewIntervalMs =
    options.renewIntervalMs === undefined
      ? Math.max(1, Math.floor(ttlMs / 3))
      : checkInteger('renewIntervalMs', options.renewIntervalMs, 1, ttlMs - 1);
  const retryIntervalMs =
    options.retryIntervalMs === undefined
      ? DEFAULTS.retryIntervalMs
      : checkInteger('retryIntervalMs', options.retryIntervalMs, 1, MAX_TTL_MS);
  const host = (cachedHostname ??= hostname());
  let owner = `${host}:${process.pid}`;
  if (options.owner !== undefined) {
    if (typeof options.owner !== 'string' || options.owner.length === 0 || options.owner.length > 200) {
      throw new TypeError(expected('owner', 'a string of 1 to 200 characters', options.owner));
    }
    owner = options.owner;
  }
  const handleErrors =
    options.handleErrors === undefined ? DEFAULTS.handleErrors : checkBoolean('handleErrors', options.handleErrors);
  const shutdownTimeoutMs =
    options.shutdownTimeoutMs === undefined
      ? DEFAULTS.shutdownTimeoutMs
      : checkInteger('shutdownTimeoutMs', options.shutdownTimeoutMs, 0, 3_600_000);
  if (options.onLost !== undefined && options.onLost !== 'exit' && options.onLost !== 'emit') {
    throw new TypeError(expected('onLost', '"exit" or "emit"', options.onLost));
  }
  if (options.logger !== undefined && !isLogger(options.logger)) {
    throw new TypeError(expected('logger', 'a pino-compatible logger (with debug, info, warn and error methods)', options.logger));
  }
  const { keepAlive, maxBlockMs } = normalizeKeepAlive(options);
  return {
    ttlMs,
    renewIntervalMs,
    retryIntervalMs,
    owner,
    hostname: host,
    pid: process.pid,
    signals: normalizeSignals(options.handleSignals),
    handleErrors,
    shutdownTimeoutMs,
    onLost: options.onLost,
    logger: options.logger ?? getDefaultLogger(),
    keepAlive,
    maxBlockMs,
  };
}

/** Checks `keepAlive` and `maxBlockMs` (which only means something with `keepAlive: 'thread'`). */
export function normalizeKeepAlive(options: { keepAlive?: unknown; maxBlockMs?: unknown }): {
  keepAlive: 'loop' | 'thread';
  maxBlockMs: number;
} {
  const keepAlive = options.keepAlive ?? DEFAULTS.keepAlive;
  if (keepAlive !== 'loop' && keepAlive !== 'thread') throw new TypeError(expected('keepAlive', '"loop" or "thread"', keepAlive));
  if (options.maxBlockMs === undefined) return { keepAlive, maxBlockMs: DEFAULTS.maxBlockMs };
  if (keepAlive !== 'thread') {
    throw new TypeError(
      `\`maxBlockMs\` (${String(options.maxBlockMs)}) only applies with keepAlive: 'thread' (the event loop itself renews in 'loop' mode); set keepAlive: 'thread' or leave maxBlockMs out`,
    );
  }
  return { keepAlive, maxBlockMs: checkInteger('maxBlockMs', options.maxBlockMs, MIN_MAX_BLOCK_MS, MAX_TTL_MS) };
}
