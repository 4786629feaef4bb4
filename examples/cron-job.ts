/**
 * A cron job started on several hosts (or twice on one) at the same time: the
 * first one does the work, every other one sees who is doing it and exits 0.
 *
 * `run()` takes the lock, runs the job with an AbortSignal that aborts if the
 * lease is ever lost, and releases the lock in every case.
 *
 *   npx tsx examples/cron-job.ts & npx tsx examples/cron-job.ts
 *   npx tsx examples/cron-job.ts --job-ms 3000 --store redis://127.0.0.1:6379
 *
 * Store: `--store URL`, else $SINGLETON_STORE, else the file store (no server).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { describeHolder, FilePersister, type Persister, persisterFromUrl, Singleton } from '../lib';
import { exampleArgs, wholeMs } from './args';

const values = exampleArgs('cron-job', 'usage: npx tsx examples/cron-job.ts [--store URL] [--name NAME] [--job-ms MS]', {
  store: { type: 'string' },
  name: { type: 'string', default: 'example-nightly-report' },
  'job-ms': { type: 'string', default: '1000' },
});
const jobMs = wholeMs('cron-job', 'job-ms', values['job-ms']);

const say = (text: string) => process.stdout.write(`[cron-job ${process.pid}] ${text}\n`);

async function main(): Promise<number> {
  const url = values.store ?? process.env.SINGLETON_STORE;
  const persister: Persister = url ? await persisterFromUrl(url) : new FilePersister();
  const singleton = new Singleton(values.name, persister, {
    ttlMs: 10_000,
    // This program prints what happens itself; the library logs errors only (SINGLETON_LOG_LEVEL=debug shows every step).
    logger: pino({ level: process.env.SINGLETON_LOG_LEVEL ?? 'error' }, pino.destination(2)),
  });
  try {
    const result = await singleton.run(async (signal) => {
      say(`running the job under "${singleton.name}", fencing token ${singleton.fencingToken}`);
      // The job: pass the signal on, so losing the lease stops the work at once.
      await sleep(jobMs, undefined, { signal });
      return 'report written';
    });
    if (result.status === 'conflict') {
      say(`already running elsewhere: ${describeHolder(result.holder)}; nothing to do, exiting`);
      return 0;
    }
    say(`done: ${result.value}; lock released`);
    return 0;
  } finally {
    await persister.close?.();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // A store error (PersisterError) or a lost lease (LockLostError): say so, exit non-zero.
    process.stderr.write(`cron-job: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}\n`);
    process.exitCode = 1;
  },
);
