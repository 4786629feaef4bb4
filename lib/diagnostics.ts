/**
 * Every lifecycle event of every `Singleton`, published on Node's `diagnostics_channel`
 * (DESIGN.md §10), so metrics and tracing subscribe without wrapping the library:
 *
 * ```ts
 * import { subscribe } from 'node:diagnostics_channel';
 * import { DIAGNOSTICS_CHANNEL, type DiagnosticsEvent } from 'singleton-process';
 * subscribe(DIAGNOSTICS_CHANNEL, (message) => {
 *   const e = message as DiagnosticsEvent;
 *   if (e.event === 'conflict') conflicts.inc({ lock: e.lock });
 * });
 * ```
 *
 * With nobody subscribed, each event costs one `hasSubscribers` check: the message is
 * only built when someone listens. Messages never contain the lease's secret token.
 */
import { channel } from 'node:diagnostics_channel';
import type { LostReason } from './errors';

/** The name of the channel every lifecycle event is published on. */
export const DIAGNOSTICS_CHANNEL = 'singleton-process:event';

/** The lifecycle events published: the states a `Singleton` enters (but `idle`), and `expired`, `renewed`, `error`. */
export type DiagnosticsEventName =
  | 'locking'
  | 'locked'
  | 'conflict'
  | 'expired'
  | 'renewed'
  | 'releasing'
  | 'released'
  | 'lost'
  | 'error';

/** One message on {@link DIAGNOSTICS_CHANNEL}. */
export interface DiagnosticsEvent {
  /** The lock name. */
  lock: string;
  /** What happened. `conflict` is published at every attempt that found the lock held (also when no event is emitted). */
  event: DiagnosticsEventName;
  /** The instance's owner string (`host:pid` by default). */
  owner: string;
  /** The fencing token of this instance's lease, on the events of a held lease (`locked` to `released`, `lost`). */
  fencingToken?: bigint | number;
  /** Why the lease was lost, on `lost`. */
  reason?: LostReason;
  /** The store round trip in ms (monotonic clock) of the acquire, renewal or release, on `locked`, `renewed` and `released`. */
  durationMs?: number;
}

/**
 * The channel itself. Check `diagnosticsChannel.hasSubscribers` before building a message:
 * that is the whole cost of the instrumentation when nobody listens.
 * @internal
 */
export const diagnosticsChannel = channel(DIAGNOSTICS_CHANNEL);

/**
 * Publishes one event; call it only when `diagnosticsChannel.hasSubscribers`.
 * Fields that are `undefined` are left out of the message.
 * @internal
 */
export function publishEvent(
  lock: string,
  event: DiagnosticsEventName,
  owner: string,
  fields: { fencingToken?: bigint | number; reason?: LostReason; durationMs?: number } = {},
): void {
  const message: DiagnosticsEvent = { lock, event, owner };
  if (fields.fencingToken !== undefined) message.fencingToken = fields.fencingToken;
  if (fields.reason !== undefined) message.reason = fields.reason;
  if (fields.durationMs !== undefined) message.durationMs = fields.durationMs;
  diagnosticsChannel.publish(message);
}
