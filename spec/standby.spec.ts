/**
 * Hot standby against real stores: hand-over by notification, many waiters,
 * run() with waiting, and standby(). Each instance has its own persister (its
 * own Redis connections, or its own FilePersister on a shared directory), as
 * separate processes would. Crash takeover by a separate process is in
 * processHooks.spec.ts; the figures are in the benchmark.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { FilePersister } from '../lib/persisters/FilePersister';
import type { Persister } from '../lib/persisters/Persister';
import { RedisPersister } from '../lib/persisters/RedisPersister';
import { Singleton } from '../lib/Singleton';
import { standby } from '../lib/standby';
import { recordingLogger } from './helpers/ControllablePersister';
import { waitUntil } from './persisters/conformance';

const quiet = () => recordingLogger().logger;
const NEVER_POLL = 60_000; // waiters must be woken by notifications, not by their retry timer

/** Counts the acquire attempts that go through a persister. */
function counting(inner: Persister): Persister & { attempts: number } {
  const wrapper = Object.create(inner) as Persister & { attempts: number };
  wrapper.attempts = 0;
  wrapper.acquire = (r) => {
    wrapper.attempts += 1;
    return inner.acquire(r);
  };
  return wrapper;
}

interface StoreUnderTest {
  label: string;
  /** A fresh persister, as another process would have. */
  make(): Persister;
  cleanup(): Promise<void>;
}

function redisStore(): StoreUnderTest {
  const clients: Redis[] = [];
  const prefix = `standby-${process.pid}-${Date.now()}:`;
  const persisters: RedisPersister[] = [];
  return {
    label: 'Redis',
    make() {
      const client = new Redis(process.env.REDIS_URL as string, { maxRetriesPerRequest: 1 });
      clients.push(client);
      const p = new RedisPersister(client, { keyPrefix: prefix });
      persisters.push(p);
      return p;
    },
    async cleanup() {
      await Promise.all(persisters.map((p) => p.close()));
      await Promise.all(clients.map((c) => c.quit()));
    },
  };
}

