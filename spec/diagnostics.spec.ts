/**
 * The diagnostics channel (DESIGN.md §10): a real `diagnostics_channel` subscriber
 * sees every lifecycle event of Singletons on a real Redis — with the store round
 * trip on locked, renewed and released, the reason on lost — and never a token.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import Redis from 'ioredis';
import { DIAGNOSTICS_CHANNEL, type DiagnosticsEvent } from '../lib';
import { diagnosticsChannel } from '../lib/diagnostics';
import type { AcquireRequest, Persister, ReleaseRequest, RenewRequest } from '../lib/persisters/Persister';
import { RedisPersister } from '../lib/persisters/RedisPersister';
import { Singleton } from '../lib/Singleton';
import { ControllablePersister, recordingLogger } from './helpers/ControllablePersister';
import { newToken, testOwner, waitUntil } from './persisters/conformance';

/** The real RedisPersister, remembering every token the Singletons sent it (to prove none is published). */
function tokenRecorder(inner: RedisPersister): { persister: Persister; tokens: Set<string> } {
  const tokens = new Set<string>();
  const persister: Persister = {
    capabilities: inner.capabilities,
    acquire: (r: AcquireRequest) => (tokens.add(r.token), inner.acquire(r)),
    renew: (r: RenewRequest) => (tokens.add(r.token), inner.renew(r)),
    release: (r: ReleaseRequest) => (tokens.add(r.token), inner.release(r)),
    inspect: (name: string) => inner.inspect(name),
    watch: (name, onRelease) => inner.watch(name, onRelease),
  };
  return { persister, tokens };
}

describe('diagnostics_channel "singleton-process:event"', () => {
  let redis: Redis;
  let redisPersister: RedisPersister;
  const received: DiagnosticsEvent[] = [];
  const onMessage = (message: unknown) => received.push(message as DiagnosticsEvent);
  const quiet = () => recordingLogger().logger;
  const of = (lock: string) => received.filter((m) => m.lock === lock);

  beforeAll(() => {
    redis = new Redis(process.env.REDIS_URL as string);
    redisPersister = new RedisPersister(redis);
  });
  afterAll(async () => {
    await redisPersister.close();
    await redis.quit();
  });
  beforeEach(() => {
    received.length = 0;
    subscribe(DIAGNOSTICS_CHANNEL, onMessage);
  });
  afterEach(() => {
    unsubscribe(DIAGNOSTICS_CHANNEL, onMessage);
  });

  it('is named singleton-process:event', () => {
    expect(DIAGNOSTICS_CHANNEL).toBe('singleton-process:event');
  });

  it('publishes locking, locked, renewed, releasing, released with owner, fence and round trips, and never a token', async () => {
    const name = `diag-cycle-${Date.now()}`;
    const { persister, tokens } = tokenRecorder(redisPersister);
    const s = new Singleton(name, persister, { ttlMs: 600, renewIntervalMs: 100, owner: 'diag-owner', logger: quiet() });
    expect(await s.lock()).toBe(true);
    const fence = s.fencingToken;
    await waitUntil(() => of(name).filter((m) => m.event === 'renewed').length >= 2, 5_000, 'two renewals published');
    await s.release();
    const events = of(name);
    const firstRenewal = events.findIndex((m) => m.event === 'renewed');
    expect(events.slice(0, 2)).toEqual([
      { lock: name, event: 'locking', owner: 'diag-owner' },
      { lock: name, event: 'locked', owner: 'diag-owner', fencingToken: fence, durationMs: expect.any(Number) },
    ]);
    expect(events[firstRenewal]).toEqual({ lock: name, event: 'renewed', owner: 'diag-owner', fencingToken: fence, durationMs: expect.any(Number) });
    expect(events.slice(-2)).toEqual([
      { lock: name, event: 'releasing', owner: 'diag-owner', fencingToken: fence },
      { lock: name, event: 'released', owner: 'diag-owner', fencingToken: fence, durationMs: expect.any(Number) },
    ]);
    for (const m of events.filter((e) => e.durationMs !== undefined)) {
      expect(['locked', 'renewed', 'released']).toContain(m.event);
      expect(m.durationMs).toBeGreaterThanOrEqual(0);
      expect(m.durationMs).toBeLessThan(5_000);
    }
    expect(tokens.size).toBeGreaterThan(0);
    const published = JSON.stringify(received, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    for (const token of tokens) expect(published).not.toContain(token);
  });

  it('publishes conflict at every attempt (also the ones no event is emitted for), expired, and lost with its reason', async () => {
    const name = `diag-lost-${Date.now()}`;
    // A holder that died: its lease runs out unreleased, so the next holder reports `expired`.
    await redisPersister.acquire({ name, token: newToken(), ttlMs: 50, owner: testOwner(1) });
    await waitUntil(async () => (await redisPersister.inspect(name)) === null, 5_000, 'the dead lease to run out');
    const a = new Singleton(name, redisPersister, { ttlMs: 900, owner: 'A', logger: quiet() });
    const b = new Singleton(name, redisPersister, { ttlMs: 900, owner: 'B', retryIntervalMs: 50, logger: quiet() });
    const lost: string[] = [];
    a.on('lost', (e) => lost.push(e.reason));
    expect(await a.lock()).toBe(true);
    const aFence = a.fencingToken;
    const waiting = b.waitForLock({ timeoutMs: 20_000 });
    await waitUntil(() => of(name).filter((m) => m.owner === 'B' && m.event === 'conflict').length >= 3, 5_000, 'B to publish its attempts');
    expect(b.listenerCount('conflict')).toBe(0);
    await redisPersister.forceRelease(name);
    await waiting;
    await waitUntil(() => lost.length > 0, 5_000, 'A to learn of the eviction');
    const aEvents = of(name).filter((m) => m.owner === 'A');
    expect(aEvents.map((m) => m.event)).toEqual(['locking', 'expired', 'locked', ...aEvents.slice(3, -1).map(() => 'renewed'), 'lost']);
    expect(aEvents[aEvents.length - 1]).toEqual({ lock: name, event: 'lost', owner: 'A', fencingToken: aFence, reason: 'taken-over' });
    expect(of(name).find((m) => m.owner === 'B' && m.event === 'conflict')).toEqual({ lock: name, event: 'conflict', owner: 'B' });
    await b.release();
  });

  it('publishes error when the store fails', async () => {
    const name = `diag-error-${Date.now()}`;
    const store = new ControllablePersister();
    store.down = true;
    const s = new Singleton(name, store, { owner: 'E', logger: quiet() });
    s.on('error', () => undefined);
    await expect(s.lock()).rejects.toThrow(/store down/);
    expect(of(name).map((m) => m.event)).toEqual(['locking', 'error']);
  });

  it('has no subscriber once unsubscribed, and then nothing is published', async () => {
    unsubscribe(DIAGNOSTICS_CHANNEL, onMessage);
    expect(diagnosticsChannel.hasSubscribers).toBe(false);
    const s = new Singleton(`diag-none-${Date.now()}`, redisPersister, { logger: quiet() });
    expect(await s.lock()).toBe(true);
    await s.release();
    expect(received).toEqual([]);
  });
});
