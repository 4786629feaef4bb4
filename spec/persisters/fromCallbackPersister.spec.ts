import pino from 'pino';
import { PersisterError } from '../../lib/errors';
import { type CallbackPersister, UNKNOWN_OWNER, fromCallbackPersister } from '../../lib/persisters/fromCallbackPersister';
import { Singleton } from '../../lib/Singleton';
import { newToken, testOwner, waitUntil } from './conformance';

/**
 * A user's seed-style persister (singleton-process v1 shape): a Map of lock name →
 * created time, answering on a later tick like a real store would. Switches let a
 * test make it fail, throw, or never answer.
 */
class SeedStore implements CallbackPersister {
  readonly locks = new Map<string, Date>();
  calls: string[] = [];
  failWith: Error | undefined;
  throwWith: Error | undefined;
  silent = false;
  /** Answers held back while `silent`, to be delivered late. */
  readonly held: Array<() => void> = [];

  private answer(name: string, method: string, respond: () => void): void {
    this.calls.push(`${method}:${name}`);
    if (this.throwWith) throw this.throwWith;
    if (this.silent) {
      this.held.push(respond);
      return;
    }
    setImmediate(respond);
  }

  persistLock(name: string, cb: (err: unknown, success?: boolean, created?: unknown) => void): void {
    this.answer(name, 'persistLock', () => {
      if (this.failWith) return cb(this.failWith);
      const created = this.locks.get(name);
      if (created) return cb(null, false, created);
      this.locks.set(name, new Date());
      cb(null, true);
    });
  }

  deleteLock(name: string, cb: (err?: unknown) => void): void {
    this.answer(name, 'deleteLock', () => {
      if (this.failWith) return cb(this.failWith);
      this.locks.delete(name);
      cb(null);
    });
  }

  lockExists(name: string, cb: (err: unknown, exists?: boolean) => void): void {
    this.answer(name, 'lockExists', () => {
      if (this.failWith) return cb(this.failWith);
      cb(null, this.locks.has(name));
    });
  }
}

const A = testOwner(1);
const B = testOwner(2);

describe('fromCallbackPersister: shape and options', () => {
  it('names the missing method in a TypeError', () => {
    const store = new SeedStore();
    const partial = { persistLock: store.persistLock.bind(store), deleteLock: store.deleteLock.bind(store) };
    expect(() => fromCallbackPersister(partial as never)).toThrow(TypeError);
    expect(() => fromCallbackPersister(partial as never)).toThrow(/`legacy\.lockExists`/);
    expect(() => fromCallbackPersister({ ...partial, lockExists: 'yes' } as never)).toThrow(/`legacy\.lockExists`.*"yes" \(string\)/);
    expect(() => fromCallbackPersister({} as never)).toThrow(/`legacy\.persistLock`/);
    expect(() => fromCallbackPersister(null as never)).toThrow(/`legacy`/);
  });

  it('rejects bad options', () => {
    const store = new SeedStore();
    expect(() => fromCallbackPersister(store, { timeoutMs: 0 })).toThrow(RangeError);
    expect(() => fromCallbackPersister(store, { timeoutMs: '5' as never })).toThrow(/timeoutMs/);
    expect(() => fromCallbackPersister(store, { staleAfterMs: -1 })).toThrow(/staleAfterMs/);
    expect(() => fromCallbackPersister(store, { persistent: 1 as never })).toThrow(/persistent/);
  });

  it('claims only what a seed-style store gives', () => {
    expect(fromCallbackPersister(new SeedStore()).capabilities).toEqual({
      serverClock: false,
      notify: false,
      fencing: false,
      persistent: true,
    });
    expect(fromCallbackPersister(new SeedStore(), { persistent: false }).capabilities.persistent).toBe(false);
    expect(fromCallbackPersister(new SeedStore()).watch).toBeUndefined();
  });
});

