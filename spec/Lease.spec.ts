/**
 * The lease as a first-class object (DESIGN.md §2 "The lease"): acquire() hands it out,
 * its signal says why it ended, one instance holds one lease, and neither a slow renewal,
 * a slow attempt nor a store that does not fence can mislead the holder (issue 10's
 * scenarios 1, 6, 8 and 9, in-process; the process-level ones are in Lease.processes.spec.ts).
 */
import { LockLostError, PersisterError } from '../lib/errors';
import { Lease } from '../lib/Lease';
import { MemoryPersister } from '../lib/persisters/MemoryPersister';
import { fromCallbackPersister } from '../lib/persisters/fromCallbackPersister';
import type { AcquireRequest, AcquireResult, Persister, RenewRequest, RenewResult } from '../lib/persisters/Persister';
import { processHooks } from '../lib/processHooks';
import { Singleton } from '../lib/Singleton';
import type { SingletonOptions } from '../lib/options';
import { ControllablePersister } from './helpers/ControllablePersister';
import { listenerCounts } from './helpers/child';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const baseline = listenerCounts();

function singleton(name: string, persister: Persister, options: SingletonOptions = {}): Singleton {
  return new Singleton(name, persister, { logger: quiet, onLost: 'emit', ...options });
}

function reasonOf(signal: AbortSignal): string | undefined {
  return signal.reason instanceof LockLostError ? signal.reason.reason : undefined;
}

describe('acquire() and the Lease', () => {
  it('hands out a Lease with token-free fields; its own release() ends it without aborting the signal', async () => {
    const s = singleton('lease-basic', new MemoryPersister());
    const lease = await s.acquire();
    expect(lease).toBeInstanceOf(Lease);
    if (!lease) return;
    expect(lease.name).toBe('lease-basic');
    expect(typeof lease.fencingToken === 'number' || typeof lease.fencingToken === 'bigint').toBe(true);
    expect(lease.expiresAt.getTime()).toBeGreaterThan(lease.acquiredAt.getTime());
    // The secret token never shows: not as a field, not in a serialised lease.
    expect(Object.keys(lease)).not.toContain('token');
    expect(JSON.stringify(lease)).not.toMatch(/[0-9a-f]{32}/);
    expect(s.state).toBe('locked');
    expect(s.lease).toBe(lease);
    await lease.release();
    await lease.release(); // idempotent
    expect(lease.signal.aborted).toBe(false);
    expect(lease.ended).toBe(true);
    expect(s.state).toBe('released');
  });

  it('one instance, one lease: a second acquire() answers null; with wait it gets the next lease', async () => {
    const s = singleton('lease-one', new MemoryPersister());
    const first = await s.acquire();
    expect(first).not.toBeNull();
    expect(await s.acquire()).toBeNull();
    const next = s.acquire({ wait: true, timeoutMs: 5_000 });
    await new Promise((r) => setTimeout(r, 20));
    await first?.release();
    const second = await next;
    expect(second).not.toBeNull();
    expect(second).not.toBe(first);
    expect(Number(second?.fencingToken)).toBeGreaterThan(Number(first?.fencingToken));
    await second?.release();
  });

  it("the signal's reason: `released` when the instance's release() ends it", async () => {
    const s = singleton('lease-released', new MemoryPersister());
    const lease = await s.acquire();
    await s.release();
    expect(lease?.signal.aborted).toBe(true);
    expect(reasonOf(lease!.signal)).toBe('released');
  });

  it("the signal's reason: `expired`, `taken-over`, `store-unreachable` when lost", async () => {
    jest.useFakeTimers();
    try {
      const reasons: string[] = [];
      for (const how of ['expired', 'taken-over', 'store-unreachable'] as const) {
        const p = new ControllablePersister();
        const s = singleton(`lease-${how}`, p, { ttlMs: 300 });
        const lost: string[] = [];
        s.on('lost', (e) => lost.push(e.reason));
        const lease = await s.acquire();
        if (how === 'expired') p.stolenBy = null;
        if (how === 'taken-over') p.stolenBy = { ...(await p.inspect(`lease-${how}`))!, owner: 'thief', pid: 1 };
        if (how === 'store-unreachable') p.down = true;
        await jest.advanceTimersByTimeAsync(400);
        expect(lost).toEqual([how]);
        reasons.push(reasonOf(lease!.signal) ?? 'none');
      }
      expect(reasons).toEqual(['expired', 'taken-over', 'store-unreachable']);
    } finally {
      jest.useRealTimers();
    }
  });

  it('run() while the instance holds a lease answers conflict naming this instance; run({ wait }) waits its turn', async () => {
    const s = singleton('lease-runs', new MemoryPersister());
    const order: string[] = [];
    let releaseFirst!: () => void;
    const first = s.run(async () => {
      order.push('first-start');
      await new Promise<void>((r) => (releaseFirst = r));
      order.push('first-end');
      return 1;
    });
    await new Promise((r) => setTimeout(r, 10));
    const second = await s.run(() => {
      order.push('second');
      return 2;
    });
    expect(second).toMatchObject({ status: 'conflict', holder: { owner: s.owner, pid: process.pid } });
    const third = s.run(
      () => {
        order.push('third');
        return 3;
      },
      { wait: true },
    );
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['first-start']);
    releaseFirst();
    expect(await first).toEqual({ status: 'done', value: 1 });
    expect(await third).toEqual({ status: 'done', value: 3 });
    expect(order).toEqual(['first-start', 'first-end', 'third']);
    expect(s.state).toBe('released');
  });

  it("the instance's release() during run(): run rejects with LockLostError (released)", async () => {
    const s = singleton('lease-run-release', new MemoryPersister());
    const running = s.run((signal) => new Promise((resolve) => signal.addEventListener('abort', () => resolve('stopped'))));
    await new Promise((r) => setTimeout(r, 10));
    await s.release();
    await expect(running).rejects.toMatchObject({ name: 'LockLostError', reason: 'released' });
  });
});

