/**
 * Why fencing tokens matter.
 *
 * A lock alone cannot stop a holder that stalls (a long GC pause, a frozen VM, a
 * slow network) between checking "I still hold the lock" and its write reaching
 * the storage: meanwhile its lease runs out, another writer takes the lock and
 * writes, and then the stale write lands on top. The fix is at the storage: each
 * lease comes with a fencing token that only ever increases, every write carries
 * it, and the storage refuses a write whose token is lower than the highest it
 * has seen.
 *
 * Here writer A and writer B are two Singletons on the same lock (one process, so
 * the story reads in order). A stalls mid-write; its lease expires; B takes
 * over and writes; A wakes up and sends its stale write: the storage refuses it.
 *
 *   npx tsx examples/fenced-writes.ts
 *   npx tsx examples/fenced-writes.ts --store redis://127.0.0.1:6379
 *
 * Store: `--store URL`, else $SINGLETON_STORE, else the file store (no server).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import {
  FilePersister,
  type Persister,
  persisterFromUrl,
  type ReleaseRequest,
  type RenewRequest,
  type RenewResult,
  Singleton,
} from '../lib';
import { exampleArgs } from './args';

const values = exampleArgs('fenced-writes', 'usage: npx tsx examples/fenced-writes.ts [--store URL] [--name NAME]', {
  store: { type: 'string' },
  name: { type: 'string', default: 'example-fenced-writes' },
});

const TTL_MS = 1_500;
const started = performance.now();
const say = (who: string, text: string) =>
  process.stdout.write(`${`+${((performance.now() - started) / 1000).toFixed(2)} s`.padStart(8)}  ${who.padEnd(9)} ${text}\n`);

/** The storage the writers share, e.g. a database row. It remembers the highest fencing token it has seen. */
class FencedStorage {
  value = '(empty)';
  private highest: bigint | undefined;

  /** Applies the write unless its token is lower than one already seen. */
  write(writer: string, fencingToken: bigint | number, value: string): boolean {
    const token = BigInt(fencingToken);
    if (this.highest !== undefined && token < this.highest) {
      say('storage', `REFUSED ${writer}'s write "${value}": its fencing token ${token} is lower than ${this.highest}, already seen`);
      return false;
    }
    this.highest = token;
    this.value = value;
    say('storage', `accepted ${writer}'s write "${value}" (fencing token ${token})`);
    return true;
  }
}

/**
 * A persister whose calls can be frozen, to play a stalled process: while
 * `stalled`, its renewals and releases never reach the store (they never answer).
 */
class StallablePersister implements Persister {
  stalled = false;
  readonly capabilities: Persister['capabilities'];

  constructor(private readonly inner: Persister) {
    this.capabilities = inner.capabilities;
  }

  acquire(r: Parameters<Persister['acquire']>[0]) {
    return this.inner.acquire(r);
  }
  renew(r: RenewRequest): Promise<RenewResult> {
    return this.stalled ? new Promise<never>(() => undefined) : this.inner.renew(r);
  }
  release(r: ReleaseRequest): Promise<boolean> {
    return this.stalled ? new Promise<never>(() => undefined) : this.inner.release(r);
  }
  inspect(name: string) {
    return this.inner.inspect(name);
  }
  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

async function openStore(): Promise<Persister> {
  const url = values.store ?? process.env.SINGLETON_STORE;
  return url ? persisterFromUrl(url) : new FilePersister();
}

async function main(): Promise<void> {
  const storage = new FencedStorage();
  // Each writer has its own connection to the store, as two processes would.
  const persisterA = new StallablePersister(await openStore());
  const persisterB = await openStore();
  // This program prints what happens itself; the library logs errors only.
  const logger = pino({ level: process.env.SINGLETON_LOG_LEVEL ?? 'error' }, pino.destination(2));
  const a = new Singleton(values.name, persisterA, { ttlMs: TTL_MS, owner: 'writer-A', logger });
  const b = new Singleton(values.name, persisterB, { ttlMs: TTL_MS, owner: 'writer-B', logger });

  try {
    a.on('lost', ({ reason }) =>
      say('(library)', `A's lease is lost (${reason}): A's code is stalled in the middle of its write and cannot act on it`),
    );
    b.on('conflict', ({ holder }) => say('writer B', `standing by: ${holder.owner} holds the lock`));
    b.on('expired', ({ previous }) => say('writer B', `takes over the lease of ${previous.owner}, which ran out without a release`));

    if (!(await a.lock())) {
      say('writer A', `the lock is held by ${a.holder?.owner ?? 'someone else'}: is another copy of this example running?`);
      process.exitCode = 1;
      return;
    }
    const tokenA = a.fencingToken as bigint | number;
    say('writer A', `holds the lock, fencing token ${tokenA}`);
    storage.write('A', tokenA, 'balance = 100');

    let bWrote!: () => void;
    const bHasWritten = new Promise<void>((resolve) => (bWrote = resolve));
    const writerB = (async () => {
      await b.waitForLock();
      say('writer B', `holds the lock, fencing token ${b.fencingToken}`);
      storage.write('B', b.fencingToken as bigint | number, 'balance = 80');
      bWrote();
    })();

    // A checks its lease, starts its next write... and stalls: renewals stop going out too.
    say('writer A', `checks it still holds the lock (${a.state}), starts writing "balance = 150"... and stalls for ${(2 * TTL_MS) / 1000} s`);
    persisterA.stalled = true;
    // (Waiting for B's write as well only keeps the story in this order on a very slow machine.)
    await Promise.all([sleep(2 * TTL_MS), bHasWritten]);
    persisterA.stalled = false;
    say('writer A', `wakes up; its write goes out, still with fencing token ${tokenA}`);
    const accepted = storage.write('A', tokenA, 'balance = 150');

    await writerB;
    say('storage', `final value: "${storage.value}"`);
    say(
      'result',
      accepted
        ? 'UNEXPECTED: the stale write was accepted'
        : "the stale write was refused. Without the fencing token, A's late write would have silently overwritten B's.",
    );
    if (accepted) process.exitCode = 1;
  } finally {
    await b.release();
    await Promise.all([persisterA.close(), persisterB.close?.()]);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`fenced-writes: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
