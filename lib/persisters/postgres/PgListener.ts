/**
 * LISTEN for many listeners over ONE dedicated connection per persister, opened when the
 * first listener comes and closed as soon as nobody listens (so it never keeps a process
 * alive, and costs the server a connection only while someone waits). Each channel is
 * LISTENed once while it has a listener; `listen` resolves only once the LISTEN is
 * confirmed, so a NOTIFY committed after that is never missed.
 *
 * When the connection drops, every listener is called once with `undefined` (a
 * notification may have been missed meanwhile), and the connection is opened again (with
 * backoff, for as long as someone listens); after it is back, every listener is called
 * once more.
 */
import { PersisterError } from '../../errors';
import { deliver } from '../RedisChannelSubscriber';
import { type PgListenClient, SerialQueue } from './connection';

/** Bounds one operation in time and turns its failure into a `PersisterError`. */
export type TimedRunner = <T>(what: string, op: () => Promise<T>) => Promise<T>;

/** A listener: the payload of each NOTIFY, or `undefined` after the connection dropped or came back. */
export type ChannelListener = (payload: string | undefined) => void;

interface Connection {
  client: PgListenClient;
  /** Settles once connected (rejects if that failed). */
  ready: Promise<unknown>;
  /** Channels LISTENed (or being LISTENed) on this connection. */
  listening: Map<string, Promise<unknown>>;
  dropped: boolean;
  /** LISTEN and UNLISTEN, one at a time on the one client. */
  serial: SerialQueue;
}

/** First delay before reopening a dropped connection, doubled up to {@link MAX_RECONNECT_MS}. */
const FIRST_RECONNECT_MS = 250;
const MAX_RECONNECT_MS = 5_000;

/** One LISTEN connection shared by every watcher of one persister (and its Coalescer outcomes). */
export class PgListener {
  private connection: Connection | undefined;
  private readonly channels = new Map<string, Set<ChannelListener>>();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelay = FIRST_RECONNECT_MS;
  private closed = false;

  /**
   * @param open makes a new, unconnected `pg` Client for LISTEN.
   * @param timed bounds each step and turns failures into `PersisterError`s.
   */
  constructor(
    private readonly open: () => PgListenClient,
    private readonly timed: TimedRunner,
  ) {}

  /** Listens on `channel`; resolves once LISTEN is confirmed, with the function that stops this listener. */
  async listen(channel: string, onMessage: ChannelListener, what = `Listening on ${channel}`): Promise<() => Promise<void>> {
    if (this.closed) throw new PersisterError(`${what} failed: the persister is closed. Create a new one.`);
    let listeners = this.channels.get(channel);
    if (!listeners) {
      listeners = new Set();
      this.channels.set(channel, listeners);
    }
    const listener: ChannelListener = (payload) => onMessage(payload); // one entry per listen call
    listeners.add(listener);
    const current = listeners;
    const stop = async (): Promise<void> => {
      if (!current.delete(listener) || current.size > 0) return;
      if (this.channels.get(channel) === current) this.channels.delete(channel);
      if (this.channels.size === 0) return this.disconnect();
      const connection = this.connection;
      if (!connection || connection.dropped || !connection.listening.has(channel)) return;
      connection.listening.delete(channel);
      // Bounded and never rejecting: the connection goes away with the last listener anyway.
      await this.timed(`Unlistening ${channel}`, () => connection.serial.run(() => connection.client.query(`UNLISTEN "${channel}"`))).catch(noop);
    };
    try {
      await this.timed(what, () => this.ensureListening(channel));
    } catch (error) {
      await stop();
      throw error;
    }
    return stop;
  }

  /** Drops every listener and closes the connection. */
  async close(): Promise<void> {
    this.closed = true;
    this.channels.clear();
    await this.disconnect();
  }

  /** Connects if needed, then LISTENs `channel` once on this connection. */
  private async ensureListening(channel: string): Promise<void> {
    const connection = this.connect();
    await connection.ready;
    let listening = connection.listening.get(channel);
    if (!listening) {
      listening = connection.serial.run(() => connection.client.query(`LISTEN "${channel}"`));
      connection.listening.set(channel, listening);
      listening.catch(() => {
        if (connection.listening.get(channel) === listening) connection.listening.delete(channel);
      });
    }
    await listening;
  }

  private connect(): Connection {
    if (this.connection && !this.connection.dropped) return this.connection;
    const client = this.open();
    const connection: Connection = { client, ready: Promise.resolve(), listening: new Map(), dropped: false, serial: new SerialQueue() };
    const onDrop = () => this.onDrop(connection);
    client.on('error', onDrop); // failures surface through the timed listen, or as a drop
    client.on('end', onDrop);
    client.on('notification', ({ channel, payload }) => deliver(this.channels.get(channel), payload ?? ''));
    connection.ready = client.connect();
    connection.ready.catch(onDrop);
    this.connection = connection;
    return connection;
  }

  /** The connection failed or ended while listeners remain: tell them, and reopen it later. */
  private onDrop(connection: Connection): void {
    if (connection.dropped) return;
    connection.dropped = true;
    connection.client.end().catch(noop);
    if (this.connection !== connection) return;
    this.connection = undefined;
    if (this.closed || this.channels.size === 0) return;
    this.wakeAll();
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.closed) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, MAX_RECONNECT_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.reconnect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private async reconnect(): Promise<void> {
    if (this.closed || this.channels.size === 0) return;
    try {
      await this.timed('Reconnecting the LISTEN connection', () =>
        Promise.all([...this.channels.keys()].map((channel) => this.ensureListening(channel))),
      );
    } catch {
      if (this.connection && !this.connection.dropped) this.connection.dropped = true;
      this.connection?.client.end().catch(noop);
      this.connection = undefined;
      this.scheduleReconnect();
      return;
    }
    this.reconnectDelay = FIRST_RECONNECT_MS;
    this.wakeAll(); // back: anything released meanwhile was not heard
  }

  private wakeAll(): void {
    for (const listeners of [...this.channels.values()]) deliver(listeners, undefined);
  }

  /** Nobody listens any more (or closing): end the connection; the next listen opens a new one. */
  private async disconnect(): Promise<void> {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.reconnectDelay = FIRST_RECONNECT_MS;
    const connection = this.connection;
    this.connection = undefined;
    if (!connection) return;
    connection.dropped = true;
    await this.timed('Closing the LISTEN connection', () => connection.client.end()).catch(noop);
  }
}

function noop(): void {}
