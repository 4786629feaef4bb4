import { LockLostError, PersisterError } from '../lib/errors';
import type { SingletonEventName } from '../lib/events';
import { MemoryPersister } from '../lib/persisters/MemoryPersister';
import { Singleton } from '../lib/Singleton';
import { safetyMarginMs } from '../lib/time';
import { ControllablePersister, recordingLogger } from './helpers/ControllablePersister';
import { waitUntil } from './persisters/conformance';

const EVENTS: SingletonEventName[] = ['locking', 'locked', 'conflict', 'expired', 'renewed', 'releasing', 'released', 'lost'];
const quiet = () => recordingLogger().logger;

/** Records every event an instance emits, in order. */
function record(s: Singleton, skip: SingletonEventName[] = ['renewed']): string[] {
  const seen: string[] = [];
  for (const e of EVENTS) if (!skip.includes(e)) s.on(e, () => seen.push(e));
  return seen;
}

const baselineListeners = () =>
  ['SIGINT', 'SIGTERM', 'SIGHUP', 'uncaughtException', 'unhandledRejection', 'beforeExit'].map((e) =>
    process.listenerCount(e as 'SIGINT'),
  );

describe('new Singleton(): bad input is refused at construction, naming the value', () => {
  const p = new MemoryPersister();
  it.each([
    ['', /Expected `name` to be a string of 1 to 200 printable characters.*"" \(string\)/],
    ['x'.repeat(201), /`name`.*\(string\)/],
    ['bad\nname', /`name`.*"bad\\nname"/],
    [42, /`name`.*42 \(number\)/],
    [undefined, /`name`.*undefined \(undefined\)/],
  ])('name %p', (name, message) => {
    expect(() => new Singleton(name as string, p)).toThrow(TypeError);
    expect(() => new Singleton(name as string, p)).toThrow(message);
  });

  it('accepts 200 printable characters, unicode included', () => {
    expect(new Singleton('é'.repeat(200), p, { logger: quiet() }).name).toHaveLength(200);
  });

  it.each([
    [{ ttlMs: -1 }, RangeError, /`ttlMs`.*-1 \(number\)/],
    [{ ttlMs: '15000' }, TypeError, /`ttlMs`.*"15000" \(string\)/],
    [{ ttlMs: 1.5 }, RangeError, /`ttlMs`/],
    [{ ttlMs: 1000, renewIntervalMs: 1000 }, RangeError, /`renewIntervalMs` to be a whole number from 1 to 999/],
    [{ retryIntervalMs: 0 }, RangeError, /`retryIntervalMs`/],
    [{ lockExpireSeconds: 'x' }, TypeError, /`lockExpireSeconds`/],
    [{ lockExpireSeconds: 2, ttlMs: 3000 }, RangeError, /agree; give only one/],
    [{ owner: '' }, TypeError, /`owner`/],
    [{ handleSignals: ['SIGFOO'] }, TypeError, /`handleSignals`.*"SIGFOO"/],
    [{ handleSignals: ['SIGKILL'] }, TypeError, /SIGKILL and SIGSTOP cannot be handled/],
    [{ handleErrors: 'yes' }, TypeError, /`handleErrors` to be true or false/],
    [{ shutdownTimeoutMs: -5 }, RangeError, /`shutdownTimeoutMs`/],
    [{ onLost: 'crash' }, TypeError, /`onLost` to be "exit" or "emit", got "crash"/],
    [{ logger: {} }, TypeError, /`logger` to be a pino-compatible logger/],
    [{ ttl: 1000 }, TypeError, /Unknown option `ttl`; allowed options are: ttlMs/],
  ])('options %j', (options, type, message) => {
    expect(() => new Singleton('x', p, options as never)).toThrow(type);
    expect(() => new Singleton('x', p, options as never)).toThrow(message);
  });

  it('reads an options object again when it changed since its last use: a bad value refused, a new value taken', () => {
    const options: Record<string, unknown> = { ttlMs: 1000, logger: quiet() };
    expect(new Singleton('x', p, options).ttlMs).toBe(1000);
    options.ttlMs = 5000;
    expect(new Singleton('x', p, options).ttlMs).toBe(5000);
    options.ttlMs = -5;
    expect(() => new Singleton('x', p, options)).toThrow(/`ttlMs`.*-5 \(number\)/);
    options.ttlMs = 5000;
    options.bogus = 1;
    expect(() => new Singleton('x', p, options)).toThrow(/Unknown option `bogus`/);
  });

  it('refuses something that is not a persister, pointing at fromCallbackPersister', () => {
    expect(() => new Singleton('x', { persistLock() {} } as never)).toThrow(/fromCallbackPersister/);
  });

  it.each([
    ['a URL string', 'redis://127.0.0.1:6379', /A store URL\? Make the persister from it: `await persisterFromUrl\(url\)`/],
    ['a promise', Promise.resolve(new MemoryPersister()), /A promise\? `persisterFromUrl\(\)` resolves the persister: `await` it first/],
    ['a class', MemoryPersister, /A class or factory\? Pass an instance/],
    ['an ioredis-like client', { evalsha() {}, duplicate() {}, status: 'ready' }, /An ioredis client\? Wrap it: `new RedisPersister\(client\)`/],
  ])('refuses %s in place of a persister, saying what to do with it', (_what, value, hint) => {
    expect(() => new Singleton('x', value as never)).toThrow(TypeError);
    expect(() => new Singleton('x', value as never)).toThrow(hint);
  });

  it('takes lockExpireSeconds as the seed-compatible alias of ttlMs', () => {
    expect(new Singleton('x', p, { lockExpireSeconds: 2.5, logger: quiet() }).ttlMs).toBe(2500);
  });
});

