/**
 * The operator's part of the conformance suite (DESIGN.md §5): `list()` and
 * `forceRelease()` for every persister that declares `capabilities.list`.
 * Called by `describePersister` (conformance.ts), so it runs against every store.
 */
import { randomBytes } from 'node:crypto';
import { FORCED_RELEASE_OWNER } from '../../lib/persisters/adminSupport';
import type { LockInfo, Persister } from '../../lib/persisters/Persister';
import { expectNoToken, fenceAfter, newToken, testOwner, waitUntil } from './conformance';

const LONG_TTL_MS = 30_000;

/** Defines the `list()` / `forceRelease()` tests; `persister()` is read when each test runs. */
export function describeOperatorConformance(persister: () => Persister): void {
  describe('list() and forceRelease() (if capabilities.list)', () => {
    const runId = randomBytes(4).toString('hex');
    let seq = 0;
    const prefix = () => `ops-${runId}-${++seq}-`;

    /** The persister, when it offers the operator's methods; otherwise the test checks only that it says so. */
    function admin(): Required<Pick<Persister, 'list' | 'forceRelease'>> & Persister {
      return persister() as Required<Pick<Persister, 'list' | 'forceRelease'>> & Persister;
    }
    const offers = () => persister().capabilities.list === true;

    async function take(name: string, n: number, ttlMs = LONG_TTL_MS) {
      const token = newToken();
      const result = await persister().acquire({ name, token, ttlMs, owner: testOwner(n) });
      if (!result.acquired) throw new Error(`expected to acquire ${name}`);
      return { token, lease: result.lease, expired: result.expired };
    }

    it('declares list as a boolean, and offers both methods when it is true', () => {
      const { list } = persister().capabilities;
      expect(list === undefined || typeof list === 'boolean').toBe(true);
      if (!list) return; // a store without the operator's methods (it says so)
      expect(typeof persister().list).toBe('function');
      expect(typeof persister().forceRelease).toBe('function');
    });

    it('lists exactly the live leases under a prefix, sorted, with their holders and no token', async () => {
      if (!offers()) return;
      const p = admin();
      const base = prefix();
      expect(await p.list({ prefix: base })).toEqual([]);
      const b = await take(`${base}b`, 2);
      const a = await take(`${base}a*[x]?`, 1); // glob characters must not widen the match
      const gone = await take(`${base}c-released`, 3);
      await p.release({ name: `${base}c-released`, token: gone.token });
      const short = await take(`${base}d-expires`, 4, 60);
      await take(`${prefix()}other`, 5); // another prefix
      await waitUntil(async () => (await p.inspect(`${base}d-expires`)) === null, 5_000, 'the short lease to expire');
      const listed = await p.list({ prefix: base });
      expect(listed.map((l) => l.name)).toEqual([`${base}a*[x]?`, `${base}b`]);
      expect(listed[0]).toMatchObject({ owner: testOwner(1).owner, hostname: testOwner(1).hostname, pid: testOwner(1).pid });
      expect(BigInt(listed[0].fencingToken)).toBe(BigInt(a.lease.fencingToken));
      expect(BigInt(listed[1].fencingToken)).toBe(BigInt(b.lease.fencingToken));
      expect(listed[1].expiresAt.getTime()).toBeGreaterThan(Date.now());
      for (const { token } of [a, b, short]) expectNoToken(listed, token);
      expect(await p.list({ prefix: `${base}a*` })).toHaveLength(1);
      const all = await p.list();
      expect(all.map((l) => l.name)).toEqual(expect.arrayContaining([`${base}a*[x]?`, `${base}b`]));
      expect(all.map((l) => l.name)).toEqual([...all.map((l) => l.name)].sort());
    });

    it('lists a name that starts with "}" under its own prefix', async () => {
      if (!offers()) return;
      const name = `}${prefix()}odd`;
      await take(name, 1);
      expect((await admin().list({ prefix: name.slice(0, 5) })).map((l) => l.name)).toContain(name);
    });

    it('force-releases whoever holds it: the evicted holder is told taken-over, the fence still increases', async () => {
      if (!offers()) return;
      const p = admin();
      const name = `${prefix()}wedged`;
      const first = await take(name, 1);
      const woken: number[] = [];
      const unwatch = p.capabilities.notify && p.watch ? await p.watch(name, () => woken.push(Date.now())) : undefined;
      const evicted = (await p.forceRelease(name)) as LockInfo;
      expect(evicted).toMatchObject({ name, owner: testOwner(1).owner, hostname: testOwner(1).hostname, pid: testOwner(1).pid });
      expect(BigInt(evicted.fencingToken)).toBe(BigInt(first.lease.fencingToken));
      expectNoToken(evicted, first.token);
      expect(await p.inspect(name)).toBeNull();
      expect(await p.list({ prefix: name })).toEqual([]);
      if (unwatch) {
        await waitUntil(() => woken.length > 0, 5_000, 'watchers to hear of the forced release');
        await unwatch();
      }

      // The evicted holder's renewal: refused, naming the eviction (so it is lost as taken-over).
      const told = await p.renew({ name, token: first.token, ttlMs: LONG_TTL_MS });
      expect(told.renewed).toBe(false);
      if (!told.renewed) {
        expect(told.holder).not.toBeNull();
        expect(told.holder?.owner).toBe(FORCED_RELEASE_OWNER);
        expect(told.holder?.name).toBe(name);
      }
      expectNoToken(told, first.token);
      expect(await p.release({ name, token: first.token })).toBe(false);

      // The next holder: a higher fence, and no `expired` (the lease was released, by force).
      const second = await take(name, 2);
      expect(fenceAfter(second.lease.fencingToken, first.lease.fencingToken)).toBe(true);
      expect(second.expired).toBeUndefined();
      const late = await p.renew({ name, token: first.token, ttlMs: LONG_TTL_MS });
      expect(late.renewed).toBe(false);
      if (!late.renewed) expect(late.holder?.owner).toBe(testOwner(2).owner);
      // Still told after that holder released, whoever held it since.
      expect(await p.release({ name, token: second.token })).toBe(true);
      const later = await p.renew({ name, token: first.token, ttlMs: LONG_TTL_MS });
      expect(later.renewed === false && later.holder?.owner).toBe(FORCED_RELEASE_OWNER);
    });

    it('answers null for a free or expired lock, and leaves a lease that merely expired reported as expired', async () => {
      if (!offers()) return;
      const p = admin();
      const name = `${prefix()}free`;
      expect(await p.forceRelease(name)).toBeNull();
      const lapsed = await take(name, 1, 60);
      await waitUntil(async () => (await p.inspect(name)) === null, 5_000, 'the lease to expire');
      expect(await p.forceRelease(name)).toBeNull();
      expect(await p.renew({ name, token: lapsed.token, ttlMs: LONG_TTL_MS })).toEqual({ renewed: false, holder: null });
    });

    it('names the eviction in its slot of renewMany (if renewMany)', async () => {
      if (!offers() || !persister().renewMany) return;
      const p = admin();
      const base = prefix();
      const kept = await take(`${base}kept`, 1);
      const gone = await take(`${base}gone`, 2);
      await p.forceRelease(`${base}gone`);
      const results = await p.renewMany!([
        { name: `${base}kept`, token: kept.token, ttlMs: LONG_TTL_MS },
        { name: `${base}gone`, token: gone.token, ttlMs: LONG_TTL_MS },
      ]);
      expect(results[0]).toMatchObject({ renewed: true });
      expect(results[1]).toMatchObject({ renewed: false, holder: { owner: FORCED_RELEASE_OWNER } });
    });

    it('refuses bad arguments with a TypeError naming them', async () => {
      if (!offers()) return;
      const p = admin();
      await expect(async () => p.list({ prefix: 7 as unknown as string })).rejects.toThrow(/options\.prefix/);
      await expect(async () => p.list('x' as never)).rejects.toThrow(TypeError);
      await expect(async () => p.forceRelease('' as string)).rejects.toThrow(TypeError);
      await expect(async () => p.forceRelease(undefined as unknown as string)).rejects.toThrow(/name/);
    });
  });
}
