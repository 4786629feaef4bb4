import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis, { type RedisOptions } from 'ioredis';
import { Coalescer, type CoalescerOptions } from '../lib/Coalescer';
import { FileOutcomeStore } from '../lib/coalescer/FileOutcomeStore';
import { memoryOutcomeStoreFor } from '../lib/coalescer/MemoryOutcomeStore';
import { CoalescedError, type Jsonified } from '../lib/coalescer/outcome';
import { type OutcomeStore, outcomeStoreFor } from '../lib/coalescer/OutcomeStore';
import { RedisOutcomeStore } from '../lib/coalescer/RedisOutcomeStore';
import { LockLostError, PersisterError, SingletonError } from '../lib/errors';
import type { Logger } from '../lib/logger';
import { FilePersister } from '../lib/persisters/FilePersister';
import { lockPaths } from '../lib/persisters/file/names';
import { MemoryPersister } from '../lib/persisters/MemoryPersister';
import type { AcquireResult, Persister } from '../lib/persisters/Persister';
import { RedisPersister } from '../lib/persisters/RedisPersister';
import { fromCallbackPersister } from '../lib/persisters/fromCallbackPersister';
import type { CoalescerWorkerConfig } from './fixtures/coalescerWorker';
import { type FixtureChild, killAllChildren, listenerCounts } from './helpers/child';
import { freePort } from './setup/redisServer';
import { waitUntil } from './persisters/conformance';
import { expectOneRunForAll, expectTakeoverAfterKill, finish, spawnWorkers } from './coalescer/workers';

const runId = Math.random().toString(36).slice(2, 8);
let seq = 0;
const uniqueKey = (hint: string) => `${hint}:${runId}:${++seq}`;

function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set: the jest global setup should have started redis-server');
  return url;
}

