import { PersisterError } from '../errors';

/** The slice of an ioredis connection in subscriber mode that the subscriber uses. */
export interface SubscriberConnection {
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  on(event: 'message', listener: (channel: string, message: string) => void): unknown;
  on(event: 'ready' | 'close' | 'error', listener: () => void): unknown;
  disconnect(): void;
  /** The socket of a standalone connection (a Cluster's has none): unref'd while the connection lingers unused. */
  readonly stream?: { ref?: () => unknown; unref?: () => unknown };
}

/**
 * How long an unused subscriber connection stays open (its socket unref'd: it keeps no
 * process alive) before it is closed, so that a program that waits again soon — a lock
 * taken in turns — does not open a connection per wait.
 */
export const SUBSCRIBER_LINGER_MS = 1_000;

/**
 * Options for the duplicated connection a subscriber runs on: it queues commands until connected,
 * and ioredis does NOT re-subscribe by itself after a reconnect. The subscriber does that itself,
 * confirmed and with its failures handled; ioredis's own re-SUBSCRIBE has no rejection handler
 * (ioredis ≤ 5.9), so a reconnect that fails again at that moment (the connection closed under it,
 * NOPERM) ended the process with an unhandled rejection — found by `npm run chaos`.
 */
export const SUBSCRIBER_CONNECTION_OPTIONS = Object.freeze({ enableOfflineQueue: true, autoResubscribe: false });

/** Bounds one operation in time and turns its failure into a `PersisterError`. */
export type TimedRunner = <T>(what: string, op: () => Promise<T>) => Promise<T>;

interface Channel {
  listeners: Set<(message: string) => void>;
  subscribed: Promise<unknown>;
}

/**
 * Pub/sub for many listeners over ONE connection, opened on first use (a
 * duplicate of the user's client, made by `open`) and closed as soon as nobody
 * listens any more, so it never keeps a process alive. Each channel is
 * subscribed once while at least one listener wants it. `subscribe` resolves
 * only after the SUBSCRIBE is confirmed, so a message published after that is
 * never missed. After the connection dropped and came back, `onReconnect` runs
 * (a message may have been missed meanwhile). Used for release notifications
 * (`RedisPersister.watch`) and for Coalescer outcomes.
 */
export class RedisChannelSubscriber {
  private connection: SubscriberConnection | undefined;
  private readonly channels = new Map<string, Channel>();
  private dropped = false;
  private closed = false;
  /** Set while the connection lingers unused: closes it. */
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly open: () => SubscriberConnection,
    private readonly timed: TimedRunner,
    private readonly onReconnect?: (channel: string, listeners: ReadonlySet<(message: string) => void>) => void,
  ) {}

  /** Listens on `channel`; resolves once subscribed, with the function that stops this listener. */
  async subscribe(channel: string, onMessage: (message: string) => void, what = `Subscribing to ${channel}`): Promise<() => Promise<void>> {
    if (this.closed) throw new PersisterError(`${what} failed: it was closed. Create a new one.`);
    const connection = this.connect();
    let entry = this.channels.get(channel);
    if (!entry) {
      entry = { listeners: new Set(), subscribed: connection.subscribe(channel) };
      this.channels.set(channel, entry);
    }
    const current = entry;
    const listener = (message: string) => onMessage(message);
    current.listeners.add(listener);
    const stop = async (): Promise<void> => {
      if (!current.listeners.delete(listener) || current.listeners.size > 0) return;
      if (this.channels.get(channel) === current) this.channels.delete(channel);
      if (this.channels.size === 0 && !this.canLinger()) return this.disconnectIdle();
      // UNSUBSCRIBE once SUBSCRIBE settled, unless a new listener came meanwhile; bounded, never rejects.
      await this.timed(`Unsubscribing from ${channel}`, () =>
        current.subscribed.then(noop, noop).then(() => this.unsubscribe(channel)),
      ).catch(noop);
    };
    try {
      await this.timed(what, () => current.subscribed);
    } catch (error) {
      void stop();
      throw error;
    }
    return stop;
  }

  /** Drops every listener and closes the connection. */
  close(): void {
    this.closed = true;
    this.stopLingering();
    this.channels.clear();
    this.connection?.disconnect();
    this.connection = undefined;
  }

  private async unsubscribe(channel: string): Promise<void> {
    const connection = this.connection;
    if (this.channels.has(channel) || !connection) return;
    if (this.channels.size === 0 && !this.canLinger()) return this.disconnectIdle();
    await connection.unsubscribe(channel).catch(noop); // gone with the connection anyway
    if (this.channels.size === 0 && this.connection === connection) this.linger(connection);
  }

  /** Whether an unused connection can stay open for a while without keeping the process alive. */
  private canLinger(): boolean {
    const stream = this.connection?.stream;
    return !this.dropped && typeof stream?.unref === 'function' && typeof stream.ref === 'function';
  }

  /** Nobody listens any more: keep the connection for {@link SUBSCRIBER_LINGER_MS}, unref'd, then close it. */
  private linger(connection: SubscriberConnection): void {
    if (this.idleTimer) return; // lingering already
    if (!this.canLinger()) return this.disconnectIdle();
    connection.stream?.unref?.();
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.connection === connection && this.channels.size === 0) this.disconnectIdle();
    }, SUBSCRIBER_LINGER_MS);
    this.idleTimer.unref();
  }

  private stopLingering(): void {
    if (!this.idleTimer) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.connection?.stream?.ref?.();
  }

  /** Nobody listens any more: close the connection we opened (the next subscribe opens a new one). */
  private disconnectIdle(): void {
    this.stopLingering();
    const connection = this.connection;
    this.connection = undefined;
    this.dropped = false;
    connection?.disconnect();
  }

  private connect(): SubscriberConnection {
    this.stopLingering();
    if (this.connection) return this.connection;
    const connection = this.open();
    connection.on('error', noop); // failures surface through the timed subscribe
    connection.on('close', () => {
      if (this.connection === connection) this.dropped = true;
    });
    connection.on('ready', () => this.onReady(connection));
    connection.on('message', (channel, message) => deliver(this.channels.get(channel)?.listeners, message));
    this.connection = connection;
    return connection;
  }

  /** After a drop: resubscribe (confirmed), then tell `onReconnect` about every channel. */
  private onReady(connection: SubscriberConnection): void {
    if (!this.dropped || this.connection !== connection) return;
    this.dropped = false;
    const channels = [...this.channels.keys()];
    if (channels.length === 0) return;
    const after = () => {
      for (const [channel, { listeners }] of this.channels) this.onReconnect?.(channel, listeners);
    };
    connection.subscribe(...channels).then(after, after);
  }
}

/** Calls every listener; one that throws does not stop the others (its error is rethrown, as an EventEmitter's would be). */
export function deliver<T>(listeners: ReadonlySet<(message: T) => void> | undefined, message: T): void {
  for (const listener of [...(listeners ?? [])]) {
    try {
      listener(message);
    } catch (error) {
      process.nextTick(() => {
        throw error;
      });
    }
  }
}

function noop(): void {}