/** A store without renewMany where renewals of one name never answer. */
class OneSlowName implements Persister {
  readonly inner = new MemoryPersister();
  readonly capabilities = this.inner.capabilities;
  constructor(private readonly slow: string) {}
  acquire(r: AcquireRequest): Promise<AcquireResult> {
    return this.inner.acquire(r);
  }
  renew(r: RenewRequest): Promise<RenewResult> {
    if (r.name === this.slow) return new Promise(() => undefined);
    return this.inner.renew(r);
  }
  release(r: { name: string; token: string }): Promise<boolean> {
    return this.inner.release(r);
  }
  inspect(name: string) {
    return this.inner.inspect(name);
  }
}

describe('the keeper settles each lease on its own (scenario 6)', () => {
  it('a renewal that never answers loses only its own lease; the others on the persister keep renewing', async () => {
    jest.useFakeTimers();
    try {
      const p = new OneSlowName('slow');
      const slow = singleton('slow', p, { ttlMs: 600 });
      const healthy = singleton('healthy', p, { ttlMs: 600 });
      const lost: string[] = [];
      slow.on('lost', (e) => lost.push(`slow:${e.reason}`));
      healthy.on('lost', (e) => lost.push(`healthy:${e.reason}`));
      let renewed = 0;
      healthy.on('renewed', () => (renewed += 1));
      await slow.lock();
      await healthy.lock();
      await jest.advanceTimersByTimeAsync(6_000);
      expect(lost).toEqual(['slow:store-unreachable']);
      expect(healthy.state).toBe('locked');
      expect(renewed).toBeGreaterThanOrEqual(20);
      await healthy.release();
    } finally {
      jest.useRealTimers();
    }
  });
});

/** A store whose acquire answers only after `delayMs`. */
class SlowAcquire implements Persister {
  readonly inner = new MemoryPersister();
  readonly capabilities = this.inner.capabilities;
  constructor(private readonly delayMs: number) {}
  async acquire(r: AcquireRequest): Promise<AcquireResult> {
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    return this.inner.acquire(r);
  }
  renew(r: RenewRequest): Promise<RenewResult> {
    return this.inner.renew(r);
  }
  release(r: { name: string; token: string }): Promise<boolean> {
    return this.inner.release(r);
  }
  inspect(name: string) {
    return this.inner.inspect(name);
  }
}

