/**
 * Coming from singleton-process v1 (the seed): its calls, its callback persisters and its
 * persister namespace work as its README wrote them (issue 16). Where we deliberately do
 * otherwise (owner-checked release, exit 70 on a silent loss) the README says so.
 */
import { PersisterError } from '../../lib/errors';
import { fromCallbackPersister } from '../../lib/persisters/fromCallbackPersister';
import { persisters } from '../../lib/persisters/seedPersisters';
import { Singleton } from '../../lib/Singleton';
import { recordingLogger } from '../helpers/ControllablePersister';
import { freePort } from '../setup/redisServer';

/** A seed-style store in memory: lock name → creation time, as the seed's MongoDb persister kept it. */
class SeedStore {
  readonly locks = new Map<string, Date>();
  failPersist = false;
  persistLock(name: string, cb: (err: unknown, success?: boolean, created?: Date) => void): void {
    setImmediate(() => {
      if (this.failPersist) return cb(new Error('connection reset'));
      const created = this.locks.get(name);
      if (created) return cb(null, false, created);
      this.locks.set(name, new Date());
      cb(null, true);
    });
  }
  deleteLock(name: string, cb: (err?: unknown) => void): void {
    setImmediate(() => {
      this.locks.delete(name);
      cb();
    });
  }
  lockExists(name: string, cb: (err: unknown, exists?: boolean) => void): void {
    setImmediate(() => cb(null, this.locks.has(name)));
  }
}

const base = { handleSignals: false, handleErrors: false, onLost: 'emit' } as const;

describe('singleton-process v1 code, unchanged', () => {
  it('new Singleton(name, legacyPersister): wrapped automatically, logged once, lock/exists/release with callbacks', async () => {
    const store = new SeedStore();
    const { lines, logger } = recordingLogger();
    const s = new Singleton('seed-job', store, { ...base, logger });
    const again = new Singleton('seed-job-2', store, { ...base, logger });
    expect(lines.filter((l) => /fromCallbackPersister/.test(l.msg ?? ''))).toHaveLength(1);
    const locked = await new Promise((resolve, reject) => s.lock((err, ok) => (err ? reject(err) : resolve(ok))));
    expect(locked).toBe(true);
    expect(await new Promise((resolve) => again.exists((_e, v) => resolve(v)))).toBe(false);
    expect(await new Promise((resolve) => s.exists((_e, v) => resolve(v)))).toBe(true);
    await new Promise<void>((resolve, reject) => s.release((err) => (err ? reject(err) : resolve())));
    expect(store.locks.has('seed-job')).toBe(false);
  });

  it("lockExpireSeconds is the staleness: a crashed holder's lock is taken over after it, and reported as expired", async () => {
    const store = new SeedStore();
    store.locks.set('crashed', new Date(Date.now() - 2_000)); // a holder that died 2 s ago
    const s = new Singleton('crashed', store, { ...base, lockExpireSeconds: 1, logger: recordingLogger().logger });
    const expired: unknown[] = [];
    s.on('expired', (e) => expired.push(e.previous.owner));
    expect(await s.lock()).toBe(true);
    expect(expired).toHaveLength(1);
    await s.release();
  });

  it('expired is emitted whenever a stale lock was taken out, also when the re-lock then fails', async () => {
    const store = new SeedStore();
    store.locks.set('flaky', new Date(Date.now() - 5_000));
    const p = fromCallbackPersister(store, { staleAfterMs: 1_000 });
    const s = new Singleton('flaky', p, { ...base, logger: recordingLogger().logger });
    const seen: string[] = [];
    s.on('expired', () => seen.push('expired'));
    s.on('error', () => seen.push('error'));
    // The delete goes through, then the store fails on the re-lock.
    const original = store.deleteLock.bind(store);
    store.deleteLock = (name, cb) => {
      original(name, cb);
      store.failPersist = true;
    };
    const error = await s.lock().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PersisterError);
    expect(seen).toEqual(['expired', 'error']);
    // One level of cause: the store's own error.
    expect((error as PersisterError).cause).toBeInstanceOf(Error);
    expect((error as PersisterError).cause).not.toBeInstanceOf(PersisterError);
    expect(((error as PersisterError).cause as Error).message).toBe('connection reset');
  });

  it('a holder through the adapter is told (lost) before others may take its lock over', async () => {
    const store = new SeedStore();
    const p = fromCallbackPersister(store, { staleAfterMs: 900 });
    // A lease longer than the staleness: only the store's (local-clock) expiry can bound it.
    const s = new Singleton('told-first', p, { ...base, ttlMs: 1_500, logger: recordingLogger().logger });
    await s.lock();
    const created = (store.locks.get('told-first') as Date).getTime();
    // The holder stops renewing (its renewals fail), so its lock ages in the store.
    store.lockExists = (_name, cb) => setImmediate(() => cb(new Error('store unreachable')));
    store.persistLock = (_name, cb) => setImmediate(() => cb(new Error('store unreachable')));
    store.deleteLock = (_name, cb) => setImmediate(() => cb(new Error('store unreachable')));
    const lostAt = await new Promise<number>((resolve) => s.on('lost', () => resolve(Date.now())));
    expect(lostAt).toBeLessThan(created + 900);
  });

  it('persisters.MongoDb(url) as the seed README wrote it: a persister at once, a PersisterError (not a hang) when the server is away', async () => {
    const port = await freePort();
    const persister = new persisters.MongoDb(`mongodb://127.0.0.1:${port}/seed?serverSelectionTimeoutMS=500&connectTimeoutMS=500`);
    const s = new Singleton('mongo-seed', persister, { ...base, logger: recordingLogger().logger });
    s.on('error', () => undefined);
    await expect(s.lock()).rejects.toBeInstanceOf(PersisterError);
    await persister.close();
    expect(() => persisters.MongoDb('redis://x')).toThrow(/mongodb:\/\//);
  }, 20_000);
});
