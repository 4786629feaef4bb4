/**
 * Tells listeners when an ioredis connection comes back after a drop: the
 * signal a `LeaseKeeper` needs to check its leases at once, since a Redis that
 * restarted without persistence (or a Sentinel failover to a replica that had
 * not caught up) may have forgotten them.
 *
 * ioredis emits `ready` on the first connect and again after each reconnect;
 * only the second kind is reported. A `Cluster` is watched through its own
 * `ready` and through each node connection it opens, so one restarted master
 * (whose clients reconnect while the cluster as a whole stays ready) is noticed.
 */

/** The slice of an ioredis `Redis` or `Cluster` this watcher uses. */
export interface ReconnectingClient {
  readonly status?: string;
  readonly isCluster?: boolean;
  on(event: string, listener: (...args: never[]) => void): unknown;
  off(event: string, listener: (...args: never[]) => void): unknown;
  nodes?(role?: 'all'): ReconnectingClient[];
}

/** Statuses of a connection that was up before (or is trying to come back). */
const CONNECTED_BEFORE: ReadonlySet<string> = new Set(['ready', 'close', 'reconnecting']);

/**
 * One watcher per client: listeners share the `ready` subscriptions, which are
 * taken while at least one listener is registered and dropped after the last.
 */
export class ReconnectWatcher {
  private readonly listeners = new Set<() => void>();
  private readonly watched = new Map<ReconnectingClient, () => void>();
  private readonly onNode = (node: ReconnectingClient) => this.watch(node);
  private readonly onNodeGone = (node: ReconnectingClient) => this.unwatch(node);

  constructor(private readonly client: ReconnectingClient) {}

  /** Calls `listener` after every reconnect of the client (not its first connect); returns the stop function. */
  add(listener: () => void): () => void {
    if (typeof listener !== 'function') {
      throw new TypeError(`Expected \`listener\` to be a function, got ${String(listener)} (${typeof listener})`);
    }
    const entry = () => listener();
    this.listeners.add(entry);
    if (this.listeners.size === 1) this.start();
    return () => {
      if (!this.listeners.delete(entry)) return;
      if (this.listeners.size === 0) this.stop();
    };
  }

  private start(): void {
    this.watch(this.client);
    if (this.client.isCluster && typeof this.client.nodes === 'function') {
      for (const node of this.client.nodes('all')) this.watch(node);
      this.client.on('+node', this.onNode);
      this.client.on('-node', this.onNodeGone);
    }
  }

  private stop(): void {
    for (const [connection, onReady] of this.watched) connection.off('ready', onReady);
    this.watched.clear();
    if (this.client.isCluster) {
      this.client.off('+node', this.onNode);
      this.client.off('-node', this.onNodeGone);
    }
  }

  private unwatch(connection: ReconnectingClient): void {
    const onReady = this.watched.get(connection);
    if (!onReady) return;
    connection.off('ready', onReady);
    this.watched.delete(connection);
  }

  /** Follows `connection`'s `ready` events; the first one counts as a reconnect only if it was up before. */
  private watch(connection: ReconnectingClient): void {
    if (this.watched.has(connection)) return;
    let connectedBefore = CONNECTED_BEFORE.has(connection.status ?? '');
    const onReady = () => {
      if (connectedBefore) this.fire();
      connectedBefore = true;
    };
    connection.on('ready', onReady);
    this.watched.set(connection, onReady);
  }

  private fire(): void {
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (error) {
        // A throwing listener must not keep the others from hearing of the reconnect,
        // nor break ioredis's own event dispatch: surface it in its own tick.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
