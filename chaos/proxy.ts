/**
 * A TCP proxy in front of the lock Redis, one listening port per worker slot,
 * so the suite can cut one worker off the lock store while the others (and the
 * storage Redis) carry on.
 *
 * - `freeze(slot)`: that slot's connections stop carrying bytes in either
 *   direction (a black hole: the client sees no error, its commands hang), and
 *   new connections are accepted but never joined to Redis.
 * - `cut(slot)`: destroys every connection of that slot and lifts the freeze;
 *   the client reconnects.
 * A connection whose Redis side closes (a store restart) is closed on the client side too.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

interface Pair {
  client: Socket;
  upstream?: Socket;
}

class SlotProxy {
  readonly pairs = new Set<Pair>();
  frozen = false;

  constructor(
    readonly server: Server,
    readonly port: number,
  ) {}
}

/** The proxy of one suite run. */
export class LockProxy {
  private readonly slots = new Map<number, SlotProxy>();

  constructor(private readonly upstreamPort: number) {}

  /** Listens for `slot` on a free loopback port (once per slot); resolves that port. */
  async listen(slot: number): Promise<number> {
    const existing = this.slots.get(slot);
    if (existing) return existing.port;
    const server = createServer((client) => this.accept(slot, client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    this.slots.set(slot, new SlotProxy(server, port));
    return port;
  }

  /** Black-holes every connection of `slot`, present and new, until {@link cut}. */
  freeze(slot: number): void {
    const proxy = this.slot(slot);
    proxy.frozen = true;
    for (const pair of proxy.pairs) {
      // Unpipe first: a pipe resumes its source on 'drain', which would undo a bare pause().
      if (pair.upstream) {
        pair.client.unpipe(pair.upstream);
        pair.upstream.unpipe(pair.client);
        pair.upstream.pause();
      }
      pair.client.pause();
    }
  }

  /** Closes every connection of `slot` and lifts its freeze. */
  cut(slot: number): void {
    const proxy = this.slot(slot);
    proxy.frozen = false;
    for (const pair of [...proxy.pairs]) this.drop(proxy, pair);
  }

  /** Number of open client connections of `slot`. */
  connections(slot: number): number {
    return this.slot(slot).pairs.size;
  }

  /** Closes every listener and connection. */
  async close(): Promise<void> {
    for (const proxy of this.slots.values()) {
      for (const pair of [...proxy.pairs]) this.drop(proxy, pair);
      await new Promise((resolve) => proxy.server.close(resolve));
    }
    this.slots.clear();
  }

  private slot(slot: number): SlotProxy {
    const proxy = this.slots.get(slot);
    if (!proxy) throw new RangeError(`Expected \`slot\` to be a slot the proxy listens for, got ${slot}`);
    return proxy;
  }

  private accept(slot: number, client: Socket): void {
    const proxy = this.slot(slot);
    const pair: Pair = { client };
    proxy.pairs.add(pair);
    client.on('error', () => this.drop(proxy, pair));
    client.on('close', () => this.drop(proxy, pair));
    if (proxy.frozen) {
      client.pause(); // accepted, never joined: the client waits for a reply that never comes
      return;
    }
    this.join(proxy, pair);
  }

  private join(proxy: SlotProxy, pair: Pair): void {
    const upstream = connect(this.upstreamPort, '127.0.0.1');
    pair.upstream = upstream;
    upstream.setNoDelay(true);
    pair.client.setNoDelay(true);
    upstream.on('error', () => this.drop(proxy, pair));
    upstream.on('close', () => this.drop(proxy, pair));
    pair.client.pipe(upstream);
    upstream.pipe(pair.client);
  }

  private drop(proxy: SlotProxy, pair: Pair): void {
    if (!proxy.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  }
}
