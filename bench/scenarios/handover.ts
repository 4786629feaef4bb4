/**
 * 3. Hand-over: instance A holds a name, instance B (its own connection, as a
 * separate process would have) waits for it with the contender's own waiting
 * mechanism at its defaults. Once B is waiting, after the same random pause for
 * every contender, A releases; the time from A calling release() until B holds
 * the lock is one sample. Contenders alternate in rounds.
 *
 * The raw floor row is what no waiting mechanism can beat on this machine: A's
 * compare-and-delete and B's SET NX sent back to back, as if B knew of the
 * release the instant A's reply came back (two round trips, the first after
 * the same idle pause, which on a busy machine costs a wake-up).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchContext, Scenario } from '../index';
import { type Contender, type ContenderId, createContender, LABELS } from '../contenders';
import { fmtRatio, fmtSummary, ratio, type Row, summarize, target } from '../stats';

const CONTENDERS: ContenderId[] = ['singleton', 'redis-semaphore', 'redlock', 'raw'];
const TTL_MS = 10_000;
/** How long A keeps the lock once B waits: uniform in this range, the same draw for every contender of a round. */
const PAUSE_MS: [number, number] = [5, 30];

async function once(holder: Contender, waiter: Contender, name: string, pauseMs: number): Promise<number> {
  const held = await holder.acquire(name);
  if (!held) throw new Error(`${holder.id}: a fresh name was taken: the benchmark is broken`);
  if (holder.id === 'raw') {
    await sleep(pauseMs);
    const t0 = performance.now();
    await held.release();
    const next = await waiter.acquire(name);
    const t1 = performance.now();
    if (!next) throw new Error('raw floor: the name was not free after its release');
    await next.release();
    return t1 - t0;
  }
  let waiting!: () => void;
  const isWaiting = new Promise<void>((resolve) => {
    waiting = resolve;
  });
  let t0 = 0;
  const acquired = waiter.waitFor(name, { onWaiting: () => waiting() }).then((h) => ({ h, t1: performance.now() }));
  await isWaiting;
  await sleep(pauseMs);
  t0 = performance.now();
  await held.release();
  const { h, t1 } = await acquired;
  await h.release();
  waiter.forget?.(name);
  return t1 - t0;
}

const scenario: Scenario = {
  id: 'handover',
  title: '3. hand-over (release → waiter holds it)',
  async run(ctx: BenchContext): Promise<Row[]> {
    const rounds = ctx.quick ? 5 : 12;
    const perRound = ctx.quick ? 4 : 10;
    const pairs = new Map<ContenderId, [Contender, Contender]>(
      CONTENDERS.map((id) => [id, [createContender(id, ctx.redis(), { ttlMs: TTL_MS }), createContender(id, ctx.redis(), { ttlMs: TTL_MS })]]),
    );
    const samples = new Map<ContenderId, number[]>(CONTENDERS.map((id) => [id, []]));
    let seq = 0;
    try {
      for (const id of CONTENDERS) {
        const [a, b] = pairs.get(id) as [Contender, Contender];
        for (let i = 0; i < 2; i++) await once(a, b, `warm:${id}:${seq++}`, PAUSE_MS[0]);
      }
      for (let round = 0; round < rounds; round++) {
        const pauses = Array.from({ length: perRound }, () => PAUSE_MS[0] + Math.random() * (PAUSE_MS[1] - PAUSE_MS[0]));
        for (let k = 0; k < CONTENDERS.length; k++) {
          const id = CONTENDERS[(round + k) % CONTENDERS.length];
          const [a, b] = pairs.get(id) as [Contender, Contender];
          for (const pause of pauses) {
            // Alternate roles so both connections hold and wait.
            const [holder, waiter] = seq % 2 === 0 ? [a, b] : [b, a];
            samples.get(id)?.push(await once(holder, waiter, `ho:${id}:${seq++}`, pause));
          }
        }
      }
    } finally {
      await Promise.all([...pairs.values()].flat().map((c) => c.close()));
    }
    const title = '3 hand-over';
    const rows: Row[] = [];
    const floor = summarize(samples.get('raw') as number[]);
    for (const id of CONTENDERS) {
      const s = summarize(samples.get(id) as number[]);
      rows.push({
        scenario: title,
        contender: id === 'raw' ? 'raw floor (release, then SET NX at once)' : LABELS[id],
        metric: 'release → waiter holds (p50 ratio to floor)',
        value: fmtSummary(s),
        raw: { ...s, samples: samples.get(id) },
        ratio: fmtRatio(ratio(s.p50, floor.p50)),
        target:
          id === 'singleton'
            ? { text: 'p50 ≤ 1 ms, p95 ≤ 3 ms', pass: target(s.p50, '<=', 1, '').pass && target(s.p95, '<=', 3, '').pass }
            : undefined,
      });
    }
    return rows;
  },
};

export default scenario;
