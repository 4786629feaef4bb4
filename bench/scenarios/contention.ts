/**
 * 2. Contention: 8 clients (each its own connection, as 8 processes would have)
 * loop on ONE name for a fixed time: wait for the lock with the contender's own
 * mechanism at its defaults, hold it for a 1 ms critical section, release,
 * start over. Measures acquisitions/s, fairness (fewest / most acquisitions of
 * one client) and checks through a shared in-process counter that no two
 * clients ever held the lock at once. Contenders alternate by slice. The floor: clients that
 * send `SET NX` again as soon as the last try answered (the lock is taken the moment it is free).
 *
 * The critical section runs two ways, each contender both ways in every round:
 * - **1 ms by the clock** (the target row): the section yields to the event loop
 *   (`setImmediate`) until `performance.now()` says 1 ms has passed, so it lasts 1 ms in every
 *   contender's process, whatever else that process is doing, and never blocks the other
 *   clients' I/O. The rate then measures the lock: the time each hand-over adds to the section.
 * - **`setTimeout(1)`**, as an application's timer would be: libuv's loop clock has a
 *   resolution of 1 ms, so the same timer holds the lock for 0.7 ms in a process that never
 *   idles (the floor's spinning clients: the clock is already stale when the timer is set, so
 *   it fires early) and for up to 2 ms in one that idles and is woken in the middle of the
 *   section (an event before the clock's next millisecond re-arms a whole millisecond): 1.4 ms
 *   measured for a contender whose waiters sleep until they are told. That is the timer's cost,
 *   not the lock's, and in this one-process benchmark it comes from the other clients' events,
 *   which separate processes would not see. Shown beside the clock row, without a target.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchContext, Scenario } from '../index';
import { type Contender, type ContenderId, createContender, LABELS } from '../contenders';
import { fmt, fmtRatio, median, type Row, target } from '../stats';

const CONTENDERS: ContenderId[] = ['singleton', 'redis-semaphore', 'redlock', 'raw'];
const CLIENTS = 8;
const CRITICAL_MS = 1;
const TTL_MS = 10_000;

/** How a critical section lasts: 1 ms by the clock (yielding to the loop), or a 1 ms timer. */
type Section = 'clock' | 'timer';
const SECTIONS: readonly Section[] = ['clock', 'timer'];
const SECTION_LABEL: Record<Section, string> = { clock: '1 ms by the clock', timer: 'setTimeout(1)' };

/** Holds the critical section: `CRITICAL_MS` by the clock, letting every other client's I/O run meanwhile. */
async function holdByClock(entered: number): Promise<void> {
  while (performance.now() - entered < CRITICAL_MS) await new Promise<void>((resolve) => setImmediate(resolve));
}

interface SliceResult {
  acquisitions: number;
  perClient: number[];
  seconds: number;
  overlaps: number;
  /** How long each critical section held the lock, ms. */
  heldMs: number[];
}



async function slice(clients: Contender[], name: string, ms: number, section: Section): Promise<SliceResult> {
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
        if (section === 'clock') await holdByClock(entered);
        else await sleep(CRITICAL_MS);
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
    const results = new Map<string, SliceResult[]>();
    const resultsOf = (id: ContenderId, section: Section): SliceResult[] => {
      const key = `${id} ${section}`;
      if (!results.has(key)) results.set(key, []);
      return results.get(key) as SliceResult[];
    };
    try {
      for (const id of CONTENDERS) await slice(groups.get(id) as Contender[], `warm:${id}`, 300, 'clock');
      for (let round = 0; round < rounds; round++) {
        for (const section of SECTIONS) {
          for (let k = 0; k < CONTENDERS.length; k++) {
            const id = CONTENDERS[(round + k) % CONTENDERS.length];
            resultsOf(id, section).push(await slice(groups.get(id) as Contender[], `ct:${id}:${section}:${round}`, sliceMs, section));
          }
        }
      }
    } finally {
      await Promise.all([...groups.values()].flat().map((c) => c.close()));
    }
    const rows: Row[] = [];
    const title = '2 contention';
    const rate = (rs: SliceResult[]) => median(rs.map((r) => r.acquisitions / r.seconds));
    for (const id of CONTENDERS) {
      const all = SECTIONS.flatMap((section) => resultsOf(id, section));
      const overlaps = all.reduce((a, r) => a + r.overlaps, 0);
      const lost = (groups.get(id) as Contender[]).reduce((a, c) => a + c.lost, 0);
      for (const section of SECTIONS) {
        const rs = resultsOf(id, section);
        const label = SECTION_LABEL[section];
        const held = rs.flatMap((r) => r.heldMs);
        const heldMean = held.reduce((a, b) => a + b, 0) / held.length;
        // Each acquisition's share of the slice, less the section itself: what the lock costs.
        const lockMs = median(rs.map((r) => (r.seconds * 1000) / r.acquisitions)) - heldMean;
        rows.push(
          { scenario: title, contender: LABELS[id], metric: `acquisitions/s, section ${label}`, value: fmt(rate(rs)), raw: rs.map((r) => r.acquisitions / r.seconds) },
          {
            scenario: title,
            contender: LABELS[id],
            metric: `section ${label}: held mean / p50, lock's own ms per acquisition`,
            value: `${fmt(heldMean, 2)} / ${fmt(median(held), 2)}, ${fmt(lockMs, 2)}`,
            raw: { heldMean, heldP50: median(held), lockMs },
          },
        );
      }
      const fairness = median(all.map((r) => Math.min(...r.perClient) / Math.max(...r.perClient)));
      rows.push(
        { scenario: title, contender: LABELS[id], metric: 'fairness (min/max share)', value: fmt(fairness, 2), raw: all.map((r) => r.perClient.join('/')) },
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
    for (const section of SECTIONS) {
      const toFloor = rate(resultsOf('singleton', section)) / rate(resultsOf('raw', section));
      rows.push({
        scenario: title,
        contender: LABELS.singleton,
        metric: `ratio to the floor (SET NX retried at once), section ${SECTION_LABEL[section]}`,
        value: '',
        raw: toFloor,
        ratio: fmtRatio(toFloor),
        target: section === 'clock' ? target(toFloor, '>=', 0.9, '≥ 0.90× floor') : undefined,
      });
    }
    return rows;
  },
};

export default scenario;