describe('fromCallbackPersister: leases', () => {
  it('acquires a free name, keeps `this` of the legacy object, and names the holder to a second token', async () => {
    const store = new SeedStore();
    const p = fromCallbackPersister(store);
    const before = Date.now();
    const first = await p.acquire({ name: 'job', token: 't1', ttlMs: 5_000, owner: A });
    expect(first.acquired).toBe(true);
    if (!first.acquired) return;
    expect(first.lease).toMatchObject({ name: 'job', owner: A.owner, hostname: A.hostname, pid: A.pid });
    expect(first.expired).toBeUndefined();
    expect(first.lease.acquiredAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(first.lease.expiresAt.getTime() - first.lease.acquiredAt.getTime()).toBe(5_000);
    expect(Number(first.lease.fencingToken)).toBeGreaterThanOrEqual(before * 1000);
    expect(store.locks.has('job')).toBe(true);

    const second = await p.acquire({ name: 'job', token: 't2', ttlMs: 5_000, owner: B });
    expect(second).toEqual({ acquired: false, holder: first.lease });
  });

  it('reports a holder in another process as unknown, with the store’s created time and a future expiry', async () => {
    const store = new SeedStore();
    const here = fromCallbackPersister(store);
    const elsewhere = fromCallbackPersister(store);
    const first = await here.acquire({ name: 'job', token: 't1', ttlMs: 5_000, owner: A });
    const created = store.locks.get('job') as Date;
    const other = await elsewhere.acquire({ name: 'job', token: 't2', ttlMs: 3_000, owner: B });
    expect(first.acquired).toBe(true);
    expect(other.acquired).toBe(false);
    if (other.acquired) return;
    expect(other.holder).toMatchObject({ name: 'job', owner: UNKNOWN_OWNER, hostname: 'unknown', pid: 0, fencingToken: 0 });
    expect(other.holder.acquiredAt).toEqual(created);
    expect(other.holder.expiresAt.getTime()).toBeGreaterThan(Date.now() + 2_000);
    expect(await elsewhere.inspect('job')).toMatchObject({ owner: UNKNOWN_OWNER, acquiredAt: created });
    expect(await here.inspect('job')).toMatchObject({ owner: A.owner });
  });

  it('is idempotent for the holder’s token: same fence, after checking the lock still exists', async () => {
    const store = new SeedStore();
    const p = fromCallbackPersister(store);
    const first = await p.acquire({ name: 'job', token: 't1', ttlMs: 5_000, owner: A });
    store.calls = [];
    const again = await p.acquire({ name: 'job', token: 't1', ttlMs: 5_000, owner: A });
    expect(store.calls).toEqual(['lockExists:job']);
    if (first.acquired && again.acquired) {
      expect(again.lease.fencingToken).toBe(first.lease.fencingToken);
      expect(again.lease.acquiredAt).toEqual(first.lease.acquiredAt);
    } else throw new Error('expected both acquired');
  });

  it('hands out strictly increasing local fencing tokens', async () => {
    const p = fromCallbackPersister(new SeedStore());
    const fences: number[] = [];
    for (let i = 0; i < 20; i++) {
      const token = newToken();
      const r = await p.acquire({ name: 'f', token, ttlMs: 1_000, owner: A });
      if (!r.acquired) throw new Error('expected to acquire');
      fences.push(Number(r.lease.fencingToken));
      expect(await p.release({ name: 'f', token })).toBe(true);
    }
    for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
  });

  it('renews while the lock exists; lost (holder null) once it is gone; refuses other tokens', async () => {
    const store = new SeedStore();
    const p = fromCallbackPersister(store);
    await p.acquire({ name: 'job', token: 't1', ttlMs: 1_000, owner: A });
    const before = Date.now();
    const renewed = await p.renew({ name: 'job', token: 't1', ttlMs: 20_000 });
    expect(renewed.renewed).toBe(true);
    if (renewed.renewed) expect(renewed.expiresAt.getTime()).toBeGreaterThanOrEqual(before + 20_000);
    const wrong = await p.renew({ name: 'job', token: 't2', ttlMs: 20_000 });
    expect(wrong.renewed).toBe(false);
    if (!wrong.renewed) expect(wrong.holder?.owner).toBe(A.owner);
    store.locks.delete('job'); // an operator (or another seed-style client) deleted it
    expect(await p.renew({ name: 'job', token: 't1', ttlMs: 20_000 })).toEqual({ renewed: false, holder: null });
    expect(await p.release({ name: 'job', token: 't1' })).toBe(false);
    expect(await p.renew({ name: 'never', token: 't1', ttlMs: 20_000 })).toEqual({ renewed: false, holder: null });
  });

  it('releases only with the token that took it here', async () => {
    const store = new SeedStore();
    const p = fromCallbackPersister(store);
    await p.acquire({ name: 'job', token: 't1', ttlMs: 5_000, owner: A });
    store.calls = [];
    expect(await p.release({ name: 'job', token: 't2' })).toBe(false);
    expect(store.calls).toEqual([]); // never reached the store, so never deleted someone's lock
    expect(store.locks.has('job')).toBe(true);
    expect(await p.release({ name: 'job', token: 't1' })).toBe(true);
    expect(store.locks.has('job')).toBe(false);
    expect(await p.inspect('job')).toBeNull();
    expect(await p.release({ name: 'job', token: 't1' })).toBe(false);
  });

  it('retries a conflict whose lock vanished before the store could read it', async () => {
    const store = new SeedStore();
    let vanishing = 1;
    const original = store.persistLock.bind(store);
    store.persistLock = (name, cb) => {
      if (vanishing-- > 0) return setImmediate(() => cb(null, false, null));
      return original(name, cb);
    };
    const r = await fromCallbackPersister(store).acquire({ name: 'job', token: 't1', ttlMs: 5_000, owner: A });
    expect(r.acquired).toBe(true);
  });
});

describe('fromCallbackPersister: stale locks (seed lockExpireSeconds)', () => {
  it('without staleAfterMs never takes a lock over, however old', async () => {
    const store = new SeedStore();
    store.locks.set('job', new Date(Date.now() - 86_400_000));
    const r = await fromCallbackPersister(store).acquire({ name: 'job', token: 't1', ttlMs: 5_000, owner: A });
    expect(r.acquired).toBe(false);
    expect(store.locks.get('job')?.getTime()).toBeLessThan(Date.now() - 86_000_000);
  });

  it('takes over a lock older than staleAfterMs and reports it expired; a younger one is a conflict until then', async () => {
    const store = new SeedStore();
    const oldCreated = new Date(Date.now() - 10_000);
    store.locks.set('old', oldCreated);
    store.locks.set('young', new Date(Date.now() - 1_000));
    const p = fromCallbackPersister(store, { staleAfterMs: 5_000 });
    const old = await p.acquire({ name: 'old', token: 't1', ttlMs: 60_000, owner: A });
    expect(old.acquired).toBe(true);
    if (!old.acquired) return;
    expect(old.expired).toMatchObject({ owner: UNKNOWN_OWNER, acquiredAt: oldCreated, expiresAt: new Date(oldCreated.getTime() + 5_000) });
    // The lease of this adapter ends at staleAfterMs too: others may take it over then.
    expect(old.lease.expiresAt.getTime() - old.lease.acquiredAt.getTime()).toBe(5_000);
    const young = await p.acquire({ name: 'young', token: 't1', ttlMs: 60_000, owner: A });
    expect(young.acquired).toBe(false);
    if (!young.acquired) {
      const takeOverAt = (store.locks.get('young') as Date).getTime() + 5_000;
      expect(young.holder.expiresAt.getTime()).toBe(takeOverAt);
    }
  });

  it('a renewing holder re-creates its lock half-way through staleAfterMs; one that stops renewing is refused at staleAfterMs, and its release leaves the (maybe someone else’s) lock alone', async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      const store = new SeedStore();
      const p = fromCallbackPersister(store, { staleAfterMs: 5_000 });
      await p.acquire({ name: 'job', token: 't1', ttlMs: 2_000, owner: A });
      const createdFirst = (store.locks.get('job') as Date).getTime();
      jest.setSystemTime(Date.now() + 3_000);
      const renewed = await p.renew({ name: 'job', token: 't1', ttlMs: 2_000 });
      expect(renewed.renewed).toBe(true);
      if (renewed.renewed) expect(renewed.expiresAt.getTime()).toBe(Date.now() + 2_000);
      // Re-created: to everyone else, the lock is young again.
      expect((store.locks.get('job') as Date).getTime()).toBe(createdFirst + 3_000);
      // No renewal for staleAfterMs: others may take it over now, so this holder is refused.
      jest.setSystemTime(Date.now() + 5_000);
      expect(await p.renew({ name: 'job', token: 't1', ttlMs: 2_000 })).toEqual({ renewed: false, holder: null });
      expect(await p.release({ name: 'job', token: 't1' })).toBe(false);
      expect(store.locks.has('job')).toBe(true);
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('fromCallbackPersister: store failures', () => {
  it('turns callback errors into PersisterError with the cause kept', async () => {
    const store = new SeedStore();
    const p = fromCallbackPersister(store);
    await p.acquire({ name: 'job', token: 't1', ttlMs: 5_000, owner: A });
    const boom = new Error('connection refused');
    store.failWith = boom;
    for (const call of [
      () => p.acquire({ name: 'other', token: 't1', ttlMs: 5_000, owner: A }),
      () => p.renew({ name: 'job', token: 't1', ttlMs: 5_000 }),
      () => p.release({ name: 'job', token: 't1' }),
      () => p.inspect('job'),
    ]) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PersisterError);
      expect((error as PersisterError).cause).toBe(boom);
      expect((error as Error).message).toMatch(/connection refused/);
    }
    store.failWith = undefined;
    expect(await p.release({ name: 'job', token: 't1' })).toBe(true); // a failed release can be retried
  });

  it('turns a method that throws into PersisterError', async () => {
    const store = new SeedStore();
    store.throwWith = new Error('not connected');
    await expect(fromCallbackPersister(store).inspect('job')).rejects.toThrow(PersisterError);
  });

  it('fails a callback that never comes after timeoutMs, and undoes a lock created after giving up', async () => {
    const store = new SeedStore();
    const p = fromCallbackPersister(store, { timeoutMs: 50 });
    store.silent = true;
    const started = Date.now();
    const error = await p.acquire({ name: 'job', token: 't1', ttlMs: 5_000, owner: A }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PersisterError);
    expect((error as Error).message).toMatch(/did not call back within 50 ms/);
    expect(Date.now() - started).toBeLessThan(1_000);
    store.silent = false;
    for (const late of store.held.splice(0)) late(); // the store finally creates the lock…
    await waitUntil(() => !store.locks.has('job') && store.calls.includes('deleteLock:job'), 2_000, 'the late lock to be deleted');
    expect((await p.acquire({ name: 'job', token: 't2', ttlMs: 5_000, owner: B })).acquired).toBe(true);
  });

  it('ignores a callback called twice', async () => {
    const store = new SeedStore();
    store.lockExists = (_name, cb) => {
      cb(null, false);
      cb(null, true);
    };
    await expect(fromCallbackPersister(store).inspect('job')).resolves.toBeNull();
  });
});

describe('fromCallbackPersister: with Singleton', () => {
  it('locks, conflicts and releases through a seed-style store', async () => {
    const store = new SeedStore();
    const options = { handleSignals: false, handleErrors: false, ttlMs: 5_000, logger: pino({ level: 'silent' }) };
    const one = new Singleton('seed-job', fromCallbackPersister(store), options);
    const two = new Singleton('seed-job', fromCallbackPersister(store), options);
    try {
      expect(await one.lock()).toBe(true);
      expect(await two.lock()).toBe(false);
      expect(store.locks.has('seed-job')).toBe(true);
      await one.release();
      expect(store.locks.has('seed-job')).toBe(false);
      expect(await two.lock()).toBe(true);
    } finally {
      await one.release();
      await two.release();
    }
  });
});