describe('Singleton state machine (MemoryPersister)', () => {
  let baseline: number[];
  beforeEach(() => {
    baseline = baselineListeners();
  });
  afterEach(() => {
    expect(baselineListeners()).toEqual(baseline);
  });

  it('lock → locked; a second instance → conflict naming the holder; release → released', async () => {
    const p = new MemoryPersister();
    const a = new Singleton('job', p, { owner: 'A', logger: quiet() });
    const b = new Singleton('job', p, { owner: 'B', logger: quiet() });
    const seenA = record(a);
    const seenB = record(b);
    let conflictHolder: string | undefined;
    b.on('conflict', (e) => {
      conflictHolder = e.holder.owner;
      expect(e.message).toContain('held by A');
      expect(e.name).toBe('job');
    });
    expect(a.state).toBe('idle');
    expect(await a.lock()).toBe(true);
    expect(a.state).toBe('locked');
    expect(typeof a.fencingToken).toBe('number');
    expect(await b.lock()).toBe(false);
    expect(b.state).toBe('conflict');
    expect(conflictHolder).toBe('A');
    expect(await b.exists()).toBe(true);
    const info = await b.inspect();
    expect(info?.owner).toBe('A');
    expect(info?.fencingToken).toBe(a.fencingToken);
    await a.release();
    expect(a.state).toBe('released');
    expect(a.fencingToken).toBeUndefined();
    expect(await a.exists()).toBe(false);
    expect(seenA).toEqual(['locking', 'locked', 'releasing', 'released']);
    expect(seenB).toEqual(['locking', 'conflict']);
  });

  it('every payload has name and message; locked carries the fencing token and expiry', async () => {
    const s = new Singleton('payloads', new MemoryPersister(), { logger: quiet() });
    const payloads: Array<{ event: string; payload: Record<string, unknown> }> = [];
    for (const e of EVENTS) s.on(e, (payload: object) => payloads.push({ event: e, payload: payload as Record<string, unknown> }));
    await s.lock();
    await s.release();
    for (const { payload } of payloads) {
      expect(payload.name).toBe('payloads');
      expect(typeof payload.message).toBe('string');
    }
    const locked = payloads.find((x) => x.event === 'locked')!.payload;
    expect(locked.fencingToken).toBe(payloads.length && locked.fencingToken);
    expect(locked.expiresAt).toBeInstanceOf(Date);
  });

  it('locks again after released, with a strictly greater fencing token', async () => {
    const s = new Singleton('again', new MemoryPersister(), { logger: quiet() });
    const tokens: Array<bigint | number> = [];
    s.on('locked', (e) => tokens.push(e.fencingToken!));
    for (let i = 0; i < 3; i++) {
      expect(await s.lock()).toBe(true);
      await s.release();
    }
    expect(tokens).toHaveLength(3);
    expect(tokens[1] > tokens[0] && tokens[2] > tokens[1]).toBe(true);
  });

  it('lock() while locked resolves true without a new lease; concurrent lock() share one attempt', async () => {
    const p = new ControllablePersister();
    const s = new Singleton('dedupe', p, { logger: quiet() });
    const [x, y] = await Promise.all([s.lock(), s.lock()]);
    expect([x, y]).toEqual([true, true]);
    expect(await s.lock()).toBe(true);
    expect(p.calls.acquire).toBe(1);
    await s.release();
    await s.release(); // no-op
    expect(p.calls.release).toBe(1);
  });

  it('release() never deletes someone else’s lease', async () => {
    const p = new MemoryPersister();
    const a = new Singleton('owner-check', p, { logger: quiet() });
    const b = new Singleton('owner-check', p, { logger: quiet() });
    await a.lock();
    await b.lock();
    await b.release(); // b holds nothing: no-op
    expect((await p.inspect('owner-check'))?.fencingToken).toBe(a.fencingToken);
    await a.release();
  });

  it('a store failure in lock() emits error and rejects with PersisterError — never a conflict', async () => {
    const p = new ControllablePersister();
    const s = new Singleton('down', p, { logger: quiet() });
    const seen = record(s);
    const errors: Error[] = [];
    s.on('error', (e) => errors.push(e));
    p.down = true;
    await expect(s.lock()).rejects.toBeInstanceOf(PersisterError);
    expect(errors[0]).toBeInstanceOf(PersisterError);
    expect(errors[0].message).toMatch(/Acquiring lock "down" failed: .*store down.*Check that the store is reachable/);
    expect(seen).toEqual(['locking']);
    expect(s.state).toBe('idle');
    p.down = false;
    expect(await s.lock()).toBe(true);
    await s.release();
  });

  it('a store failure with no error listener is logged, not thrown as an unhandled error event', async () => {
    const p = new ControllablePersister();
    const { logger, lines } = recordingLogger();
    const s = new Singleton('down-logged', p, { logger });
    p.down = true;
    await expect(s.lock()).rejects.toThrow(PersisterError);
    expect(lines.some((l) => l.level === 'error' && /Acquiring lock/.test(l.msg ?? ''))).toBe(true);
  });

  it('logs transitions through a child logger with lock and owner bound; conflict at warn; never the token', async () => {
    const bound: Array<Record<string, unknown>> = [];
    const lines: Array<{ level: string; obj: object; msg?: string }> = [];
    const make = (bindings: Record<string, unknown>) => {
      const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj: { ...bindings, ...obj }, msg });
      return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
    };
    const logger = { ...make({}), child: (b: Record<string, unknown>) => (bound.push(b), make(b)) };
    const p = new MemoryPersister();
    const a = new Singleton('logged', p, { owner: 'A', logger });
    const b = new Singleton('logged', p, { owner: 'B', logger });
    await a.lock();
    await b.lock();
    await a.release();
    expect(bound).toEqual([{ lock: 'logged', owner: 'A' }, { lock: 'logged', owner: 'B' }]);
    expect(lines.filter((l) => l.level === 'debug').map((l) => (l.obj as { to: string }).to)).toEqual([
      'locking',
      'locked',
      'locking',
      'releasing',
      'released',
    ]);
    expect(lines.filter((l) => l.level === 'warn').map((l) => (l.obj as { to: string }).to)).toEqual(['conflict']);
    expect(JSON.stringify(lines)).not.toMatch(/[0-9a-f]{32}/);
  });

  it('run(): done with the value; conflict with the holder; a throwing fn still releases', async () => {
    const p = new MemoryPersister();
    const s = new Singleton('run', p, { logger: quiet() });
    expect(await s.run(async (signal) => (signal.aborted ? 'no' : 'yes'))).toEqual({ status: 'done', value: 'yes' });
    expect(await s.exists()).toBe(false);

    const other = new Singleton('run', p, { owner: 'other', logger: quiet() });
    await other.lock();
    const result = await s.run(() => 'never');
    expect(result.status).toBe('conflict');
    expect(result.status === 'conflict' && result.holder.owner).toBe('other');
    await other.release();

    await expect(s.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await s.exists()).toBe(false);
    expect(s.state).toBe('released');
  });

  it('await using releases at the end of the scope', async () => {
    const p = new MemoryPersister();
    {
      await using s = new Singleton('scoped', p, { logger: quiet() });
      await s.lock();
      expect(await p.inspect('scoped')).not.toBeNull();
    }
    expect(await p.inspect('scoped')).toBeNull();
  });

  it('adds process listeners only while holding, and removes them after release', async () => {
    const before = process.listenerCount('SIGTERM');
    const s = new Singleton('hooks', new MemoryPersister(), { logger: quiet() });
    expect(process.listenerCount('SIGTERM')).toBe(before);
    await s.lock();
    expect(process.listenerCount('SIGTERM')).toBe(before + 1);
    expect(process.listenerCount('uncaughtException')).toBeGreaterThan(0);
    await s.release();
    expect(process.listenerCount('SIGTERM')).toBe(before);
  });

  it('handleSignals: false and handleErrors: false add no process listener at all', async () => {
    const before = baselineListeners();
    const s = new Singleton('opt-out', new MemoryPersister(), { handleSignals: false, handleErrors: false, logger: quiet() });
    await s.lock();
    expect(baselineListeners()).toEqual(before);
    await s.release();
  });
});