describe('waiting notices a deadline or an abort within a few ms, also during an attempt (scenario 8)', () => {
  it('timeoutMs: 50 with an attempt in flight for 1.5 s and retryIntervalMs 2000 rejects at once, and the late lease is given back', async () => {
    const p = new SlowAcquire(1_500);
    // Someone else holds it, so the waiter sleeps between slow attempts.
    await p.inner.acquire({ name: 'slow-wait', token: 'other', ttlMs: 60_000, owner: { owner: 'other', hostname: 'h', pid: 1 } });
    const s = singleton('slow-wait', p, { retryIntervalMs: 2_000, handleSignals: false, handleErrors: false });
    const started = Date.now();
    await expect(s.waitForLock({ timeoutMs: 50 })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('an abort during an attempt that then succeeds: acquire({ wait }) rejects at once and the lease is released', async () => {
    const p = new SlowAcquire(400);
    const s = singleton('slow-abort', p, { retryIntervalMs: 2_000, handleSignals: false, handleErrors: false });
    const controller = new AbortController();
    const waiting = s.acquire({ wait: true, signal: controller.signal });
    await new Promise((r) => setTimeout(r, 50));
    const abortedAt = Date.now();
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - abortedAt).toBeLessThan(100);
    // The attempt lands later; nobody wants that lease any more, so it is given back.
    await new Promise((r) => setTimeout(r, 600));
    expect(await p.inner.inspect('slow-abort')).toBeNull();
    expect(s.lease).toBeUndefined();
    expect(processHooks.installed()).toEqual({ signals: [], errors: false });
  });
});

describe('capabilities are acted on (scenario 9)', () => {
  it('a store that does not fence yields no fencing token: not on the lease, the instance or the locked event', async () => {
    const store = new Map<string, number>();
    const legacy = {
      persistLock(name: string, cb: (err: Error | null, created?: boolean, createdAt?: Date) => void) {
        if (store.has(name)) return cb(null, false, new Date(store.get(name)!));
        store.set(name, Date.now());
        cb(null, true);
      },
      deleteLock(name: string, cb: (err: Error | null) => void) {
        store.delete(name);
        cb(null);
      },
      lockExists(name: string, cb: (err: Error | null, exists?: boolean) => void) {
        cb(null, store.has(name));
      },
    };
    const p = fromCallbackPersister(legacy);
    expect(p.capabilities.fencing).toBe(false);
    const s = singleton('no-fence', p, { handleSignals: false, handleErrors: false });
    const events: unknown[] = [];
    s.on('locked', (e) => events.push(e.fencingToken));
    const lease = await s.acquire();
    expect(lease).not.toBeNull();
    expect(lease?.fencingToken).toBeUndefined();
    expect(s.fencingToken).toBeUndefined();
    expect(events).toEqual([undefined]);
    await lease?.release();
  });
});

describe('store release failures keep the lease (DESIGN.md: release())', () => {
  it('a release the store did not confirm emits error (not released), rejects, keeps the lease, and can be retried', async () => {
    const p = new ControllablePersister();
    const s = singleton('release-fails', p, { handleSignals: false, handleErrors: false });
    const seen: string[] = [];
    s.on('released', () => seen.push('released'));
    s.on('error', (e) => seen.push(`error:${e.name}`));
    await s.lock();
    p.down = true;
    await expect(s.release()).rejects.toBeInstanceOf(PersisterError);
    expect(seen).toEqual(['error:PersisterError']);
    expect(s.state).toBe('locked');
    expect(await p.inner.inspect('release-fails')).not.toBeNull();
    p.down = false;
    await s.release();
    expect(seen).toEqual(['error:PersisterError', 'released']);
    expect(await p.inner.inspect('release-fails')).toBeNull();
  });
});

describe('seed-style callbacks', () => {
  it('lock(cb), exists(cb) and release(cb) call back node-style', async () => {
    const s = singleton('callbacks', new MemoryPersister(), { handleSignals: false, handleErrors: false });
    const locked = await new Promise((resolve, reject) => s.lock((err, v) => (err ? reject(err) : resolve(v))));
    expect(locked).toBe(true);
    const exists = await new Promise((resolve, reject) => s.exists((err, v) => (err ? reject(err) : resolve(v))));
    expect(exists).toBe(true);
    await new Promise<void>((resolve, reject) => s.release((err) => (err ? reject(err) : resolve())));
    expect(s.state).toBe('released');
    expect(() => s.lock('nope' as never)).toThrow(/lock\(callback\)/);
  });

  it('after all of the above, no process listener is left behind', () => {
    expect(processHooks.installed()).toEqual({ signals: [], errors: false });
    expect(listenerCounts()).toEqual(baseline);
  });
});