function fileStore(): StoreUnderTest {
  const dir = mkdtempSync(join(tmpdir(), 'standby-spec-'));
  const persisters: FilePersister[] = [];
  return {
    label: 'file store',
    make() {
      const p = new FilePersister({ dir });
      persisters.push(p);
      return p;
    },
    async cleanup() {
      await Promise.all(persisters.map((p) => p.close?.()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe.each([
  ['Redis', redisStore],
  ['file store', fileStore],
])('hot standby on %s', (_label, makeStore) => {
  let store: StoreUnderTest;
  const live: Singleton[] = [];
  const singleton = (name: string, persister: Persister, owner: string, ttlMs = 10_000) => {
    const s = new Singleton(name, persister, { owner, ttlMs, retryIntervalMs: NEVER_POLL, logger: quiet() });
    live.push(s);
    return s;
  };

  beforeEach(() => {
    store = makeStore();
  });
  afterEach(async () => {
    await Promise.all(live.splice(0).map((s) => s.release().catch(() => undefined)));
    await store.cleanup();
  });

  it('hands over on release through the notification, far sooner than retryIntervalMs', async () => {
    const name = `handover-${Date.now()}`;
    const a = singleton(name, store.make(), 'A');
    const b = singleton(name, store.make(), 'B');
    const order: string[] = [];
    a.on('releasing', () => order.push('A releasing'));
    b.on('locked', () => order.push('B locked'));
    expect(await a.lock()).toBe(true);
    const waiting = b.waitForLock();
    await waitUntil(() => b.state === 'conflict', 5_000, 'B standing by');
    await new Promise((r) => setTimeout(r, 50)); // B is subscribed and asleep on a 60 s timer
    const t0 = performance.now();
    await a.release();
    await waiting;
    const handoverMs = performance.now() - t0;
    expect(order).toEqual(['A releasing', 'B locked']);
    expect(handoverMs).toBeLessThan(1_000);
    console.log(`${_label}: graceful hand-over observed in ${handoverMs.toFixed(1)} ms (retryIntervalMs ${NEVER_POLL})`);
  });

  it('20 waiters: each release hands the lock to exactly one, none is left behind, no herd of retries', async () => {
    const name = `herd-${Date.now()}`;
    const first = singleton(name, store.make(), 'first');
    expect(await first.lock()).toBe(true);
    const persisters = Array.from({ length: 20 }, () => counting(store.make()));
    const waiters = persisters.map((p, i) => singleton(name, p, `W${i}`));
    let holding = 0;
    let maxHolding = 0;
    const winners: string[] = [];
    const fences: number[] = [];
    const done = waiters.map(async (w) => {
      await w.waitForLock({ timeoutMs: 30_000 });
      holding += 1;
      maxHolding = Math.max(maxHolding, holding);
      winners.push(w.owner);
      fences.push(Number(w.fencingToken));
      await new Promise((r) => setTimeout(r, 3));
      holding -= 1;
      await w.release();
    });
    await waitUntil(() => waiters.every((w) => w.state === 'conflict'), 10_000, 'all 20 standing by');
    await new Promise((r) => setTimeout(r, 50));
    const attemptsBefore = persisters.reduce((n, p) => n + p.attempts, 0);
    await first.release();
    await Promise.all(done);
    const attempts = persisters.reduce((n, p) => n + p.attempts, 0) - attemptsBefore;
    expect(maxHolding).toBe(1);
    expect(new Set(winners).size).toBe(20);
    for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
    // 20 releases, each woke the k waiters still standing by: at most one attempt each per
    // release (a notification that lands mid-attempt may add one more), never a retry storm.
    const perRelease = Array.from({ length: 20 }, (_, k) => 20 - k).reduce((a, b) => a + b, 0);
    expect(attempts).toBeLessThanOrEqual(2 * perRelease);
    console.log(`${_label}: 20 waiters served in turn with ${attempts} acquire attempts (${perRelease} wake-ups)`);
  });

  it('run({ wait: true }) runs after the holder releases, and releases after', async () => {
    const name = `run-wait-${Date.now()}`;
    const a = singleton(name, store.make(), 'A');
    const b = singleton(name, store.make(), 'B');
    const order: string[] = [];
    await a.lock();
    const running = b.run(async (signal) => {
      order.push('B runs');
      return signal.aborted;
    }, { wait: true, timeoutMs: 10_000 });
    await waitUntil(() => b.state === 'conflict', 5_000, 'B waiting');
    order.push('A releases');
    await a.release();
    expect(await running).toEqual({ status: 'done', value: false });
    expect(order).toEqual(['A releases', 'B runs']);
    expect(await a.exists()).toBe(false);
  });

  it('standby(): of three replicas exactly one runs the task; the next runs it once the first releases', async () => {
    const name = `replicas-${Date.now()}`;
    const runs: string[] = [];
    const replicas = ['R1', 'R2', 'R3'].map((owner) =>
      standby(store.make(), () => void runs.push(owner), { name, owner, ttlMs: 10_000, retryIntervalMs: NEVER_POLL, logger: quiet() }),
    );
    live.push(...replicas);
    await waitUntil(() => runs.length === 1, 10_000, 'one replica active');
    await waitUntil(() => replicas.filter((r) => r.state === 'conflict').length === 2, 10_000, 'two standing by');
    await new Promise((r) => setTimeout(r, 100));
    expect(runs).toHaveLength(1); // nobody else ran it meanwhile
    const active = replicas.find((r) => r.owner === runs[0]) as Singleton;
    expect(active.state).toBe('locked');
    await active.release();
    await waitUntil(() => runs.length === 2, 10_000, 'a standby took over');
    expect(runs[1]).not.toBe(runs[0]);
    await new Promise((r) => setTimeout(r, 100));
    expect(runs).toHaveLength(2);
    expect(active.state).toBe('released'); // release() stopped it standing by
    expect(replicas.filter((r) => r.state === 'locked')).toHaveLength(1);
  });
});

describe('a process that stood by on Redis', () => {
  it('exits by itself once it released and quit its own client (no connection of ours left open)', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'fixtures', 'waitThenExit.ts'), process.env.REDIS_URL as string, `exit-${Date.now()}`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
      child.once('exit', (code) => resolve({ code, at: Date.now() })),
    );
    await waitUntil(() => out.includes('released'), 15_000, 'the fixture to release');
    const releasedAt = Date.now();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    const { code, at } = await exited;
    clearTimeout(timer);
    expect(code).toBe(0); // killed by the guard above would be null
    expect(at - releasedAt).toBeLessThan(2_000);
  });
});
