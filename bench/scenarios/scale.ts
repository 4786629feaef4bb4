/**
 * 5. Scale: one process (bench/fixtures/scale.ts, run with --expose-gc) holds
 * 1 000, then 10 000 singletons on one RedisPersister with ttl 3 s (so a
 * renewal every second each). Over a measurement window: renewals per second
 * done by Redis, round trips per second the process made for them (they must
 * be batched: far fewer round trips than renewals), the process's CPU as a
 * share of one core, and heap per held singleton.
 */
import type { BenchContext, Scenario } from '../index';
import { fmt, type Row, target } from '../stats';

const TTL_MS = 3000;
const SIZES = [1000, 10_000];

interface ScaleResult {
  count: number;
  seconds: number;
  lockSeconds: number;
  cpuShare: number;
  eventLoopBusy: number;
  heapPerHeldBytes: number;
  gc: boolean;
  roundTripsPerSecond: number;
  pipelinesPerSecond: number;
  leasesPerPipeline: number;
  singleRenewsPerSecond: number;
  renewalsPerSecond: number;
  serverRenewalsPerSecond: number;
  scriptCallsPerSecond: number;
  commandsPerSecond: number;
  stillHeld: number;
}

function runChild(ctx: BenchContext, count: number, windowMs: number): Promise<ScaleResult> {
  const child = ctx.fixture('scale.ts', [ctx.redisUrl, String(count), String(TTL_MS), String(windowMs)], ['--expose-gc']);
  return new Promise<ScaleResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`scale fixture (${count}) did not finish in time`));
    }, windowMs + 90_000);
    child.on('message', (m: { result?: ScaleResult; error?: string }) => {
      if (m.error) reject(new Error(`scale fixture failed: ${m.error}`));
      if (m.result) resolve(m.result);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`scale fixture exited (${code}) without a result`));
    });
  });
}

const scenario: Scenario = {
  id: 'scale',
  title: '5. scale (one process holding many singletons)',
  async run(ctx: BenchContext): Promise<Row[]> {
    // Long enough to span a few major collections of the 10 000-lease process (one every 8–17 s):
    // an 8 s window either caught one or not, and the figure jumped by 2 points between runs.
    const windowMs = ctx.quick ? 3000 : 24_000;
    const rows: Row[] = [];
    const contender = 'ours: Singleton';
    for (const count of SIZES) {
      const r = await runChild(ctx, count, windowMs);
      const title = `5 scale ${fmt(count)} held`;
      const expected = count / (TTL_MS / 3 / 1000); // renewIntervalMs defaults to ttl / 3
      const big = count >= 10_000;
      rows.push(
        {
          scenario: title,
          contender,
          metric: `renewals/s, client / Redis (expected ${fmt(expected)})`,
          value: `${fmt(r.renewalsPerSecond)} / ${fmt(r.serverRenewalsPerSecond)}`,
          raw: r,
          target: target(count - r.stillHeld, '<=', 0, `all ${fmt(count)} still held`),
        },
        {
          scenario: title,
          contender,
          metric: 'renewal round trips/s (leases per round trip; script calls/s)',
          value: `${fmt(r.roundTripsPerSecond, 2)} (${fmt(r.leasesPerPipeline, 0)}; ${fmt(r.scriptCallsPerSecond, 0)})`,
          target: target(r.roundTripsPerSecond, '<=', r.renewalsPerSecond / 50, 'batched: ≤ renewals/50'),
        },
        {
          scenario: title,
          contender,
          metric: 'CPU, share of one core',
          value: `${(r.cpuShare * 100).toFixed(2)} %`,
          target: big ? target(r.cpuShare, '<', 0.05, '< 5 %') : undefined,
        },
        {
          scenario: title,
          contender,
          metric: 'event loop busy (main thread only)',
          value: `${(r.eventLoopBusy * 100).toFixed(2)} %`,
        },
        {
          scenario: title,
          contender,
          metric: `heap per held singleton${r.gc ? '' : ' (no gc: rough)'}`,
          value: `${fmt(r.heapPerHeldBytes / 1024, 2)} KB`,
          target: big ? target(r.heapPerHeldBytes, '<', 2048, '< 2 KB') : undefined,
        },
      );
    }
    return rows;
  },
};

export default scenario;