describe('renewal and loss (fake timers)', () => {
  beforeEach(() => {
    jest.useFakeTimers();
  });
  afterEach(() => {
    // The keeper drops its unref'd timer at its first tick with nothing held: within one renew
    // interval (at most 1000 / 3 ms here). A lease still held would renew and leave timers.
    jest.advanceTimersByTime(1_000);
    const left = jest.getTimerCount();
    jest.useRealTimers();
    expect(left).toBe(0);
  });

  it('renews in the background: held for 10× ttl, same fencing token, renewed events', async () => {
    const p = new ControllablePersister();
    const s = new Singleton('renew', p, { ttlMs: 300, logger: quiet() });
    let renewed = 0;
    s.on('renewed', (e) => {
      renewed += 1;
      expect(e.expiresAt.getTime()).toBeGreaterThan(Date.now());
    });
    await s.lock();
    const token = s.fencingToken;
    await jest.advanceTimersByTimeAsync(3000);
    expect(s.state).toBe('locked');
    expect((await p.inspect('renew'))?.fencingToken).toBe(token);
    expect(renewed).toBeGreaterThanOrEqual(25);
    expect(p.calls.renew).toBe(renewed);
    await s.release();
  });

  it('store unreachable: renewals retried, `error` per failure, then `lost` before the store could expire the lease', async () => {
    const p = new ControllablePersister();
    const s = new Singleton('outage', p, { ttlMs: 1000, logger: quiet(), onLost: 'emit' });
    const errors: Error[] = [];
    const lost: Array<{ reason: string; at: number }> = [];
    s.on('error', (e) => errors.push(e));
    s.on('lost', (e) => lost.push({ reason: e.reason, at: Date.now() }));
    await s.lock();
    const lease = await p.inner.inspect('outage');
    p.down = true;
    await jest.advanceTimersByTimeAsync(1500);
    expect(lost).toHaveLength(1);
    expect(lost[0].reason).toBe('store-unreachable');
    // Declared lost before the store's own expiry.
    expect(lost[0].at).toBeLessThan(lease!.expiresAt.getTime() + 1);
    expect(errors.length).toBeGreaterThanOrEqual(3); // retried, not lost at the first failure
    expect(errors.every((e) => e instanceof PersisterError)).toBe(true);
    expect(s.state).toBe('lost');
    expect(s.fencingToken).toBeUndefined();
  });

  it('renewIntervalMs close to ttlMs: renewed before the deadline, and a renewal that fails is retried in time', async () => {
    const p = new ControllablePersister();
    const s = new Singleton('late-interval', p, { ttlMs: 1000, renewIntervalMs: 990, logger: quiet(), onLost: 'emit' });
    const seen: string[] = [];
    s.on('renewed', () => seen.push('renewed'));
    s.on('error', () => seen.push('error'));
    s.on('lost', (e) => seen.push(`lost: ${e.reason}`));
    await s.lock();
    p.down = true; // the first renewal fails
    for (let waited = 0; p.calls.renew === 0 && waited < 1_000; waited += 10) await jest.advanceTimersByTimeAsync(10);
    p.down = false;
    await jest.advanceTimersByTimeAsync(3_000);
    expect(seen[0]).toBe('error');
    expect(seen.slice(1).every((e) => e === 'renewed')).toBe(true);
    expect(seen.length).toBeGreaterThanOrEqual(4);
    expect(s.state).toBe('locked');
    await s.release();
  });

  it('a renewal that hangs still ends in `lost` at the local deadline', async () => {
    const p = new ControllablePersister();
    const s = new Singleton('hang', p, { ttlMs: 600, logger: quiet(), onLost: 'emit' });
    const lost: string[] = [];
    s.on('lost', (e) => lost.push(e.reason));
    await s.lock();
    const acquiredAt = Date.now();
    p.hangRenewals = true;
    const deadline = 600 - safetyMarginMs(600, 0); // the local deadline, measured from the acquire's send
    await jest.advanceTimersByTimeAsync(deadline - 5);
    expect(lost).toEqual([]);
    await jest.advanceTimersByTimeAsync(10);
    expect(lost).toEqual(['store-unreachable']);
    expect(Date.now() - acquiredAt).toBeLessThan(600);
  });

  it('a renewal refused because someone else holds it → lost: taken-over with the holder', async () => {
    const p = new ControllablePersister();
    const s = new Singleton('stolen', p, { ttlMs: 300, logger: quiet() });
    const thief = { name: 'stolen', owner: 'thief', hostname: 'h', pid: 1, fencingToken: 9, acquiredAt: new Date(), expiresAt: new Date() };
    const lost: Array<{ reason: string; owner?: string }> = [];
    s.on('lost', (e) => lost.push({ reason: e.reason, owner: e.holder?.owner }));
    await s.lock();
    p.stolenBy = thief;
    await jest.advanceTimersByTimeAsync(200);
    expect(lost).toEqual([{ reason: 'taken-over', owner: 'thief' }]);
    p.stolenBy = null;
    expect(await s.lock()).toBe(false); // the memory store still has our old lease under another token
    await jest.advanceTimersByTimeAsync(400);
    expect(await s.lock()).toBe(true);
    await s.release();
  });

  it('a renewal that finds nobody → lost: expired', async () => {
    const p = new ControllablePersister();
    const s = new Singleton('vanished', p, { ttlMs: 300, logger: quiet() });
    const lost: string[] = [];
    s.on('lost', (e) => lost.push(e.reason));
    await s.lock();
    p.stolenBy = null;
    await jest.advanceTimersByTimeAsync(200);
    expect(lost).toEqual(['expired']);
  });

  it('default onLost with no `lost` listener logs one line and exits with code 70', async () => {
    const exit = jest.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
    try {
      const p = new ControllablePersister();
      const { logger, lines } = recordingLogger();
      const s = new Singleton('exit70', p, { ttlMs: 300, logger });
      await s.lock();
      p.stolenBy = null;
      await jest.advanceTimersByTimeAsync(200);
      expect(exit).toHaveBeenCalledWith(70);
      const fatal = lines.filter((l) => l.level === 'error');
      expect(fatal).toHaveLength(1);
      expect(fatal[0].msg).toMatch(/exiting with code 70: lock "exit70" was lost \(expired\)/);
    } finally {
      exit.mockRestore();
    }
  });

  it('run(): the signal aborts with LockLostError on loss and run() rejects with it', async () => {
    const p = new ControllablePersister();
    // run() does not change the onLost policy: the user opts into handling the loss.
    const s = new Singleton('run-lost', p, { ttlMs: 300, logger: quiet(), onLost: 'emit' });
    let aborted: unknown;
    const running = s.run(
      (signal) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = signal.reason;
            resolve('stopped');
          });
        }),
    );
    await jest.advanceTimersByTimeAsync(0);
    p.stolenBy = null;
    const assertion = expect(running).rejects.toBeInstanceOf(LockLostError);
    await jest.advanceTimersByTimeAsync(200);
    await assertion;
    expect(aborted).toBeInstanceOf(LockLostError);
    expect((aborted as LockLostError).reason).toBe('expired');
  });

  it('takes over an expired lease and emits expired before locked', async () => {
    const p = new ControllablePersister();
    const dead = new Singleton('takeover', p, { ttlMs: 300, owner: 'dead', logger: quiet(), onLost: 'emit' });
    await dead.lock();
    // The holder stalls and cannot reach the store: its lease runs out there.
    p.hangRenewals = true;
    p.down = true;
    dead.on('lost', () => undefined);
    await jest.advanceTimersByTimeAsync(350);
    p.hangRenewals = false;
    p.down = false;
    const next = new Singleton('takeover', p, { ttlMs: 300, owner: 'next', logger: quiet() });
    const seen = record(next);
    let previous: string | undefined;
    next.on('expired', (e) => (previous = e.previous.owner));
    expect(await next.lock()).toBe(true);
    expect(seen).toEqual(['locking', 'expired', 'locked']);
    expect(previous).toBe('dead');
    await next.release();
  });
});

