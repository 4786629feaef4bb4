/**
 * 2. Contention: 8 clients (each its own connection, as 8 processes would have)
 * loop on ONE name for a fixed time: wait for the lock with the contender's own
 * mechanism at its defaults, hold it for a 1 ms critical section, release,
 * start over. Measures acquisitions/s, fairness (fewest / most acquisitions of
 * one client) and checks through a shared in-process counter that no two
 * clients ever held the lock at once. Contenders alternate by slice. The floor: clients that
 * send `SET NX` again as soon as the last try answered (the lock is taken the moment it is free).
 *
 * The critical section is `setTimeout(1)`, as an application's would be, and the table shows
 * how long it actually held the lock per contender (`critical section held`, p50): the same
 * timer lasts less in a process that never idles (the floor's spinning clients: libuv's loop
 * clock is already stale when the timer is set, so it fires early; 0.81 ms measured) than in
 * one that idles between events and wakes up for it (1.4 ms measured for a contender whose
 * waiters sleep until they are told). That difference is part of each contender's rate.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchContext, Scenario } from '../index';
import { type Contender, type ContenderId, createContender, LABELS } from '../contenders';
import { fmt, fmtRatio, median, type Row, target } from '../stats';

const CONTENDERS: ContenderId[] = ['singleton', 'redis-semaphore', 'redlock', 'raw'];
const CLIENTS = 8;
const CRITICAL_MS = 1;
const TTL_MS = 10_000;

interface SliceResult {
  acquisitions: number;
  perClient: number[];
  seconds: number;
  overlaps: number;
  /** How long each critical section held the lock, ms. */
  heldMs: number[];
}



async function slice(clients: Contender[], name: string, ms: number): Promise<SliceResult> {
  const controller = new AbortController();
  const perClient = clients.map(() => 0);
  let inside = 0;
  let overlaps = 0;
  const heldMs: number[] = [];
  const start = performance.now();
  const deadline = start + ms;
  const timer = setTimeout(() => controller.abort(new Error('slice over')), ms);
  await Promise.all(
    clients.map(async (client, i) => {
      while (!controller.signal.aborted) {
        let held;
        try {
          held = await client.waitFor(name, { signal: controller.signal });
        } catch (error) {
          if (controller.signal.aborted) return;
          throw error;
        }
        if (performance.now() >= deadline) {
          await held.release();
          return;
        }
        inside += 1;
        if (inside > 1) overlaps += 1;
        const entered = performance.now();
        await sleep(CRITICAL_MS);
        heldMs.push(performance.now() - entered);
        inside -= 1;
        perClient[i] += 1;
        await held.release();
      }
    }),
  );
  clearTimeout(timer);
  return { acquisitions: perClient.reduce((a, b) => a + b, 0), perClient, seconds: ms / 1000, overlaps, heldMs };
}

const scenario: Scenario = {
  id: 'contention',
  title: `2. contention (${CLIENTS} clients, one name, ${CRITICAL_MS} ms critical section)`,
  async run(ctx: BenchContext): Promise<Row[]> {
    const rounds = ctx.quick ? 2 : 3;
    const sliceMs = ctx.quick ? 1500 : 3000;
    const groups = new Map<ContenderId, Contender[]>(
      CONTENDERS.map((id) => [id, Array.from({ length: CLIENTS }, () => createContender(id, ctx.redis(), { ttlMs: TTL_MS }))]),
    );
    const results = new Map<ContenderId, SliceResult[]>(CONTENDERS.map((id) => [id, []]));
    try {
      for (const id of CONTENDERS) await slice(groups.get(id) as Contender[], `warm:${id}`, 300);
      for (let round = 0; round < rounds; round++) {
        for (let k = 0; k < CONTENDERS.length; k++) {
          const id = CONTENDERS[(round + k) % CONTENDERS.length];
          results.get(id)?.push(await slice(groups.get(id) as Contender[], `ct:${id}:${round}`, sliceMs));
        }
      }
    } finally {
      await Promise.all([...groups.values()].flat().map((c) => c.close()));
    }
    const rows: Row[] = [];
    const title = '2 contention';
    for (const id of CONTENDERS) {
      const rs = results.get(id) as SliceResult[];
      const rate = median(rs.map((r) => r.acquisitions / r.seconds));
      const fairness = median(rs.map((r) => Math.min(...r.perClient) / Math.max(...r.perClient)));
      const overlaps = rs.reduce((a, r) => a + r.overlaps, 0);
      const lost = (groups.get(id) as Contender[]).reduce((a, c) => a + c.lost, 0);
      const shares = rs.map((r) => r.perClient.join('/'));
      const held = median(rs.flatMap((r) => r.heldMs));
      rows.push(
        { scenario: title, contender: LABELS[id], metric: 'acquisitions/s', value: fmt(rate), raw: rs.map((r) => r.acquisitions / r.seconds) },
        { scenario: title, contender: LABELS[id], metric: 'fairness (min/max share)', value: fmt(fairness, 2), raw: shares },
        { scenario: title, contender: LABELS[id], metric: 'critical section held (p50 ms)', value: fmt(held, 2), raw: held },
        {
          scenario: title,
          contender: LABELS[id],
          metric: 'overlapping holds / lost',
          value: `${overlaps} / ${lost}`,
          raw: { overlaps, lost },
          target: target(overlaps + lost, '<=', 0, 'none'),
        },
      );
    }
    const rate = (id: ContenderId) => median((results.get(id) as SliceResult[]).map((r) => r.acquisitions / r.seconds));
    const toFloor = rate('singleton') / rate('raw');
    rows.push({
      scenario: title,
      contender: LABELS.singleton,
      metric: 'acquisitions/s, ratio to the floor (SET NX retried at once)',
      value: '',
      raw: toFloor,
      ratio: fmtRatio(toFloor),
      target: target(toFloor, '>=', 0.9, '≥ 0.90× floor'),
    });
    return rows;
  },
};

export default scenario;
