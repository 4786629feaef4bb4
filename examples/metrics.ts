/**
 * Metrics without wrapping the library: subscribe to the diagnostics channel and turn
 * every lifecycle event into Prometheus counters and a store-latency histogram
 * (prom-client, a dev dependency here: install it in your own project).
 *
 *   npx tsx examples/metrics.ts
 *   npx tsx examples/metrics.ts --store redis://127.0.0.1:6379
 *
 * It locks and releases a few times (one attempt per round meets a held lock) and prints what a
 * Prometheus scrape of `/metrics` would read. Store: `--store URL`, else
 * $SINGLETON_STORE, else the file store (no server).
 */
import { subscribe } from 'node:diagnostics_channel';
import pino from 'pino';
import { Counter, Histogram, Registry } from 'prom-client';
import { DIAGNOSTICS_CHANNEL, type DiagnosticsEvent, FilePersister, type Persister, persisterFromUrl, Singleton } from '../lib';
import { exampleArgs } from './args';

// ——— the recipe (the README shows the same lines) ———————————————————————————
const registry = new Registry();
const events = new Counter({
  name: 'singleton_events_total',
  help: 'Lifecycle events by lock and event (conflict counts every failed attempt)',
  labelNames: ['lock', 'event', 'reason'],
  registers: [registry],
});
const storeLatency = new Histogram({
  name: 'singleton_store_seconds',
  help: 'Store round trip of acquire (locked), renew (renewed) and release (released)',
  labelNames: ['event'],
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  registers: [registry],
});
subscribe(DIAGNOSTICS_CHANNEL, (message) => {
  const e = message as DiagnosticsEvent;
  events.inc({ lock: e.lock, event: e.event, reason: e.reason ?? '' });
  if (e.durationMs !== undefined) storeLatency.observe({ event: e.event }, e.durationMs / 1000);
});
// ————————————————————————————————————————————————————————————————————————————

const values = exampleArgs('metrics', 'usage: npx tsx examples/metrics.ts [--store URL] [--name NAME]', {
  store: { type: 'string' },
  name: { type: 'string', default: 'example-metrics' },
});

async function main(): Promise<void> {
  const url = values.store ?? process.env.SINGLETON_STORE;
  const persister: Persister = url ? await persisterFromUrl(url) : new FilePersister();
  const logger = pino({ level: process.env.SINGLETON_LOG_LEVEL ?? 'error' }, pino.destination(2));
  const a = new Singleton(values.name, persister, { ttlMs: 2_000, renewIntervalMs: 100, owner: 'worker-a', logger });
  const b = new Singleton(values.name, persister, { ttlMs: 2_000, owner: 'worker-b', logger });
  try {
    for (let round = 0; round < 3; round++) {
      await a.lock();
      await b.lock(); // held by a: a conflict
      await new Promise((resolve) => setTimeout(resolve, 250)); // a few renewals
      await a.release();
    }
  } finally {
    await persister.close?.();
  }
  process.stdout.write(await registry.metrics());
}

main().catch((error: unknown) => {
  process.stderr.write(`metrics example failed: ${String(error)}\n`);
  process.exit(1);
});