describe('acquire() and run() without wait, on a slow store: signal and timeoutMs bound the one attempt', () => {
  /** A store whose acquires wait until `open()`. */
  function slowStore() {
    const p = new ControllablePersister();
    let open = () => undefined as void;
    p.acquireGate = new Promise<void>((resolve) => (open = resolve));
    return { p, open: () => open() };
  }

  it('acquire({ timeoutMs }) rejects with a TimeoutError at the deadline; the lease that comes later is given back', async () => {
    const { p, open } = slowStore();
    const s = new Singleton('slow-timeout', p, { logger: quiet() });
    const t0 = performance.now();
    await expect(s.acquire({ timeoutMs: 50 })).rejects.toMatchObject({ name: 'TimeoutError', message: expect.stringMatching(/Timed out after 50 ms trying to lock "slow-timeout"/) });
    expect(performance.now() - t0).toBeLessThan(1_000);
    open();
    await waitUntil(async () => p.calls.release > 0 && (await p.inner.inspect('slow-timeout')) === null, 5_000, 'the late lease given back');
    expect(s.lease).toBeUndefined();
    expect(await s.acquire()).not.toBeNull(); // the instance is free to lock again
    await s.release();
  });

  it('run(fn, { signal }) aborted while the attempt is in flight rejects with an AbortError and never runs fn', async () => {
    const { p, open } = slowStore();
    const s = new Singleton('slow-abort', p, { logger: quiet() });
    const caller = new AbortController();
    let ran = false;
    const running = s.run(() => (ran = true), { signal: caller.signal });
    await new Promise((r) => setTimeout(r, 20));
    caller.abort();
    await expect(running).rejects.toMatchObject({ name: 'AbortError' });
    open();
    await waitUntil(async () => p.calls.release > 0 && (await p.inner.inspect('slow-abort')) === null, 5_000, 'the late lease given back');
    expect(ran).toBe(false);
  });

  it('waitForLock({ timeoutMs }) that ends while its attempt is in flight: no `locked` for the lease that comes later, given back quietly', async () => {
    const { p, open } = slowStore();
    const s = new Singleton('slow-wait', p, { logger: quiet() });
    const seen = record(s);
    await expect(s.waitForLock({ timeoutMs: 50 })).rejects.toMatchObject({ name: 'TimeoutError' });
    open();
    await waitUntil(async () => p.calls.release > 0 && (await p.inner.inspect('slow-wait')) === null, 5_000, 'the late lease given back');
    expect(seen).toEqual(['locking']);
    expect(s.state).toBe('idle');
  });

  it('a caller that gives up does not cancel the attempt of another caller on the same instance', async () => {
    const { p, open } = slowStore();
    const s = new Singleton('slow-shared', p, { logger: quiet() });
    const locking = s.lock(); // the instance's own attempt, in flight
    await expect(s.acquire({ timeoutMs: 30 })).rejects.toMatchObject({ name: 'TimeoutError' });
    open();
    expect(await locking).toBe(true);
    expect(s.state).toBe('locked');
    await s.release();
  });
});

