/**
 * 6. PostgreSQL beside Redis: our `Singleton` on each store, measured the same way in the
 * same run, turns interleaved (Redis, PostgreSQL, PostgreSQL, Redis, …) so that the
 * machine's drift hits both alike:
 *
 * - throughput: sequential `lock()` + `release()` on distinct names (a new Singleton per
 *   name), batches of 20; ops/s, and the PostgreSQL/Redis ratio within each round;
 * - hand-over: A holds, B waits (`waitForLock`, after its first conflict and the same
 *   5–30 ms pause), A releases: `release()` called → B holds (Redis pub/sub vs NOTIFY);
 * - crash takeover: a holder process (bench/fixtures/storeHolder.ts) is SIGKILLed after
 *   a random delay spanning the renewal cycle: kill → the waiter holds (ttl 1000 ms).
 *
 * Skipped, with the reason printed, when there is no PostgreSQL (see bench/postgres.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Singleton } from '../../lib/Singleton';
import { fixtureMessage } from '../fixtureMessage';
import type { BenchContext, Scenario } from '../index';
import { fmt, fmtRatio, fmtSummary, median, ratio, type Row, summarize } from '../stats';
import { type BenchStore, openStore, SILENT, storeLibrary, type StoreKind } from '../storeLibrary';

const STORES: StoreKind[] = ['redis', 'postgres'];
const LABELS: Record<StoreKind, string> = { redis: 'ours on Redis', postgres: 'ours on PostgreSQL' };
const TITLE = '6 PostgreSQL vs Redis';
const BATCH = 20;
const TTL_MS = 10_000;
const CRASH_TTL_MS = 1_000;
const PAUSE_MS: [number, number] = [5, 30];

function singleton(store: BenchStore, name: string, ttlMs = TTL_MS): Singleton {
  const { Singleton } = storeLibrary();
  const s = new Singleton(name, store.persister, { ttlMs, handleSignals: false, handleErrors: false, logger: SILENT, onLost: 'emit' });
  s.on('error', () => undefined);
  s.on('lost', () => undefined);
  return s;
}

/** `BATCH` lock + release on fresh names; the wall time, ms. */
async function batch(store: BenchStore, prefix: string, seq: { n: number }): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < BATCH; i++) {
    const s = singleton(store, `${prefix}:${seq.n++}`);
    if (!(await s.lock())) throw new Error(`${store.kind}: a fresh name was taken: the benchmark is broken`);
    await s.release();
  }
  return performance.now() - start;
}

/** A holds, B waits, A releases after `pauseMs`: ms from A's `release()` until B holds. */
async function handOver(a: BenchStore, b: BenchStore, name: string, pauseMs: number): Promise<number> {
  const holder = singleton(a, name);
  if (!(await holder.lock())) throw new Error(`${a.kind}: a fresh name was taken: the benchmark is broken`);
  const waiter = singleton(b, name);
  const waiting = new Promise<void>((resolve) => waiter.once('conflict', () => resolve()));
  const held = waiter.waitForLock().then(() => performance.now());
  await waiting;
  await sleep(pauseMs);
  const t0 = performance.now();
  await holder.release();
  const t1 = await held;
  await waiter.release();
  return t1 - t0;
}

/** The holder process takes `name`; after `delayMs` it is SIGKILLed: ms from the kill until the waiter holds. */
async function crash(child: ChildProcess, store: BenchStore, name: string, delayMs: number): Promise<number> {
  child.send({ hold: name });
  await fixtureMessage<{ held: string }>(child, 'held', 15_000, 'storeHolder');
  const waiter = singleton(store, name, CRASH_TTL_MS);
  const waiting = new Promise<void>((resolve) => waiter.once('conflict', () => resolve()));
  const held = waiter.waitForLock().then(() => performance.now());
  await waiting;
  await sleep(delayMs);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  const tKill = performance.now();
  const t1 = await held;
  await waiter.release();
  await exited;
  return t1 - tKill;
}

