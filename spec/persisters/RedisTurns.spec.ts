/**
 * Waiters in line on Redis (lib/persisters/redis/turns.ts and the release script's
 * hand-off): a release hands the lease to the first waiter that still listens, in
 * arrival order; that waiter's next acquire answers with it without asking Redis; a
 * waiter that leaves gives back what it was handed; a waiter whose connection is gone
 * is skipped. Each persister here has its own client and subscriber connection, as
 * separate processes would.
 */
import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import type { AcquireResult, LockInfo } from '../../lib/persisters/Persister';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import type { LockKeys } from '../../lib/persisters/redis/keys';
import { HAND_OFF_CLAIM_MS, Turns } from '../../lib/persisters/redis/turns';
import { fenceAfter, newToken, testOwner, waitUntil } from './conformance';

const runId = randomBytes(4).toString('hex');
const keyPrefix = `test:${runId}:turns:`;
const clients: Redis[] = [];
const persisters: RedisPersister[] = [];
let seq = 0;
const uniqueName = (hint: string) => `${hint}-${++seq}`;

function client(): Redis {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set: the jest global setup should have started redis-server');
  const c = new Redis(url, { maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

function persister(c = client()): RedisPersister {
  const p = new RedisPersister(c, { keyPrefix });
  persisters.push(p);
  return p;
}

afterAll(async () => {
  await Promise.all(persisters.map((p) => p.close()));
  await Promise.all(clients.map((c) => (c.status === 'ready' ? c.quit().catch(() => c.disconnect()) : c.disconnect())));
});

const TTL = 30_000;

/** A waiter in line on its own persister: watching `name` with a turn, queued by one acquire. */
async function waiterInLine(name: string, n: number, p = persister()) {
  const token = newToken();
  let wakes = 0;
  const stop = await p.watch(name, () => (wakes += 1), { token });
  const first = await p.acquire({ name, token, ttlMs: TTL, owner: testOwner(n) });
  expect(first.acquired).toBe(false);
  return {
    persister: p,
    token,
    stop,
    wakes: () => wakes,
    /** Resolves once a release told it (woke it), failing after 5 s naming `what`. */
    told: (what = 'the waiter told') => waitUntil(() => wakes > 0, 5_000, what),
    acquire: () => p.acquire({ name, token, ttlMs: TTL, owner: testOwner(n) }),
    release: () => p.release({ name, token }),
  };
}

/** `name` held by a persister of its own (tester 1). */
async function heldLock(name: string) {
  const holder = persister();
  const holderToken = newToken();
  leaseOf(await holder.acquire({ name, token: holderToken, ttlMs: TTL, owner: testOwner(1) }));
  return { holder, release: () => holder.release({ name, token: holderToken }) };
}

function leaseOf(result: AcquireResult): LockInfo {
  if (!result.acquired) throw new Error(`expected a lease, the lock is held by ${result.holder.owner}`);
  return result.lease;
}

describe('RedisPersister: waiters in line', () => {
  let admin: Redis;
  beforeAll(() => {
    admin = client();
  });
  const queueOf = (name: string) => `${keyPrefix}{${name}}:queue`;

  it('says so in its capabilities (not on a Cluster)', () => {
    expect(persister().capabilities.queue).toBe(true);
  });

  it('hands a released lease to the first waiter in line, then the next, in arrival order, with increasing fences', async () => {
    const name = uniqueName('order');
    const holder = persister();
    const holderToken = newToken();
    const first = leaseOf(await holder.acquire({ name, token: holderToken, ttlMs: TTL, owner: testOwner(1) }));
    const w2 = await waiterInLine(name, 2);
    const w3 = await waiterInLine(name, 3);
    expect(await admin.zcard(queueOf(name))).toBe(2);

    expect(await holder.release({ name, token: holderToken })).toBe(true);
    await w2.told('the first waiter told');
    const second = leaseOf(await w2.acquire());
    expect(second.owner).toBe('tester-2');
    expect(fenceAfter(second.fencingToken, first.fencingToken)).toBe(true);
    // Handed over for the claim (2 s), not the whole ttl: the waiter renews it to its ttl at once.
    expect(second.expiresAt.getTime() - second.acquiredAt.getTime()).toBe(HAND_OFF_CLAIM_MS);
    const pttl = await admin.pttl(`${keyPrefix}{${name}}`);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(HAND_OFF_CLAIM_MS);
    // Redis agrees: the lease is the waiter's, and the next waiter is still in line.
    expect((await holder.inspect(name))?.owner).toBe('tester-2');
    expect(await admin.zcard(queueOf(name))).toBe(1);
    expect(w3.wakes()).toBe(0); // no herd: the others were not woken

    expect(await w2.release()).toBe(true);
    await w3.told('the second waiter told');
    const third = leaseOf(await w3.acquire());
    expect(third.owner).toBe('tester-3');
    expect(fenceAfter(third.fencingToken, second.fencingToken)).toBe(true);
    await w2.stop({ keep: true });
    await w3.stop({ keep: true });

    // Nobody in line any more: the release frees it.
    expect(await w3.release()).toBe(true);
    expect(await holder.inspect(name)).toBeNull();
    expect(await admin.exists(queueOf(name))).toBe(0);
  });

  it('a waiter takes the lease handed to it without asking Redis', async () => {
    const name = uniqueName('local');
    const { holder, release } = await heldLock(name);
    const c = client();
    const w = await waiterInLine(name, 2, persister(c));
    await release();
    await w.told('the waiter told');
    // Its client cannot reach Redis now; the acquire answers anyway, from the hand-off.
    c.disconnect();
    const lease = leaseOf(await w.acquire());
    expect(lease.owner).toBe('tester-2');
    await w.stop({ keep: true });
    expect(await holder.release({ name, token: w.token })).toBe(true); // the lease was the waiter's, in Redis too
  });

  it('skips a waiter whose connection is gone (a crashed process) and hands the lease to the next', async () => {
    const name = uniqueName('gone');
    const { release } = await heldLock(name);
    const gone = await waiterInLine(name, 2);
    const next = await waiterInLine(name, 3);
    await gone.persister.close(); // its subscriber connection closes; it never left the line
    expect(await admin.zcard(queueOf(name))).toBe(2);

    await release();
    await next.told('the living waiter told');
    expect(leaseOf(await next.acquire()).owner).toBe('tester-3');
    expect(await admin.zcard(queueOf(name))).toBe(0);
    await next.stop({ keep: true });
    await next.release();
  });

  it('frees the lock when every waiter in line is gone, and publishes the release', async () => {
    const name = uniqueName('allgone');
    const { holder, release } = await heldLock(name);
    const gone = await waiterInLine(name, 2);
    await gone.persister.close();
    let released = 0;
    const watcher = persister();
    const unwatch = await watcher.watch(name, () => (released += 1));
    await release();
    expect(await holder.inspect(name)).toBeNull();
    await waitUntil(() => released > 0, 5_000, 'the release published');
    await unwatch();
  });

  it('a waiter leaving the line is never handed the lease', async () => {
    const name = uniqueName('leave');
    const { holder, release } = await heldLock(name);
    const w = await waiterInLine(name, 2);
    await w.stop();
    expect(await admin.zcard(queueOf(name))).toBe(0);
    await release();
    expect(await holder.inspect(name)).toBeNull();
  });

  it('a waiter leaving after it was handed the lease gives it to the next waiter', async () => {
    const name = uniqueName('handon');
    const { release } = await heldLock(name);
    const w2 = await waiterInLine(name, 2);
    const w3 = await waiterInLine(name, 3);
    await release();
    await w2.told('the first waiter told');
    await w2.stop(); // not kept: it gave up waiting
    await w3.told('the next waiter told');
    expect(leaseOf(await w3.acquire()).owner).toBe('tester-3');
    await w3.stop({ keep: true });
    await w3.release();
  });

  it('a lease taken and kept stays when the waiter stops watching', async () => {
    const name = uniqueName('keep');
    const { holder, release } = await heldLock(name);
    const w = await waiterInLine(name, 2);
    await release();
    await w.told('the waiter told');
    leaseOf(await w.acquire());
    await w.stop({ keep: true });
    expect((await holder.inspect(name))?.owner).toBe('tester-2');
    // A later acquire with the same token is a plain one again: re-sent by the holder, same lease.
    const again = leaseOf(await w.acquire());
    expect(again.owner).toBe('tester-2');
    await w.release();
  });

  it('a queued waiter that finds the lock free takes it and leaves the line', async () => {
    const name = uniqueName('free');
    const { release } = await heldLock(name);
    const w = await waiterInLine(name, 2);
    await admin.del(`${keyPrefix}{${name}}`); // the lease ran out (or was deleted by hand): no release, no hand-off
    leaseOf(await w.acquire());
    expect(await admin.zcard(queueOf(name))).toBe(0);
    await w.stop({ keep: true });
    await w.release();
  });
});

describe('RedisPersister: how old a lease handed over may be', () => {
  it('answers with leaseAgeMs: at least the time since the release, at most that plus the last exchange with Redis', async () => {
    const name = uniqueName('age');
    const { release } = await heldLock(name);
    const w = await waiterInLine(name, 2);
    const queuedAt = performance.now(); // the waiter's conflict answered just before
    expect(await release()).toBe(true);
    const releasedAt = performance.now(); // the release ran before its answer came
    await w.told('the waiter told');
    await new Promise((resolve) => setTimeout(resolve, 300)); // as if the process were busy
    const result = await w.acquire();
    const takenAt = performance.now();
    if (!result.acquired) throw new Error('not handed over');
    expect(result.handedOver).toBe(true);
    const age = result.leaseAgeMs as number;
    expect(age).toBeGreaterThanOrEqual(takenAt - releasedAt - 5); // the server's ms are whole: a few ms of slack
    expect(age).toBeLessThanOrEqual(takenAt - queuedAt + 1_000); // bounded by the anchor (a round trip of slack), not by a renewal interval (10 s)
    expect(age).toBeGreaterThanOrEqual(300);
    await w.stop({ keep: true });
    await w.release();
  });
});

describe('Turns (the waiter side of the line)', () => {
  const keys: LockKeys = { name: 'n', prefix: 'p:', lease: 'p:{n}', record: 'p:{n}:fence', queue: 'p:{n}:queue' };
  const holderWith = (fencingToken: number): LockInfo => ({ ...testOwner(9), name: 'n', fencingToken, acquiredAt: new Date(0), expiresAt: new Date(0) });
  /** A queued turn that was just handed the lease of fence 100 (acquired at 5000, expiring at 6000). */
  const handedOver = () => {
    const turns = new Turns();
    const turn = turns.open(keys, 'tok');
    turns.queued(turn, 1_000, 'holder', testOwner(2));
    expect(turns.receive(turn, '100\n5000\n6000')).toBe(true);
    return { turns, turn };
  };

  it('drops a lease handed over once a queued acquire finds a newer holder (a higher fence): it ran out or was taken while the message waited', () => {
    const { turns, turn } = handedOver();
    turns.conflicted(turn, performance.now(), 7_000, holderWith(101));
    expect(turns.take(turn)).toBeUndefined();
  });

  it('keeps it when the holder\'s record says nothing (deleted or evicted: fence 0, or unreadable)', () => {
    const { turns, turn } = handedOver();
    turns.conflicted(turn, performance.now(), 4_990, holderWith(0));
    turns.conflicted(turn, performance.now(), 4_990, holderWith(Number.NaN));
    expect(turns.take(turn)).toMatchObject({ handedOver: true, lease: { fencingToken: 100 } });
  });

  it('keeps it when the conflict was with an older lease (the conflict came before the hand-over)', () => {
    const { turns, turn } = handedOver();
    const sentAt = performance.now();
    turns.conflicted(turn, sentAt, 4_990, holderWith(99));
    const taken = turns.take(turn);
    expect(taken).toMatchObject({ acquired: true, handedOver: true, lease: { fencingToken: 100 } });
    // The release ran 10 ms of server time after the conflict, which was no earlier than sentAt here.
    expect((taken as { leaseAgeMs: number }).leaseAgeMs).toBeLessThanOrEqual(Math.max(0, performance.now() - sentAt - 10 + 1)); // + 1: whole ms
    expect(turns.take(turn)).toBeUndefined(); // once
  });
});
