import pino from 'pino';

/** The logging methods the library calls: any pino-compatible logger has them. */
export interface Logger {
  /** Logs `obj` (fields) and `msg` at debug level: every transition. */
  debug(obj: object, msg?: string): void;
  /** At info level: a standby's new leader. */
  info(obj: object, msg?: string): void;
  /** At warn level: conflict of a one-shot `lock()`, expired, lost. */
  warn(obj: object, msg?: string): void;
  /** At error level: store errors nobody listens for, the exit on a lost lease. */
  error(obj: object, msg?: string): void;
  /** A logger with `bindings` added to every line (pino's `child`); merged in by the library when absent. */
  child?(bindings: Record<string, unknown>): Logger;
  /** pino's level check; when absent every level is assumed enabled. */
  isLevelEnabled?(level: string): boolean;
}

let defaultLogger: Logger | undefined;

/**
 * The logger used when none is given: pino writing to stderr (so a wrapped
 * command's stdout stays clean), level from `SINGLETON_LOG_LEVEL`, else `warn`.
 * Made once per process, on first use.
 */
export function getDefaultLogger(): Logger {
  if (!defaultLogger) {
    const level = process.env.SINGLETON_LOG_LEVEL || 'warn';
    defaultLogger = pino({ name: 'singleton-process', level }, pino.destination({ fd: 2, sync: true }));
  }
  return defaultLogger;
}

/** A child with bound fields where the logger supports it, else a wrapper that merges them in. */
export function childLogger(parent: Logger, bindings: Record<string, unknown>): Logger {
  if (typeof parent.child === 'function') return parent.child(bindings);
  const merge = (obj: object) => ({ ...bindings, ...obj });
  return {
    debug: (obj, msg) => parent.debug(merge(obj), msg),
    info: (obj, msg) => parent.info(merge(obj), msg),
    warn: (obj, msg) => parent.warn(merge(obj), msg),
    error: (obj, msg) => parent.error(merge(obj), msg),
  };
}

/** Whether `value` has the methods the library logs through. */
export function isLogger(value: unknown): value is Logger {
  if (value === null || typeof value !== 'object') return false;
  const l = value as Record<string, unknown>;
  return ['debug', 'info', 'warn', 'error'].every((m) => typeof l[m] === 'function');
}
