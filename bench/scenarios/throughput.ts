/**
 * 1. Throughput: sequential acquire + release on distinct names, one operation
 * in flight per contender, each contender on its own connection. After a
 * warm-up the contenders take turns in small batches (A B C D E, B C D E A, …),
 * so that the drift of a shared, noisy machine hits all alike; a contender's
 * rate is its operations divided by the time spent in its own batches, and
 * each ratio to the raw floor is the median over rounds of the ratio within a
 * round (a round gives every contender several batches).
 */
import { performance } from 'node:perf_hooks';
import type Redis from 'ioredis';
import type { BenchContext, Scenario } from '../index';
import { type Contender, type ContenderId, createContender } from '../contenders';
import { fmt, fmtRatio, median, ratio, type Row, target } from '../stats';

const CONTENDERS: ContenderId[] = ['singleton', 'persister', 'redis-semaphore', 'redlock', 'raw'];
const TTL_MS = 10_000;
/** Operations per turn: small, so the contenders interleave finely. */
const BATCH = 20;

let seq = 0;

interface Cost {
  /** Wall time, ms. */
  ms: number;
  /** This process's CPU time (user + system), µs. */
  clientCpuUs: number;
  /** CPU time of redis-server (user + system, INFO cpu) during the batch, µs: commands, scripts and network I/O. */
  serverUs: number;
}

/** redis-server's CPU time so far (user + system), µs. */
async function serverCpuUs(admin: Redis): Promise<number> {
  const info = await admin.info('cpu');
  const read = (field: string) => Number(new RegExp(`${field}:([\\d.]+)`).exec(info)?.[1] ?? Number.NaN);
  return (read('used_cpu_sys') + read('used_cpu_user')) * 1e6;
}

/** Runs one batch; returns what it cost. Redis' CPU time is read before and after, outside the timed part. */
async function batch(contender: Contender, admin: Redis, prefix: string): Promise<Cost> {
  const server0 = await serverCpuUs(admin);
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < BATCH; i++) {
    const held = await contender.acquire(`${prefix}:${seq++}`);
    if (!held) throw new Error(`${contender.id} could not acquire a free name: the benchmark is broken`);
    await held.release();
  }
  const ms = performance.now() - start;
  const { user, system } = process.cpuUsage(cpu);
  return { ms, clientCpuUs: user + system, serverUs: (await serverCpuUs(admin)) - server0 };
}

const scenario: Scenario = {
  id: 'throughput',
  title: '1. throughput (sequential acquire + release, distinct names)',
  async run(ctx: BenchContext): Promise<Row[]> {
    const rounds = ctx.quick ? 5 : 15;
    const turnsPerRound = ctx.quick ? 8 : 12;
    const warmupOps = ctx.quick ? 300 : 1000;
    const contenders = CONTENDERS.map((id) => createContender(id, ctx.redis(), { ttlMs: TTL_MS }));
    const admin = ctx.redis();
    const rates = new Map<ContenderId, number[]>(CONTENDERS.map((id) => [id, []]));
    const costs = new Map<ContenderId, { clientCpuUs: number; serverUs: number; ops: number }>(
      CONTENDERS.map((id) => [id, { clientCpuUs: 0, serverUs: 0, ops: 0 }]),
    );
    const ratios = new Map<ContenderId, number[]>(CONTENDERS.map((id) => [id, []]));
    try {
      for (const c of contenders) {
        for (let i = 0; i < warmupOps; i++) {
          const held = await c.acquire(`warm:${c.id}:${i}`);
          await held?.release();
        }
      }
      for (let round = 0; round < rounds; round++) {
        const ms = new Map<ContenderId, number>(CONTENDERS.map((id) => [id, 0]));
        for (let turn = 0; turn < turnsPerRound; turn++) {
          for (let k = 0; k < contenders.length; k++) {
            const c = contenders[(turn + k) % contenders.length];
            const cost = await batch(c, admin, `tp:${c.id}`);
            ms.set(c.id, (ms.get(c.id) as number) + cost.ms);
            const total = costs.get(c.id) as { clientCpuUs: number; serverUs: number; ops: number };
            total.clientCpuUs += cost.clientCpuUs;
            total.serverUs += cost.serverUs;
            total.ops += BATCH;
          }
        }
        const inRound = (id: ContenderId) => (turnsPerRound * BATCH * 1000) / (ms.get(id) as number);
        for (const id of CONTENDERS) {
          rates.get(id)?.push(inRound(id));
          ratios.get(id)?.push(ratio(inRound(id), inRound('raw')));
        }
      }
    } finally {
      await Promise.all(contenders.map((c) => c.close()));
      admin.disconnect();
    }
    const rate = (id: ContenderId) => median(rates.get(id) as number[]);
    const toFloor = (id: ContenderId) => median(ratios.get(id) as number[]);
    const title = '1 throughput';
    const rows: Row[] = [];
    for (const id of CONTENDERS) {
      const label = contenders.find((c) => c.id === id)?.label ?? id;
      const cost = costs.get(id) as { clientCpuUs: number; serverUs: number; ops: number };
      rows.push({
        scenario: title,
        contender: label,
        metric: 'acquire+release ops/s (ratio to floor)',
        value: fmt(rate(id)),
        raw: { opsPerSecond: rates.get(id), ratioToFloor: ratios.get(id), ...cost },
        ratio: fmtRatio(toFloor(id)),
        target: id === 'singleton' ? target(toFloor(id), '>=', 0.9, '≥ 0.90× floor') : undefined,
      });
    }
    for (const id of CONTENDERS) {
      const cost = costs.get(id) as { clientCpuUs: number; serverUs: number; ops: number };
      rows.push({
        scenario: title,
        contender: contenders.find((c) => c.id === id)?.label ?? id,
        metric: 'CPU µs per op: this process / redis-server',
        value: `${fmt(cost.clientCpuUs / cost.ops)} / ${fmt(cost.serverUs / cost.ops)}`,
      });
    }
    for (const peer of ['redis-semaphore', 'redlock'] as const) {
      const r = toFloor('singleton') / toFloor(peer);
      rows.push({
        scenario: title,
        contender: 'ours: Singleton',
        metric: `ratio to ${peer}`,
        value: '',
        raw: r,
        ratio: fmtRatio(r),
        target: target(r, '>=', 1.0, `≥ 1.00× ${peer}`),
      });
    }
    return rows;
  },
};

export default scenario;
