/**
 * 6. What `keepAlive: 'thread'` costs a process: one holder process per mode
 * (bench/fixtures/threadCost.ts) takes one lock (ttl 1000 ms) and keeps it; samples
 * are the time from the lock being held until the keep-alive thread renews it, the
 * growth of the process's resident memory from before the lock to after a few
 * renewals (beside the same process in loop mode), and the Redis connections the
 * process holds open (`connected_clients` before and after, as this server counts them).
 */
import type { ChildProcess } from 'node:child_process';
import type { BenchContext, Scenario } from '../index';
import { fixtureMessage } from '../fixtureMessage';
import { fmt, fmtSummary, type Row, summarize } from '../stats';

type Mode = 'loop' | 'thread';

interface Sample {
  startMs: number;
  rssGrowthMb: number;
  connections: number;
}

async function once(ctx: BenchContext, mode: Mode, name: string): Promise<Sample> {
  const child: ChildProcess = ctx.fixture('threadCost.ts', [mode, ctx.redisUrl], ['--expose-gc']);
  try {
    await fixtureMessage<{ ready: true }>(child, 'ready', 30_000);
    const before = Number((await ctx.info('clients')).connected_clients);
    child.send({ lock: name });
    const r = await fixtureMessage<{ startMs: number; rssBefore: number; rssAfter: number }>(child, 'startMs', 30_000);
    const after = Number((await ctx.info('clients')).connected_clients);
    // The process's own connection (1) plus what the lock added.
    return { startMs: r.startMs, rssGrowthMb: (r.rssAfter - r.rssBefore) / 2 ** 20, connections: 1 + after - before };
  } finally {
    child.send({ exit: true });
    if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
  }
}

const scenario: Scenario = {
  id: 'keepalive',
  title: "6. keepAlive 'thread' cost (one holder process per mode, ttl 1000 ms)",
  async run(ctx: BenchContext): Promise<Row[]> {
    const rounds = ctx.quick ? 2 : 5;
    const samples: Record<Mode, Sample[]> = { loop: [], thread: [] };
    for (let round = 0; round < rounds; round++) {
      for (const mode of ['loop', 'thread'] as const) samples[mode].push(await once(ctx, mode, `keepalive:${mode}:${round}`));
      ctx.progress(`  keepalive round ${round + 1}/${rounds}`);
    }
    const title = '6 keepAlive cost';
    const label = (mode: Mode) => (mode === 'thread' ? "ours: keepAlive 'thread'" : "ours: keepAlive 'loop'");
    const rows: Row[] = [];
    const start = summarize(samples.thread.map((s) => s.startMs));
    rows.push({ scenario: title, contender: label('thread'), metric: 'lock held → thread renews it', value: fmtSummary(start, 'ms', 0), raw: start });
    for (const mode of ['loop', 'thread'] as const) {
      const rss = summarize(samples[mode].map((s) => s.rssGrowthMb));
      const connections = summarize(samples[mode].map((s) => s.connections));
      rows.push(
        { scenario: title, contender: label(mode), metric: 'RSS growth, first lock (MiB)', value: `p50 ${fmt(rss.p50)} MiB · max ${fmt(rss.max)} MiB`, raw: rss },
        { scenario: title, contender: label(mode), metric: 'Redis connections of the process', value: `${fmt(connections.p50, 0)}`, raw: connections },
      );
    }
    return rows;
  },
};

export default scenario;