/** Records log lines; the Coalescer's own waiting must never log above debug. */
function recordingLogger(): { lines: Array<{ level: string; msg?: string }>; logger: Logger } {
  const lines: Array<{ level: string; msg?: string }> = [];
  const at = (level: string) => (_obj: object, msg?: string) => void lines.push({ level, msg });
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Keeps every `acquire` answer of `persister`, so a test can see that a caller is waiting. */
function recordAcquires(persister: Persister): AcquireResult[] {
  const results: AcquireResult[] = [];
  const original = persister.acquire.bind(persister);
  persister.acquire = async (request) => {
    const result = await original(request);
    results.push(result);
    return result;
  };
  return results;
}

/** The same store, without release notifications or outcome broadcasts: a waiter wakes only on its timer. */
function deaf(persister: Persister, store: OutcomeStore): { persister: Persister; outcomes: OutcomeStore } {
  return {
    persister: {
      capabilities: persister.capabilities,
      acquire: (r) => persister.acquire(r),
      renew: (r) => persister.renew(r),
      release: (r) => persister.release(r),
      inspect: (n) => persister.inspect(n),
    },
    outcomes: {
      kind: store.kind,
      get: (k) => store.get(k),
      put: (k, o, t) => store.put(k, o, t),
      sweep: store.sweep?.bind(store),
      close: store.close?.bind(store),
    },
  };
}

/** One "process" of a test: its own persister (and connection) on the shared store. */
/** `inner`, except that every renewal finds the lease gone (the run's lease is lost at once). */
function losingRenewals(inner: Persister): Persister {
  return {
    capabilities: inner.capabilities,
    acquire: (r) => inner.acquire(r),
    renew: async () => ({ renewed: false, holder: null }),
    release: (r) => inner.release(r),
    inspect: (n) => inner.inspect(n),
  };
}

interface Member {
  persister: Persister;
  coalescer: Coalescer;
  lines: Array<{ level: string; msg?: string }>;
}

/** A store as the tests see it: members made on it, an inspector of its outcomes, cleanup. */
interface World {
  /** A persister of its own on the shared store (its own connection where the store has one). */
  persister(): Persister;
  /** A Coalescer on a persister of its own. */
  member(options?: CoalescerOptions, persister?: Persister): Member;
  /** Reads outcomes directly, to watch them appear and expire. */
  inspector: OutcomeStore;
  /** A persister whose store is down, or undefined where the store cannot be down. */
  downPersister?(): Promise<Persister>;
  cleanup(): Promise<void>;
}

type WorldFactory = () => World;

function baseWorld(makePersister: () => Persister, inspector: OutcomeStore, extraCleanup: () => Promise<void>): World {
  const coalescers: Coalescer[] = [];
  const persisters: Persister[] = [];
  const persister = () => {
    const p = makePersister();
    persisters.push(p);
    return p;
  };
  return {
    persister,
    member(options = {}, p = persister()) {
      const { lines, logger } = recordingLogger();
      const coalescer = new Coalescer(p, { logger, ...options });
      coalescers.push(coalescer);
      return { persister: p, coalescer, lines };
    },
    inspector,
    async cleanup() {
      await Promise.all(coalescers.map((c) => c.close()));
      await Promise.all(persisters.map((p) => p.close?.()));
      await extraCleanup();
    },
  };
}

const memoryWorld: WorldFactory = () => {
  const shared = new MemoryPersister(); // one process: every member shares the memory
  return baseWorld(() => shared, memoryOutcomeStoreFor(shared), async () => undefined);
};

const fileWorld: WorldFactory = () => {
  const root = mkdtempSync(join(tmpdir(), 'sp-coalescer-'));
  const dir = join(root, 'store');
  const world = baseWorld(() => new FilePersister({ dir, pollIntervalMs: 50 }), new FileOutcomeStore(dir), async () => {
    rmSync(root, { recursive: true, force: true });
  });
  world.downPersister = async () => {
    const notADir = join(root, 'plain-file');
    writeFileSync(notADir, 'not a directory');
    return new FilePersister({ dir: join(notADir, 'store') });
  };
  return world;
};

const redisWorld: WorldFactory = () => {
  const keyPrefix = `test:${runId}:coalescer:`;
  const clients: Redis[] = [];
  const connect = (url = redisUrl(), options: RedisOptions = {}) => {
    const client = new Redis(url, { maxRetriesPerRequest: 1, ...options });
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  };
  const admin = connect();
  const world = baseWorld(() => new RedisPersister(connect(), { keyPrefix }), new RedisOutcomeStore(admin, { keyPrefix }), async () => {
    for (const c of clients) {
      if (c.status === 'ready') await c.quit().catch(() => c.disconnect());
      else c.disconnect();
    }
  });
  world.downPersister = async () => {
    // Nothing listens there: every command fails at once (no offline queue).
    const url = `redis://127.0.0.1:${await freePort()}`;
    const client = connect(url, { enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null });
    return new RedisPersister(client, { keyPrefix, operationTimeoutMs: 1_000 });
  };
  return world;
};

describe.each([
  ['MemoryPersister', memoryWorld],
  ['FilePersister', fileWorld],
  ['RedisPersister', redisWorld],
] as Array<[string, WorldFactory]>)('Coalescer on %s', (_label, factory) => {
  let world: World;
  let baseline: ReturnType<typeof listenerCounts>;

  beforeEach(async () => {
    baseline = listenerCounts();
    world = factory();
  });
  afterEach(async () => {
    await world.cleanup();
    // Holding a run's lease installs the signal hooks; none may outlive it.
    expect(listenerCounts()).toEqual(baseline);
  });

  it('shares one flight among concurrent callers in one process, with no store traffic for the followers', async () => {
    const persister = world.persister();
    const { store, owned } = outcomeStoreFor(persister);
    const calls = { get: 0, put: 0, subscribe: 0 };
    const counted: OutcomeStore = {
      kind: store.kind,
      get: (k) => (calls.get++, store.get(k)),
      put: (k, o, t) => (calls.put++, store.put(k, o, t)),
      subscribe: store.subscribe && ((k, cb) => (calls.subscribe++, store.subscribe!(k, cb))),
    };
    const acquires = recordAcquires(persister);
    const { coalescer } = world.member({ outcomes: counted }, persister);
    let runs = 0;
    const fn = async () => {
      runs += 1;
      await new Promise((r) => setTimeout(r, 20));
      return { run: runs, tags: ['a', 'b'] };
    };
    try {
      expect(await coalescer.run(uniqueKey('single'), fn)).toEqual({ run: 1, tags: ['a', 'b'] });
      const single = { ...calls, acquires: acquires.length };
      calls.get = calls.put = calls.subscribe = 0;
      acquires.length = 0;

      const key = uniqueKey('ten');
      const results = await Promise.all(Array.from({ length: 10 }, () => coalescer.run(key, fn)));
      expect(runs).toBe(2);
      for (const r of results) expect(r).toEqual({ run: 2, tags: ['a', 'b'] });
      // Each caller gets its own copy, as a remote caller would: nobody shares a mutable object.
      expect(results[0]).not.toBe(results[1]);
      expect({ ...calls, acquires: acquires.length }).toEqual(single);
    } finally {
      if (owned) await store.close?.();
    }
  });

  it('runs fn once across processes; every waiting caller gets the same value', async () => {
    const a = world.member();
    const b = world.member();
    const acquiresB = recordAcquires(b.persister);
    const key = uniqueKey('shared');
    const gate = deferred();
    let runsA = 0;
    let runsB = 0;
    const fromA = Promise.all(
      [1, 2, 3].map(() =>
        a.coalescer.run(key, async () => {
          runsA += 1;
          await gate.promise;
          return { from: 'a', builtAt: new Date(0) };
        }),
      ),
    );
    await waitUntil(() => runsA === 1, 5_000, 'a runs fn');
    const fromB = Promise.all(
      [1, 2, 3].map(() =>
        b.coalescer.run(key, async () => {
          runsB += 1;
          return { from: 'b', builtAt: new Date(1) };
        }),
      ),
    );
    await waitUntil(() => acquiresB.some((r) => !r.acquired), 5_000, 'b finds the run in progress');
    gate.resolve();
    const [ra, rb] = await Promise.all([fromA, fromB]);
    expect(runsA).toBe(1);
    expect(runsB).toBe(0);
    for (const v of [...ra, ...rb]) expect(v).toEqual({ from: 'a', builtAt: '1970-01-01T00:00:00.000Z' });
    // Waiting is normal for a coalescer: nothing above debug.
    expect(b.lines.filter((l) => l.level !== 'debug')).toEqual([]);
  });

  it("fans an error out with its name, message, code, JSON-safe own properties and stack; the runner's callers get the same rebuilt error", async () => {
    const a = world.member();
    const b = world.member();
    const acquiresB = recordAcquires(b.persister);
    const key = uniqueKey('error');
    const gate = deferred();
    const failing = async () => {
      await gate.promise;
      throw Object.assign(new Error('quota exceeded'), { name: 'QuotaError', code: 'E_QUOTA', detail: { limit: 3 }, big: 1n });
    };
    const settle = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => e);
    const fromA = Promise.all([settle(a.coalescer.run(key, failing)), settle(a.coalescer.run(key, failing))]);
    await waitUntil(async () => (await b.persister.inspect(key)) !== null, 5_000, 'a holds the lease');
    const fromB = settle(b.coalescer.run(key, async () => 'b ran'));
    await waitUntil(() => acquiresB.some((r) => !r.acquired), 5_000, 'b finds the run in progress');
    gate.resolve();
    const errors = [...(await fromA), await fromB];
    for (const e of errors) {
      expect(e).toBeInstanceOf(CoalescedError);
      expect(e).toMatchObject({ name: 'QuotaError', message: 'quota exceeded', code: 'E_QUOTA', key, detail: { limit: 3 } });
      expect(e).not.toHaveProperty('big'); // not JSON-safe: left out, the rest still travels
      expect((e as Error).stack).toContain('quota exceeded');
      expect((e as Error).stack).toContain('Coalescer.spec');
    }
    expect(errors[0]).not.toBe(errors[1]);
    // A caller arriving after the failed run completed starts a fresh run.
    expect(await b.coalescer.run(key, async () => 'again')).toBe('again');
  });

  it('gives a caller arriving after completion a fresh run, never the stale outcome of a run it did not join', async () => {
    const a = world.member();
    const b = world.member();
    const key = uniqueKey('after');
    expect(await a.coalescer.run(key, async () => ({ n: 1 }))).toEqual({ n: 1 });
    const fnB = jest.fn(async () => ({ n: 2 }));
    expect(await b.coalescer.run(key, fnB)).toEqual({ n: 2 });
    expect(fnB).toHaveBeenCalledTimes(1);
  });

  it('a waiter that takes the lease right after the runner released it finds the outcome and does not run', async () => {
    const a = world.member();
    // b hears nothing (no release watch, no broadcast): it wakes on its timer and takes the free lease.
    const inner = world.persister();
    const quiet = deaf(inner, outcomeStoreFor(inner).store);
    const acquiresB = recordAcquires(quiet.persister);
    const b = world.member({ outcomes: quiet.outcomes, retryIntervalMs: 1_000, resultTtlMs: 5_000 }, quiet.persister);
    const key = uniqueKey('race');
    const gate = deferred();
    const fromA = a.coalescer.run(key, async () => {
      await gate.promise;
      return 'from a';
    });
    await waitUntil(async () => (await inner.inspect(key)) !== null, 5_000, 'a holds the lease');
    const fnB = jest.fn(async () => 'from b');
    const fromB = b.coalescer.run(key, fnB);
    await waitUntil(() => acquiresB.some((r) => !r.acquired), 5_000, 'b finds the run in progress');
    gate.resolve();
    expect(await fromA).toBe('from a');
    expect(await fromB).toBe('from a');
    expect(fnB).not.toHaveBeenCalled();
    expect(acquiresB.at(-1)?.acquired).toBe(true); // it did take the lease, and still did not run
    await quiet.outcomes.close?.();
  });

  it('keeps the outcome for resultTtlMs (for late readers of the run), then removes it; each new caller runs afresh', async () => {
    const { coalescer } = world.member({ resultTtlMs: 300, retryIntervalMs: 50 });
    const key = uniqueKey('expire');
    let runs = 0;
    const fn = async () => ++runs;
    expect(await coalescer.run(key, fn)).toBe(1);
    expect(await world.inspector.get(key)).not.toBeNull();
    expect(await coalescer.run(key, fn)).toBe(2);
    await waitUntil(async () => (await world.inspector.get(key)) === null, 5_000, 'the outcome expires');
    expect(await coalescer.run(key, fn)).toBe(3);
  });

  it('delivers JSON to every caller, local ones included: Date → string, undefined stays undefined', async () => {
    const { coalescer } = world.member();
    const value = await coalescer.run(uniqueKey('date'), async () => ({ at: new Date(Date.UTC(2026, 10, 1)), skip: undefined, list: [1, undefined] }));
    expect(value).toEqual({ at: '2026-11-01T00:00:00.000Z', list: [1, null] });
    expect(Object.keys(value)).toEqual(['at', 'list']);
    // The type says so too.
    const at: string = value.at;
    expect(typeof at).toBe('string');
    expect(await coalescer.run(uniqueKey('void'), async () => undefined)).toBeUndefined();
    expect(await coalescer.run(uniqueKey('sync'), () => 42)).toBe(42);
  });

  it('rejects every caller with SINGLETON_NOT_SERIALIZABLE for a value JSON cannot carry', async () => {
    const a = world.member();
    const b = world.member();
    const acquiresB = recordAcquires(b.persister);
    const key = uniqueKey('bigint');
    const gate = deferred();
    const settle = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => e);
    const fromA = settle(
      a.coalescer.run(key, async () => {
        await gate.promise;
        return { total: 10n };
      }),
    );
    await waitUntil(async () => (await b.persister.inspect(key)) !== null, 5_000, 'a holds the lease');
    const fromB = settle(b.coalescer.run(key, async () => 'b ran'));
    await waitUntil(() => acquiresB.some((r) => !r.acquired), 5_000, 'b finds the run in progress');
    gate.resolve();
    for (const e of [await fromA, await fromB]) {
      expect(e).toBeInstanceOf(SingletonError);
      expect(e).toMatchObject({ name: 'SingletonError', code: 'SINGLETON_NOT_SERIALIZABLE' });
      expect((e as Error).message).toMatch(/BigInt/);
    }
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await expect(a.coalescer.run(uniqueKey('circular'), async () => circular)).rejects.toMatchObject({
      code: 'SINGLETON_NOT_SERIALIZABLE',
    });
  });

  it("lets one caller give up (signal, timeoutMs) without ending the run for the others", async () => {
    const { coalescer } = world.member();
    const key = uniqueKey('limits');
    const gate = deferred();
    let signalSeen: AbortSignal | undefined;
    const fn = async (signal: AbortSignal) => {
      signalSeen = signal;
      await gate.promise;
      return 'done';
    };
    const patient = coalescer.run(key, fn);
    const controller = new AbortController();
    const aborted = coalescer.run(key, fn, { signal: controller.signal });
    const hasty = coalescer.run(key, fn, { timeoutMs: 30 });
    await expect(hasty).rejects.toMatchObject({ name: 'TimeoutError' });
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    gate.resolve();
    expect(await patient).toBe('done');
    expect(signalSeen?.aborted).toBe(false);
  });

  /** A Coalescer (ttl 300 ms) whose every renewal finds its lease gone, with the outcome store it uses. */
  const losingMember = () => {
    const inner = world.persister();
    const { store, owned } = outcomeStoreFor(inner);
    const { coalescer } = world.member({ ttlMs: 300, outcomes: store }, losingRenewals(inner));
    return { coalescer, store, owned };
  };

  it("aborts fn's signal when the run's lease is lost, shares nothing, and rejects with LockLostError", async () => {
    const { coalescer, store, owned } = losingMember();
    const key = uniqueKey('lost');
    let reason: unknown;
    const run = coalescer.run(key, (signal) => {
      return new Promise((_, reject) =>
        signal.addEventListener('abort', () => {
          reason = signal.reason;
          reject(signal.reason);
        }),
      );
    });
    await expect(run).rejects.toBeInstanceOf(LockLostError);
    expect(reason).toBeInstanceOf(LockLostError);
    expect(await store.get(key)).toBeNull();
    if (owned) await store.close?.();
  });

  it('a lost run answers its callers at once, even when fn ignores its signal; a caller after the loss starts a fresh run', async () => {
    const { coalescer, store, owned } = losingMember();
    const key = uniqueKey('lost-stubborn');
    let finish = () => undefined as void;
    const stubborn = new Promise<string>((resolve) => (finish = () => resolve('late')));
    const first = coalescer.run(key, () => stubborn); // ignores its signal
    const joined = coalescer.run(key, () => 'never run');
    const t0 = performance.now();
    await expect(first).rejects.toBeInstanceOf(LockLostError);
    await expect(joined).rejects.toBeInstanceOf(LockLostError);
    expect(performance.now() - t0).toBeLessThan(2_000); // the lease lasts 300 ms; fn would run for ever
    expect(await coalescer.run(key, () => 'fresh')).toBe('fresh');
    finish();
    if (owned) await store.close?.();
  });

  it('close() ends waiting callers, aborts a run in progress without sharing it, and refuses new runs', async () => {
    const a = world.member();
    const b = world.member();
    const acquiresB = recordAcquires(b.persister);
    const key = uniqueKey('close');
    let aborted = false;
    const settle = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => e);
    const fromA = settle(
      a.coalescer.run(key, (signal) => {
        return new Promise((_, reject) =>
          signal.addEventListener('abort', () => {
            aborted = true;
            reject(new Error('stopped'));
          }),
        );
      }),
    );
    await waitUntil(async () => (await b.persister.inspect(key)) !== null, 5_000, 'a holds the lease');
    const fromB = settle(b.coalescer.run(key, async () => 'b ran'));
    await waitUntil(() => acquiresB.some((r) => !r.acquired), 5_000, 'b waits');
    await b.coalescer.close();
    expect(await fromB).toMatchObject({ code: 'SINGLETON_SHUTTING_DOWN' });
    await expect(b.coalescer.run(key, async () => 1)).rejects.toMatchObject({ code: 'SINGLETON_SHUTTING_DOWN' });
    await a.coalescer.close();
    expect(await fromA).toMatchObject({ code: 'SINGLETON_SHUTTING_DOWN' });
    expect(aborted).toBe(true);
    expect(await world.inspector.get(key)).toBeNull(); // an interrupted run is not an outcome
    expect(await a.persister.inspect(key)).toBeNull(); // and its lease is released
  });

  it('close() returns within a bound even when fn ignores its signal, and lets the lease go', async () => {
    const a = world.member();
    const key = uniqueKey('close-hung');
    const running = a.coalescer.run(key, () => new Promise(() => undefined)); // never settles, ignores the signal
    running.catch(() => undefined);
    await waitUntil(async () => (await a.persister.inspect(key)) !== null, 5_000, 'a holds the lease');
    const started = Date.now();
    await a.coalescer.close();
    expect(Date.now() - started).toBeLessThan(2_000);
    await expect(running).rejects.toMatchObject({ code: 'SINGLETON_SHUTTING_DOWN' });
    expect(await a.persister.inspect(key)).toBeNull();
  });

  it('maxRunMs cuts a hung run off: its callers, here and elsewhere, get SINGLETON_RUN_TIMEOUT, and the key is free again', async () => {
    const a = world.member({ maxRunMs: 300 });
    const b = world.member();
    const acquiresB = recordAcquires(b.persister);
    const key = uniqueKey('hung');
    let told: unknown;
    const settle = (p: Promise<unknown>) => p.then((v) => v, (e: unknown) => e);
    const fromA = settle(
      a.coalescer.run(key, (signal) => {
        signal.addEventListener('abort', () => (told = signal.reason));
        return new Promise(() => undefined); // hangs, ignoring its signal
      }),
    );
    await waitUntil(async () => (await b.persister.inspect(key)) !== null, 5_000, 'a holds the lease');
    const fromB = settle(b.coalescer.run(key, async () => 'b ran'));
    await waitUntil(() => acquiresB.some((r) => !r.acquired), 5_000, 'b joins the run');
    expect(await fromA).toMatchObject({ code: 'SINGLETON_RUN_TIMEOUT' });
    expect(await fromB).toMatchObject({ code: 'SINGLETON_RUN_TIMEOUT' });
    expect(told).toMatchObject({ code: 'SINGLETON_RUN_TIMEOUT' });
    expect(await a.persister.inspect(key)).toBeNull();
    expect(await b.coalescer.run(key, async () => 'fresh')).toBe('fresh');
    expect(a.coalescer.maxRunMs).toBe(300);
    expect(b.coalescer.maxRunMs).toBe(b.coalescer.ttlMs * 10);
  });

  it('reports a store that is down as a PersisterError, and does not run fn', async () => {
    if (!world.downPersister) return; // memory cannot be down
    const { coalescer } = world.member({}, await world.downPersister());
    const fn = jest.fn(async () => 'ran');
    await expect(coalescer.run(uniqueKey('down'), fn)).rejects.toBeInstanceOf(PersisterError);
    expect(fn).not.toHaveBeenCalled();
  });
});