describe('waitForLock (MemoryPersister)', () => {
  it('hands over on release through the watch notification, well before retryIntervalMs', async () => {
    const p = new MemoryPersister();
    const a = new Singleton('handover', p, { logger: quiet() });
    const b = new Singleton('handover', p, { retryIntervalMs: 60_000, logger: quiet() });
    await a.lock();
    const waiting = b.waitForLock();
    await new Promise((r) => setTimeout(r, 20));
    expect(b.state).toBe('conflict');
    const t0 = performance.now();
    await a.release();
    await waiting;
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(b.state).toBe('locked');
    await b.release();
  });

  it('times out with a TimeoutError and aborts with an AbortError, leaving nothing behind', async () => {
    const p = new MemoryPersister();
    const a = new Singleton('blocked', p, { logger: quiet() });
    const b = new Singleton('blocked', p, { logger: quiet() });
    await a.lock();
    await expect(b.waitForLock({ timeoutMs: 50 })).rejects.toMatchObject({ name: 'TimeoutError' });
    const controller = new AbortController();
    const waiting = b.waitForLock({ signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    await expect(b.waitForLock({ signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(b.waitForLock({ timeoutMs: -1 })).rejects.toThrow(RangeError);
    await a.release();
  });

  it('emits conflict once per holder change, never twice in a row for the same holder', async () => {
    const p = new MemoryPersister();
    const a = new Singleton('leader', p, { owner: 'A', logger: quiet() });
    const c = new Singleton('leader', p, { owner: 'C', logger: quiet() });
    const w = new Singleton('leader', p, { owner: 'W', retryIntervalMs: 5, logger: quiet() });
    const leaders: string[] = [];
    w.on('conflict', (e) => leaders.push(`${e.holder.owner}:${String(e.holder.fencingToken)}`));
    await a.lock();
    const waiting = w.waitForLock({ timeoutMs: 150 });
    await new Promise((r) => setTimeout(r, 50)); // ~10 attempts against A
    expect(leaders).toEqual([`A:${String(a.fencingToken)}`]);
    // A releases; C races the notified waiter W for it. Either way W reports each leader once.
    await a.release();
    if (await c.lock()) {
      await expect(waiting).rejects.toMatchObject({ name: 'TimeoutError' });
      expect(leaders).toEqual([`A:${String(a.fencingToken ?? leaders[0].split(':')[1])}`, `C:${String(c.fencingToken)}`]);
    } else {
      await waiting; // the notified waiter won: hot standby took it first
      expect(w.state).toBe('locked');
    }
    for (let i = 1; i < leaders.length; i++) expect(leaders[i]).not.toBe(leaders[i - 1]);
    await c.release();
    await w.release();
  });

  it('keeps waiting through store errors: logged as `error`, retried with backoff, then locks', async () => {
    const p = new ControllablePersister();
    const a = new Singleton('flaky', p, { owner: 'A', logger: quiet() });
    const w = new Singleton('flaky', p, { owner: 'W', retryIntervalMs: 20, logger: quiet() });
    const errors: Error[] = [];
    w.on('error', (e) => errors.push(e));
    await a.lock();
    const waiting = w.waitForLock();
    await new Promise((r) => setTimeout(r, 30));
    p.down = true;
    await new Promise((r) => setTimeout(r, 150));
    const attemptsWhileDown = p.calls.acquire;
    p.down = false;
    await a.release();
    await waiting;
    expect(w.state).toBe('locked');
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect(errors.every((e) => e instanceof PersisterError)).toBe(true);
    // Backoff: far fewer attempts than one per millisecond while the store was down.
    expect(attemptsWhileDown).toBeLessThan(40);
    await w.release();
  });

  it('release() ends a wait in progress', async () => {
    const p = new MemoryPersister();
    const a = new Singleton('stop-wait', p, { logger: quiet() });
    const b = new Singleton('stop-wait', p, { logger: quiet() });
    await a.lock();
    const waiting = b.waitForLock();
    await new Promise((r) => setTimeout(r, 10));
    await b.release();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    await a.release();
  });

  it('run({ wait: true }) waits its turn', async () => {
    const p = new MemoryPersister();
    const a = new Singleton('run-wait', p, { logger: quiet() });
    const b = new Singleton('run-wait', p, { logger: quiet() });
    const order: string[] = [];
    await a.lock();
    const running = b.run(async () => order.push('b runs'), { wait: true });
    await new Promise((r) => setTimeout(r, 20));
    order.push('a releases');
    await a.release();
    expect(await running).toEqual({ status: 'done', value: 2 });
    expect(order).toEqual(['a releases', 'b runs']);
  });
});
