/**
 * 4. Crash takeover: a holder PROCESS (bench/fixtures/holder.ts) holds a name
 * with its contender's own renewal running, while a waiter in this process
 * waits for it with the contender's own mechanism; after a random delay (the
 * same draw for every contender of a round, spanning the renewal cycle) the
 * holder is killed with SIGKILL. Samples: time from the kill until the waiter
 * holds the lock, and how long after the lease's expiry in Redis that was (the
 * lease's remaining time is read with PTTL just before the kill). All
 * contenders use the same ttl. The holder processes of a round are started
 * before the round, so their start-up cost is outside the measurement. Ours runs
 * twice: renewing from the event loop (the default) and from the keep-alive thread
 * (`keepAlive: 'thread'`, whose holder is killed only once the thread renews it).
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type Redis from 'ioredis';
import type { BenchContext, Scenario } from '../index';
import { type Contender, type ContenderId, createContender, LABELS } from '../contenders';
import { fixtureMessage as message } from '../fixtureMessage';
import { fmtSummary, type Row, summarize, target } from '../stats';

const CONTENDERS: ContenderId[] = ['singleton', 'singleton-thread', 'redis-semaphore', 'redlock'];
const TTL_MS = 1000;
const TARGET_SLACK_MS = 50;

interface Sample {
  takeoverMs: number;
  afterExpiryMs: number;
  pttlMs: number;
}

async function once(admin: Redis, child: ChildProcess, waiter: Contender, name: string, delayMs: number): Promise<Sample> {
  child.send({ hold: name });
  await message<{ held: string }>(child, 'held', 15_000);
  let waiting!: () => void;
  const isWaiting = new Promise<void>((resolve) => {
    waiting = resolve;
  });
  const acquired = waiter.waitFor(name, { onWaiting: () => waiting() }).then((h) => ({ h, t1: performance.now() }));
  await isWaiting;
  await sleep(delayMs);
  const pttl = await admin.pttl(waiter.key(name));
  const tExpiry = performance.now() + pttl;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  const tKill = performance.now();
  if (pttl < 0) throw new Error(`${waiter.id}: the holder's lease was gone before the kill (PTTL ${pttl})`);
  const { h, t1 } = await acquired;
  await h.release();
  await exited;
  waiter.forget?.(name);
  return { takeoverMs: t1 - tKill, afterExpiryMs: t1 - tExpiry, pttlMs: pttl };
}

const scenario: Scenario = {
  id: 'crash',
  title: `4. crash takeover (holder process SIGKILLed, ttl ${TTL_MS} ms)`,
  async run(ctx: BenchContext): Promise<Row[]> {
    const rounds = ctx.quick ? 3 : 10;
    // The waiter of the thread-mode row waits as ours always does: the holder's mode is what is measured.
    const waiterOf = (id: ContenderId): ContenderId => (id === 'singleton-thread' ? 'singleton' : id);
    const waiters = new Map<ContenderId, Contender>(CONTENDERS.map((id) => [id, createContender(waiterOf(id), ctx.redis(), { ttlMs: TTL_MS })]));
    const samples = new Map<ContenderId, Sample[]>(CONTENDERS.map((id) => [id, []]));
    const admin = ctx.redis();
    let seq = 0;
    try {
      for (let round = 0; round < rounds; round++) {
        // Start this round's holders together, before anything is measured.
        const holders = new Map<ContenderId, ChildProcess>(
          CONTENDERS.map((id) => [id, ctx.fixture('holder.ts', [id, ctx.redisUrl, String(TTL_MS)])]),
        );
        await Promise.all([...holders.values()].map((child) => message<{ ready: true }>(child, 'ready', 30_000)));
        const delay = Math.random() * TTL_MS;
        for (let k = 0; k < CONTENDERS.length; k++) {
          const id = CONTENDERS[(round + k) % CONTENDERS.length];
          samples.get(id)?.push(await once(admin, holders.get(id) as ChildProcess, waiters.get(id) as Contender, `crash:${id}:${seq++}`, delay));
        }
        ctx.progress(`  crash round ${round + 1}/${rounds}`);
      }
    } finally {
      await Promise.all([...waiters.values()].map((c) => c.close()));
      admin.disconnect();
    }
    const title = '4 crash takeover';
    const rows: Row[] = [];
    for (const id of CONTENDERS) {
      const s = samples.get(id) as Sample[];
      const takeover = summarize(s.map((x) => x.takeoverMs));
      const late = summarize(s.map((x) => x.afterExpiryMs));
      rows.push(
        {
          scenario: title,
          contender: LABELS[id],
          metric: `kill → waiter holds (ttl ${TTL_MS})`,
          value: fmtSummary(takeover, 'ms', 0),
          raw: { ...takeover, samples: s },
          target: id === 'singleton' || id === 'singleton-thread' ? target(takeover.p50, '<=', TTL_MS + TARGET_SLACK_MS, `p50 ≤ ttl + ${TARGET_SLACK_MS} ms`) : undefined,
        },
        {
          scenario: title,
          contender: LABELS[id],
          metric: 'lease expiry → waiter holds',
          value: fmtSummary(late, 'ms', 0),
          raw: late,
        },
      );
    }
    return rows;
  },
};

export default scenario;