describe('Coalescer on Redis: the outcome channel', () => {
  const keyPrefix = `test:${runId}:channel:`;
  const clients: Redis[] = [];
  const connect = () => {
    const c = new Redis(redisUrl(), { maxRetriesPerRequest: 1 });
    clients.push(c);
    return c;
  };
  const closers: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
    await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
  });

  it('stores the outcome at <prefix>{<key>}:outcome for resultTtlMs and publishes it on a channel of that name', async () => {
    const persister = new RedisPersister(connect(), { keyPrefix });
    const coalescer = new Coalescer(persister, { resultTtlMs: 4_000 });
    closers.push(() => coalescer.close(), () => persister.close());
    const admin = connect();
    const listener = connect();
    const key = uniqueKey('layout');
    const channel = `${keyPrefix}{${key}}:outcome`;
    const heard: string[] = [];
    listener.on('message', (ch: string, message: string) => {
      if (ch === channel) heard.push(message);
    });
    await listener.subscribe(channel);
    expect(await coalescer.run(key, async () => ({ ok: true }))).toEqual({ ok: true });
    const stored = await admin.get(channel);
    expect(JSON.parse(stored as string)).toMatchObject({ v: 1, ok: true, value: { ok: true }, run: { key } });
    const pttl = await admin.pttl(channel);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(4_000);
    await waitUntil(() => heard.length === 1, 5_000, 'the broadcast arrives');
    expect(heard[0]).toBe(stored);
  });

  it('wakes a waiter on the outcome broadcast, long before its next check', async () => {
    const persisterA = new RedisPersister(connect(), { keyPrefix });
    const a = new Coalescer(persisterA);
    const innerB = new RedisPersister(connect(), { keyPrefix });
    // b watches no releases: only the outcome broadcast (or its 5 s timer) can wake it.
    const quietB: Persister = {
      capabilities: innerB.capabilities,
      acquire: (r) => innerB.acquire(r),
      renew: (r) => innerB.renew(r),
      release: (r) => innerB.release(r),
      inspect: (n) => innerB.inspect(n),
    };
    const storeB = new RedisOutcomeStore(connect(), { keyPrefix });
    const b = new Coalescer(quietB, { outcomes: storeB, retryIntervalMs: 5_000, resultTtlMs: 20_000 });
    closers.push(() => a.close(), () => b.close(), () => storeB.close(), () => innerB.close(), () => persisterA.close());
    const acquiresB = recordAcquires(quietB);
    const key = uniqueKey('wake');
    const gate = deferred();
    const fromA = a.run(key, async () => {
      await gate.promise;
      return 'v';
    });
    await waitUntil(async () => (await innerB.inspect(key)) !== null, 5_000, 'a holds the lease');
    let bAt = 0;
    const fromB = b.run(key, async () => 'b ran').then((v) => {
      bAt = Date.now();
      return v;
    });
    await waitUntil(() => acquiresB.some((r) => !r.acquired), 5_000, 'b waits');
    const released = Date.now();
    gate.resolve();
    expect(await fromA).toBe('v');
    expect(await fromB).toBe('v');
    expect(bAt - released).toBeLessThan(1_000);
  });
});