const scenario: Scenario = {
  id: 'postgres',
  title: '6. PostgreSQL beside Redis (throughput, hand-over, crash takeover)',
  async run(ctx: BenchContext): Promise<Row[]> {
    if (!ctx.postgresUrl) {
      ctx.progress(`  PostgreSQL column skipped: ${ctx.postgresSkipped ?? 'no PostgreSQL'}`);
      return [{ scenario: TITLE, contender: LABELS.postgres, metric: 'skipped', value: ctx.postgresSkipped ?? 'no PostgreSQL' }];
    }
    const table = `bench_${randomBytes(4).toString('hex')}`;
    const urls: Record<StoreKind, string> = { redis: ctx.redisUrl, postgres: ctx.postgresUrl };
    const open = (kind: StoreKind) => openStore(kind, urls[kind], table);
    const pairs = new Map<StoreKind, [BenchStore, BenchStore]>(STORES.map((kind) => [kind, [open(kind), open(kind)]]));
    const rates = new Map<StoreKind, number[]>(STORES.map((k) => [k, []]));
    const ratios: number[] = [];
    const handovers = new Map<StoreKind, number[]>(STORES.map((k) => [k, []]));
    const crashes = new Map<StoreKind, number[]>(STORES.map((k) => [k, []]));
    const seq = { n: 0 };
    try {
      // Throughput.
      const rounds = ctx.quick ? 4 : 12;
      const turns = ctx.quick ? 6 : 10;
      for (const kind of STORES) for (let i = 0; i < 3; i++) await batch(pairs.get(kind)![0], `warm:${kind}`, seq);
      for (let round = 0; round < rounds; round++) {
        const ms = new Map<StoreKind, number>(STORES.map((k) => [k, 0]));
        for (let turn = 0; turn < turns; turn++) {
          for (let k = 0; k < STORES.length; k++) {
            const kind = STORES[(turn + k) % STORES.length];
            ms.set(kind, ms.get(kind)! + (await batch(pairs.get(kind)![0], `tp:${kind}`, seq)));
          }
        }
        const rate = (kind: StoreKind) => (turns * BATCH * 1000) / ms.get(kind)!;
        for (const kind of STORES) rates.get(kind)!.push(rate(kind));
        ratios.push(ratio(rate('postgres'), rate('redis')));
      }
      ctx.progress('  PostgreSQL: throughput done');

      // Hand-over.
      const hoRounds = ctx.quick ? 4 : 10;
      const perRound = ctx.quick ? 4 : 8;
      for (const kind of STORES) await handOver(...pairs.get(kind)!, `warm-ho:${kind}:${seq.n++}`, PAUSE_MS[0]);
      for (let round = 0; round < hoRounds; round++) {
        const pauses = Array.from({ length: perRound }, () => PAUSE_MS[0] + Math.random() * (PAUSE_MS[1] - PAUSE_MS[0]));
        for (let k = 0; k < STORES.length; k++) {
          const kind = STORES[(round + k) % STORES.length];
          const [a, b] = pairs.get(kind)!;
          for (const pause of pauses) {
            const [holder, waiter] = seq.n % 2 === 0 ? [a, b] : [b, a];
            handovers.get(kind)!.push(await handOver(holder, waiter, `ho:${kind}:${seq.n++}`, pause));
          }
        }
      }
      ctx.progress('  PostgreSQL: hand-over done');

      // Crash takeover.
      const crashRounds = ctx.quick ? 2 : 8;
      for (let round = 0; round < crashRounds; round++) {
        const holders = new Map<StoreKind, ChildProcess>(
          STORES.map((kind) => [kind, ctx.fixture('storeHolder.ts', [kind, urls[kind], String(CRASH_TTL_MS), table])]),
        );
        await Promise.all([...holders.values()].map((child) => fixtureMessage<{ ready: true }>(child, 'ready', 30_000, 'storeHolder')));
        const delay = Math.random() * CRASH_TTL_MS;
        for (let k = 0; k < STORES.length; k++) {
          const kind = STORES[(round + k) % STORES.length];
          crashes.get(kind)!.push(await crash(holders.get(kind)!, pairs.get(kind)![1], `crash:${kind}:${seq.n++}`, delay));
        }
        ctx.progress(`  PostgreSQL: crash round ${round + 1}/${crashRounds}`);
      }
    } finally {
      await Promise.all([...pairs.values()].flat().map((s) => s.close()));
    }

    const rows: Row[] = [];
    const throughputRatio = median(ratios);
    const handoverP50 = new Map(STORES.map((kind) => [kind, summarize(handovers.get(kind)!)]));
    const crashSummary = new Map(STORES.map((kind) => [kind, summarize(crashes.get(kind)!)]));
    for (const kind of STORES) {
      rows.push({
        scenario: TITLE,
        contender: LABELS[kind],
        metric: 'lock+release ops/s (PostgreSQL ÷ Redis)',
        value: fmt(median(rates.get(kind)!)),
        raw: { opsPerSecond: rates.get(kind), ratios: kind === 'postgres' ? ratios : undefined },
        ratio: kind === 'postgres' ? fmtRatio(throughputRatio) : undefined,
      });
    }
    for (const kind of STORES) {
      const s = handoverP50.get(kind)!;
      rows.push({
        scenario: TITLE,
        contender: LABELS[kind],
        metric: 'release → waiter holds (p50 ÷ Redis)',
        value: fmtSummary(s),
        raw: { ...s, samples: handovers.get(kind) },
        ratio: kind === 'postgres' ? fmtRatio(ratio(s.p50, handoverP50.get('redis')!.p50)) : undefined,
      });
    }
    for (const kind of STORES) {
      const s = crashSummary.get(kind)!;
      rows.push({
        scenario: TITLE,
        contender: LABELS[kind],
        metric: `kill -9 → waiter holds (ttl ${CRASH_TTL_MS})`,
        value: fmtSummary(s, 'ms', 0),
        raw: { ...s, samples: crashes.get(kind) },
      });
    }
    return rows;
  },
};

export default scenario;
