/**
 * The conformance suite every persister must pass (DESIGN.md §3).
 *
 * A store's spec calls `describePersister(label, factory)`; the factory is
 * called once per suite (beforeAll) and its `cleanup` once after it. Every
 * test uses names with a random prefix, so several suites can share one store.
 */
import { randomBytes } from 'node:crypto';
import type { LockInfo, OwnerInfo, Persister, RenewResult } from '../../lib/persisters/Persister';
import { describeOperatorConformance } from './operatorConformance';

/** What a store's spec hands to {@link describePersister}. */
export interface PersisterFixture {
  /** The persister under test. */
  persister: Persister;
  /** Frees what the factory opened (clients, servers, directories). */
  cleanup?: () => Promise<void>;
  /** Restarts the store under the same persister, losing its data where the store would. */
  restart?: () => Promise<void>;
}

/**
 * Polls `predicate` every few milliseconds until it returns true.
 * Rejects with a message naming `what` when `timeoutMs` runs out.
 */
export async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`waitUntil: ${what} did not become true within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A fresh random 128-bit token, as the `Singleton` makes them. */
export function newToken(): string {
  return randomBytes(16).toString('hex');
}

/** A distinct, recognizable owner for test participant `n`. */
export function testOwner(n: number): OwnerInfo {
  return { owner: `tester-${n}`, hostname: `host-${n}`, pid: 40_000 + n };
}

/** `a > b` for fencing tokens of either representation. */
export function fenceAfter(a: bigint | number, b: bigint | number): boolean {
  return BigInt(a) > BigInt(b);
}

/** Fails the test if `value`, serialized, contains `token` anywhere. */
export function expectNoToken(value: unknown, token: string): void {
  const json = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? '';
  expect(json.includes(token)).toBe(false);
}

function expectHolder(info: LockInfo | null | undefined, name: string, who: OwnerInfo, fence?: bigint | number): void {
  expect(info).toBeTruthy();
  const holder = info as LockInfo;
  expect(holder.name).toBe(name);
  expect(holder.owner).toBe(who.owner);
  expect(holder.hostname).toBe(who.hostname);
  expect(holder.pid).toBe(who.pid);
  if (fence !== undefined) expect(BigInt(holder.fencingToken)).toBe(BigInt(fence));
}

/** Tolerance, in ms, for store-clock timestamps compared with this process's clock. */
const CLOCK_SLACK_MS = 2_000;
/** A lease short enough to watch it expire. */
const SHORT_TTL_MS = 60;
/** A lease long enough never to expire during a test. */
const LONG_TTL_MS = 30_000;

/** Defines `describe(label)` with the tests every persister must pass. */
export function describePersister(label: string, factory: () => Promise<PersisterFixture>): void {
  describe(label, () => {
    let fixture: PersisterFixture;
    let p: Persister;
    const runId = randomBytes(4).toString('hex');
    let seq = 0;
    const uniqueName = (hint = 'lock') => `conf-${runId}-${++seq}-${hint}`;

    beforeAll(async () => {
      fixture = await factory();
      p = fixture.persister;
    });
    afterAll(async () => {
      await fixture?.cleanup?.();
    });

    /** Acquires `name` for participant `n` and asserts it was acquired. */
    async function take(name: string, n: number, ttlMs = LONG_TTL_MS, token = newToken()) {
      const result = await p.acquire({ name, token, ttlMs, owner: testOwner(n) });
      if (!result.acquired) throw new Error(`expected to acquire ${name}, held by ${result.holder.owner}`);
      expectNoToken(result, token);
      return { token, lease: result.lease, expired: result.expired };
    }

    /** Waits (polling) until the store reports `name` free. */
    const untilFree = (name: string) => waitUntil(async () => (await p.inspect(name)) === null, 5_000, `${name} to expire`);

    it('states its capabilities as four booleans', () => {
      const caps = p.capabilities;
      for (const key of ['serverClock', 'notify', 'fencing', 'persistent'] as const) {
        expect(typeof caps[key]).toBe('boolean');
      }
    });

    it('acquires a free name with a sane lease', async () => {
      const name = uniqueName();
      const before = Date.now();
      const { lease, expired } = await take(name, 1, 10_000);
      expect(expired).toBeUndefined();
      expectHolder(lease, name, testOwner(1));
      expect(['number', 'bigint']).toContain(typeof lease.fencingToken);
      expect(BigInt(lease.fencingToken) > 0n).toBe(true);
      expect(lease.acquiredAt).toBeInstanceOf(Date);
      expect(lease.expiresAt).toBeInstanceOf(Date);
      expect(Math.abs(lease.acquiredAt.getTime() - before)).toBeLessThan(CLOCK_SLACK_MS);
      expect(Math.abs(lease.expiresAt.getTime() - lease.acquiredAt.getTime() - 10_000)).toBeLessThanOrEqual(50);
      const seen = await p.inspect(name);
      expectHolder(seen, name, testOwner(1), lease.fencingToken);
      expect(seen?.acquiredAt.getTime()).toBe(lease.acquiredAt.getTime());
    });

    it('refuses a second token and names the holder', async () => {
      const name = uniqueName();
      const first = await take(name, 1);
      const token = newToken();
      const second = await p.acquire({ name, token, ttlMs: LONG_TTL_MS, owner: testOwner(2) });
      expectNoToken(second, token);
      expectNoToken(second, first.token);
      expect(second.acquired).toBe(false);
      if (second.acquired) return;
      expectHolder(second.holder, name, testOwner(1), first.lease.fencingToken);
      expect(Math.abs(second.holder.expiresAt.getTime() - first.lease.expiresAt.getTime())).toBeLessThan(CLOCK_SLACK_MS);
    });

    it('lets exactly one of 50 concurrent acquirers win', async () => {
      const name = uniqueName('race');
      const tokens = Array.from({ length: 50 }, () => newToken());
      const results = await Promise.all(
        tokens.map((token, i) => p.acquire({ name, token, ttlMs: LONG_TTL_MS, owner: testOwner(i) })),
      );
      const winners = results.flatMap((r) => (r.acquired ? [r.lease] : []));
      expect(winners).toHaveLength(1);
      for (const r of results) {
        if (!r.acquired) expect(BigInt(r.holder.fencingToken)).toBe(BigInt(winners[0].fencingToken));
      }
      for (let i = 0; i < tokens.length; i++) expectNoToken(results[i], tokens[i]);
    });

    it('is idempotent for the same token (same fence, no expired)', async () => {
      const name = uniqueName();
      const first = await take(name, 1);
      const again = await take(name, 1, LONG_TTL_MS, first.token);
      expect(BigInt(again.lease.fencingToken)).toBe(BigInt(first.lease.fencingToken));
      expect(again.lease.acquiredAt.getTime()).toBe(first.lease.acquiredAt.getTime());
      expect(again.expired).toBeUndefined();
    });

    it('renews with the right token and moves expiresAt forward', async () => {
      const name = uniqueName();
      const { token, lease } = await take(name, 1, 5_000);
      const renewed = await p.renew({ name, token, ttlMs: 20_000 });
      expectNoToken(renewed, token);
      expect(renewed.renewed).toBe(true);
      if (!renewed.renewed) return;
      expect(renewed.expiresAt).toBeInstanceOf(Date);
      expect(renewed.expiresAt.getTime()).toBeGreaterThanOrEqual(lease.expiresAt.getTime() + 14_000);
      const seen = await p.inspect(name);
      expect(Math.abs((seen?.expiresAt.getTime() ?? 0) - renewed.expiresAt.getTime())).toBeLessThan(50);
      expect(BigInt(seen?.fencingToken ?? 0)).toBe(BigInt(lease.fencingToken));
    });

    it('refuses renew and release with a wrong token and leaves the lease untouched', async () => {
      const name = uniqueName();
      const { token, lease } = await take(name, 1, LONG_TTL_MS);
      const wrong = newToken();
      const renewed = await p.renew({ name, token: wrong, ttlMs: 120_000 });
      expectNoToken(renewed, token);
      expect(renewed.renewed).toBe(false);
      if (!renewed.renewed) expectHolder(renewed.holder, name, testOwner(1), lease.fencingToken);
      expect(await p.release({ name, token: wrong })).toBe(false);
      const seen = await p.inspect(name);
      expectHolder(seen, name, testOwner(1), lease.fencingToken);
      expect(Math.abs((seen?.expiresAt.getTime() ?? 0) - lease.expiresAt.getTime())).toBeLessThan(50);
      expect(await p.release({ name, token })).toBe(true);
    });

    it('releases once: true, then inspect is null, then false', async () => {
      const name = uniqueName();
      const { token } = await take(name, 1);
      expect(await p.release({ name, token })).toBe(true);
      expect(await p.inspect(name)).toBeNull();
      expect(await p.release({ name, token })).toBe(false);
    });

    it('increases the fence across release → acquire and reports no expired', async () => {
      const name = uniqueName();
      const first = await take(name, 1);
      expect(await p.release({ name, token: first.token })).toBe(true);
      const second = await take(name, 2);
      expect(fenceAfter(second.lease.fencingToken, first.lease.fencingToken)).toBe(true);
      expect(second.expired).toBeUndefined();
      expect(await p.release({ name, token: second.token })).toBe(true);
      const third = await take(name, 1, LONG_TTL_MS, first.token);
      expect(fenceAfter(third.lease.fencingToken, second.lease.fencingToken)).toBe(true);
    });

    it('increases the fence across expiry → acquire and reports the expired holder', async () => {
      const name = uniqueName();
      const first = await take(name, 1, SHORT_TTL_MS);
      await untilFree(name);
      const second = await take(name, 2);
      expect(fenceAfter(second.lease.fencingToken, first.lease.fencingToken)).toBe(true);
      expectHolder(second.expired, name, testOwner(1), first.lease.fencingToken);
      expectNoToken(second.expired, first.token);
    });

    it('refuses renew after expiry, naming nobody or the new holder', async () => {
      const name = uniqueName();
      const first = await take(name, 1, SHORT_TTL_MS);
      await untilFree(name);
      const lapsed = await p.renew({ name, token: first.token, ttlMs: LONG_TTL_MS });
      expect(lapsed).toEqual({ renewed: false, holder: null });
      expect(await p.inspect(name)).toBeNull();
      const second = await take(name, 2);
      const late: RenewResult = await p.renew({ name, token: first.token, ttlMs: LONG_TTL_MS });
      expectNoToken(late, second.token);
      expect(late.renewed).toBe(false);
      if (!late.renewed) expectHolder(late.holder, name, testOwner(2), second.lease.fencingToken);
      expect(await p.release({ name, token: first.token })).toBe(false);
      expectHolder(await p.inspect(name), name, testOwner(2), second.lease.fencingToken);
    });

    it('never exposes the token through inspect', async () => {
      const name = uniqueName();
      const { token } = await take(name, 1);
      expectNoToken(await p.inspect(name), token);
      expectNoToken(await p.renew({ name, token, ttlMs: LONG_TTL_MS }), token);
      expectNoToken(await p.renew({ name, token: newToken(), ttlMs: LONG_TTL_MS }), token);
    });

    it('handles odd names without collisions', async () => {
      const base = `conf-${runId}-odd`;
      const names = [
        `${base} with spaces`,
        `${base}/slash/../dots`,
        `${base}/..`,
        `${base}-ünïcødé-名前-🔒`,
        `${base}{braces}`,
        `${base}}:fence`,
        `${base}:fence`,
        `{${base}}`,
        `${base}`,
        `${base}-${'x'.repeat(200 - base.length - 1)}`,
      ];
      expect(names[names.length - 1]).toHaveLength(200);
      const leases = [];
      for (const [i, name] of names.entries()) leases.push(await take(name, i));
      for (const [i, name] of names.entries()) {
        expectHolder(await p.inspect(name), name, testOwner(i), leases[i].lease.fencingToken);
      }
      for (const [i, name] of names.entries()) expect(await p.release({ name, token: leases[i].token })).toBe(true);
      for (const name of names) expect(await p.inspect(name)).toBeNull();
    });

    it('notifies watchers on release only, and unsubscribe stops it (if notify)', async () => {
      const watch = p.watch?.bind(p);
      if (!p.capabilities.notify || !watch) return; // store without notifications: nothing to check
      const name = uniqueName('watch');
      let seenA = 0;
      let seenB = 0;
      const stopA = await watch(name, () => seenA++);
      const stopB = await watch(name, () => seenB++);
      try {
        const { token } = await take(name, 1);
        expect(await p.release({ name, token: newToken() })).toBe(false);
        expect(await p.release({ name, token })).toBe(true);
        await waitUntil(() => seenA >= 1 && seenB >= 1, 5_000, 'release notification');
        // Notifications of one name arrive in order: had the refused release published, it would be counted already.
        expect(seenA).toBe(1);
        await stopA();
        const again = await take(name, 2);
        expect(await p.release({ name, token: again.token })).toBe(true);
        await waitUntil(() => seenB >= 2, 5_000, 'second release notification');
        expect(seenA).toBe(1);
      } finally {
        await stopB();
      }
    });

    it('renews many leases at once, failing only the wrong slot (if renewMany)', async () => {
      const renewMany = p.renewMany?.bind(p);
      if (!renewMany) return; // optional method
      const names = [uniqueName('many'), uniqueName('many'), uniqueName('many')];
      const held = [];
      for (const [i, name] of names.entries()) held.push(await take(name, i, 5_000));
      const results = await renewMany([
        { name: names[0], token: held[0].token, ttlMs: 20_000 },
        { name: names[1], token: newToken(), ttlMs: 20_000 },
        { name: names[2], token: held[2].token, ttlMs: 20_000 },
        { name: uniqueName('never-held'), token: newToken(), ttlMs: 20_000 },
      ]);
      expect(results).toHaveLength(4);
      for (const slot of [0, 2]) {
        const r = results[slot];
        expect(r).not.toBeInstanceOf(Error);
        expect((r as RenewResult).renewed).toBe(true);
        if (!(r instanceof Error) && r.renewed) {
          expect(r.expiresAt.getTime()).toBeGreaterThanOrEqual(held[slot].lease.expiresAt.getTime() + 14_000);
        }
        expectNoToken(r, held[slot].token);
      }
      const refused = results[1] as RenewResult;
      expect(refused.renewed).toBe(false);
      if (!refused.renewed) expectHolder(refused.holder, names[1], testOwner(1), held[1].lease.fencingToken);
      expectNoToken(refused, held[1].token);
      expect(results[3]).toEqual({ renewed: false, holder: null });
      expect(await renewMany([])).toEqual([]);
    });

    it('keeps the fence increasing across a store restart (if restart)', async () => {
      if (!fixture.restart) return; // the fixture cannot restart its store
      const name = uniqueName('restart');
      const first = await take(name, 1, 1_000);
      await fixture.restart();
      const second = await waitForAcquire(name, 2);
      expect(fenceAfter(second.lease.fencingToken, first.lease.fencingToken)).toBe(true);
    });

    /** Acquires once the restarted store answers and the old lease is gone (lost with the data, or expired). */
    async function waitForAcquire(name: string, n: number) {
      const token = newToken();
      let lease: LockInfo | undefined;
      await waitUntil(
        async () => {
          try {
            const r = await p.acquire({ name, token, ttlMs: LONG_TTL_MS, owner: testOwner(n) });
            if (r.acquired) lease = r.lease;
          } catch {
            // the store may still be coming back
          }
          return lease !== undefined;
        },
        10_000,
        `${name} to be acquirable after restart`,
      );
      return { token, lease: lease as LockInfo };
    }

    describeOperatorConformance(() => p);
  });
}