describe('Coalescer on the file store: the outcome file', () => {
  it('writes <slug>.<hash>.outcome beside the lock file and removes it once expired', async () => {
    const root = mkdtempSync(join(tmpdir(), 'sp-coalescer-sweep-'));
    const persister = new FilePersister({ dir: root });
    const coalescer = new Coalescer(persister, { resultTtlMs: 200, retryIntervalMs: 50 });
    try {
      const key = uniqueKey('sweep');
      const { state } = lockPaths(root, key);
      const outcomeFile = state.replace(/\.lock$/, '.outcome');
      expect(await coalescer.run(key, async () => 'v')).toBe('v');
      expect(existsSync(outcomeFile)).toBe(true);
      expect(JSON.parse(readFileSync(outcomeFile, 'utf8'))).toMatchObject({ v: 1, key });
      await waitUntil(() => !existsSync(outcomeFile), 5_000, 'the expired outcome file is removed');
      expect(readdirSync(root).filter((f) => f.endsWith('.tmp'))).toEqual([]);
      // The sweep removes the file under the key's lease, then releases that lease.
      await waitUntil(async () => (await persister.inspect(key)) === null, 2_000, 'the sweep to release the lease it took');
    } finally {
      await coalescer.close();
      await persister.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('Coalescer construction', () => {

  it('refuses a persister without fencing tokens (it could not tell the run a caller joined from a later one)', () => {
    const seedStyle = fromCallbackPersister({
      persistLock: (_name, cb) => cb(null, true),
      deleteLock: (_name, cb) => cb(),
      lockExists: (_name, cb) => cb(null, false),
    });
    expect(() => new Coalescer(seedStyle)).toThrow(/needs a persister with fencing tokens \(capabilities\.fencing\)/);
  });
  it('names the supported stores for a persister whose outcomes it cannot keep, and accepts `outcomes` for it', async () => {
    const inner = new MemoryPersister();
    const other: Persister = {
      capabilities: inner.capabilities,
      acquire: (r) => inner.acquire(r),
      renew: (r) => inner.renew(r),
      release: (r) => inner.release(r),
      inspect: (n) => inner.inspect(n),
    };
    expect(() => new Coalescer(other)).toThrow(TypeError);
    expect(() => new Coalescer(other)).toThrow(/RedisPersister, PostgresPersister, MongoPersister, FilePersister and MemoryPersister.*outcomes/);
    const c = new Coalescer(other, { outcomes: memoryOutcomeStoreFor(inner) });
    expect(await c.run('k', async () => 1)).toBe(1);
    await c.close();
  });

  it('checks every option and argument', async () => {
    const p = new MemoryPersister();
    expect(() => new Coalescer({} as Persister)).toThrow(TypeError);
    expect(() => new Coalescer(p, { bogus: 1 } as CoalescerOptions)).toThrow(/Unknown option `bogus`/);
    expect(() => new Coalescer(p, { resultTtlMs: 1_000, retryIntervalMs: 1_000 })).toThrow(RangeError);
    expect(() => new Coalescer(p, { ttlMs: 5 })).toThrow(RangeError);
    expect(() => new Coalescer(p, { resultTtlMs: '5' as unknown as number })).toThrow(TypeError);
    expect(() => new Coalescer(p, { handleSignals: ['SIGKILL'] })).toThrow(TypeError);
    const c = new Coalescer(p);
    expect(c.retryIntervalMs).toBe(1_000);
    expect(new Coalescer(p, { resultTtlMs: 400 }).retryIntervalMs).toBe(100);
    await expect(c.run('', async () => 1)).rejects.toThrow(TypeError);
    await expect(c.run('k', 'nope' as unknown as () => number)).rejects.toThrow(TypeError);
    await expect(c.run('k', async () => 1, { timeoutMs: -1 })).rejects.toThrow(RangeError);
    await c.close();
  });

  it('types the result as what JSON makes of it', () => {
    type Report = { at: Date; total: number; tags: string[]; load(): void };
    const check: Jsonified<Report> = { at: 'iso', total: 1, tags: ['x'] };
    expect(check.at).toBe('iso');
  });
});

describe('Coalescer across real processes', () => {
  const redisPrefix = `test:${runId}:procs:`;
  let admin: Redis;
  let root: string;

  beforeAll(() => {
    admin = new Redis(redisUrl(), { maxRetriesPerRequest: 1 });
    root = mkdtempSync(join(tmpdir(), 'sp-coalescer-procs-'));
  });
  afterEach(() => killAllChildren());
  afterAll(async () => {
    await admin.quit();
    rmSync(root, { recursive: true, force: true });
  });

  type Store = 'redis' | 'file';
  function base(store: Store, key: string): Pick<CoalescerWorkerConfig, 'store' | 'redisUrl' | 'keyPrefix' | 'dir' | 'key'> {
    if (store === 'redis') return { store, redisUrl: redisUrl(), keyPrefix: redisPrefix, key };
    const dir = mkdtempSync(join(root, 'store-'));
    return { store, dir, key };
  }
  async function runs(config: CoalescerWorkerConfig): Promise<number> {
    if (config.store === 'redis') return Number((await admin.get(`${redisPrefix}test:{${config.key}}:runs`)) ?? 0);
    try {
      return readFileSync(join(config.dir as string, 'runs.count'), 'utf8').split('\n').filter(Boolean).length;
    } catch {
      return 0;
    }
  }
  it('the runner stopped with SIGTERM releases its lease on the way out: a waiter takes over at once, not after ttlMs', async () => {
    const config: CoalescerWorkerConfig = {
      ...base('redis', uniqueKey('procs-term')),
      calls: 1,
      arrivals: 0,
      mode: 'hang-first',
      ttlMs: 20_000,
      resultTtlMs: 10_000,
    };
    const children = spawnWorkers(2, config);
    await Promise.all(children.map((c) => c.waitForEvent('arrived', { timeoutMs: 20_000 })));
    const first = await Promise.any(children.map((c) => c.waitForEvent('running', { timeoutMs: 20_000 }).then(() => c)));
    const other = children.find((c) => c !== first) as FixtureChild;
    const termAt = first.kill('SIGTERM');
    expect((await first.waitForExit(10_000)).signal).toBe('SIGTERM');
    const takeover = await other.waitForEvent('running', { timeoutMs: 10_000 });
    expect(takeover.run).toBe(2);
    expect(takeover.t - termAt).toBeLessThan(5_000); // the lease would have run for 20 s
    await finish([other]);
    expect(other.all('result').map((e) => e.value)).toEqual([{ run: 2, pid: other.pid, at: '1970-01-01T00:00:00.000Z' }]);
  }, 60_000);

  it("stops fn and shares nothing when the run's lease is released for a signal the application handles itself", async () => {
    const config: CoalescerWorkerConfig = {
      ...base('redis', uniqueKey('procs-term-app')),
      calls: 1,
      arrivals: 0,
      mode: 'hang-first',
      ttlMs: 20_000,
      resultTtlMs: 10_000,
      appHandlesSigterm: true,
    };
    const children = spawnWorkers(2, config);
    await Promise.all(children.map((c) => c.waitForEvent('arrived', { timeoutMs: 20_000 })));
    const first = await Promise.any(children.map((c) => c.waitForEvent('running', { timeoutMs: 20_000 }).then(() => c)));
    const other = children.find((c) => c !== first) as FixtureChild;
    first.kill('SIGTERM');
    // The process lives on (the application decides), but its run is told to stop (the lease's
    // signal aborts with reason `shutdown`) before the lease is handed over: fn is stopped.
    const stopped = await first.waitForEvent('error', { timeoutMs: 10_000 });
    expect(stopped.error).toMatchObject({ code: 'SINGLETON_LOST', cls: 'LockLostError' });
    expect((stopped.error as { message: string }).message).toMatch(/shutting down/);
    await finish(children);
    expect(await runs(config)).toBe(2);
    expect(other.all('result').map((e) => e.value)).toEqual([{ run: 2, pid: other.pid, at: '1970-01-01T00:00:00.000Z' }]);
  }, 60_000);

  describe.each(['redis', 'file'] as Store[])('on the %s store', (store) => {
    it('5 processes × 4 concurrent calls: fn runs once and all 20 callers get the same value', async () => {
      const config: CoalescerWorkerConfig = { ...base(store, uniqueKey('procs')), calls: 4, arrivals: 5, mode: 'value', ttlMs: 10_000, resultTtlMs: 10_000 };
      await expectOneRunForAll(5, config, runs);
    }, 60_000);

    it('fans the error out to every caller in every process', async () => {
      const config: CoalescerWorkerConfig = {
        ...base(store, uniqueKey('procs-error')),
        calls: 2,
        arrivals: 3,
        mode: 'error',
        ttlMs: 10_000,
        resultTtlMs: 10_000,
      };
      const children = spawnWorkers(3, config);
      await finish(children);
      expect(await runs(config)).toBe(1);
      const errors = children.flatMap((c) => c.all('error').map((e) => e.error));
      expect(errors).toHaveLength(6);
      for (const e of errors) {
        expect(e).toEqual({ name: 'QuotaError', message: `quota exceeded for ${config.key}`, code: 'E_QUOTA', cls: 'CoalescedError' });
      }
    }, 60_000);

    it('the runner killed with SIGKILL mid-run: exactly one waiter takes over, every caller gets its result', async () => {
      const config: CoalescerWorkerConfig = { ...base(store, uniqueKey('procs-kill')), calls: 2, arrivals: 0, mode: 'hang-first', ttlMs: 1_500, resultTtlMs: 10_000 };
      await expectTakeoverAfterKill(config, runs);
    }, 60_000);
  });
});
