/**
 * A long-running daemon deployed as several replicas, of which only one may work.
 *
 * Every replica stands by for the lock; the one holding it runs the job (here a
 * tick every second that prints its fencing token). The job starts on `locked`
 * and stops on `lost`, after which the replica stands by again. Ctrl-C (or
 * SIGTERM) releases the lock through the library's process hooks, so a standby
 * replica takes over at once.
 *
 *   npx tsx examples/daemon.ts                    # run it in two terminals
 *   npx tsx examples/daemon.ts --run-for 5000     # stop by itself after 5 s
 *   npx tsx examples/daemon.ts --store redis://127.0.0.1:6379
 *
 * Store: `--store URL`, else $SINGLETON_STORE, else the file store (no server).
 */
import pino from 'pino';
import { describeHolder, FilePersister, type Persister, persisterFromUrl, Singleton } from '../lib';
import { exampleArgs, wholeMs } from './args';

const values = exampleArgs('daemon', 'usage: npx tsx examples/daemon.ts [--store URL] [--name NAME] [--ttl MS] [--run-for MS]', {
  store: { type: 'string' },
  name: { type: 'string', default: 'example-daemon' },
  ttl: { type: 'string', default: '5000' },
  'run-for': { type: 'string' },
});

const say = (text: string) => process.stdout.write(`[daemon ${process.pid}] ${text}\n`);

async function main(): Promise<void> {
  const url = values.store ?? process.env.SINGLETON_STORE;
  const persister: Persister = url ? await persisterFromUrl(url) : new FilePersister();
  const singleton = new Singleton(values.name, persister, {
    ttlMs: wholeMs('daemon', 'ttl', values.ttl),
    // This program prints what happens itself; the library logs errors only (SINGLETON_LOG_LEVEL=debug shows every step).
    logger: pino({ level: process.env.SINGLETON_LOG_LEVEL ?? 'error' }, pino.destination(2)),
  });

  let job: NodeJS.Timeout | undefined;
  const stopJob = () => {
    if (job) clearInterval(job);
    job = undefined;
  };

  singleton.on('locked', ({ fencingToken }) => {
    say(`active: holding "${singleton.name}" with fencing token ${fencingToken}; starting the job`);
    let ticks = 0;
    job = setInterval(() => say(`working (tick ${++ticks}, fencing token ${fencingToken})`), 1_000);
  });
  singleton.on('conflict', ({ holder }) => say(`standing by; active is ${describeHolder(holder)}`));
  singleton.on('releasing', () => {
    stopJob();
    say('stopping the job and releasing the lock');
  });
  singleton.on('released', () => say('released the lock'));
  // Listening for 'lost' makes loss ours to handle (instead of exit 70): stop at once, then stand by again.
  singleton.on('lost', ({ reason }) => {
    stopJob();
    say(`lost the lock (${reason}); job stopped, standing by again`);
    void standBy();
  });
  singleton.on('error', (error) => say(`store error (retrying): ${error.message}`));

  async function standBy(): Promise<void> {
    try {
      await singleton.waitForLock();
    } catch (error) {
      if ((error as Error).name !== 'AbortError') throw error; // AbortError: release() ended the wait
    }
  }

  if (values['run-for'] !== undefined) {
    const runForMs = wholeMs('daemon', 'run-for', values['run-for']);
    setTimeout(() => {
      say(`--run-for ${runForMs} ms is over: shutting down`);
      void singleton
        .release()
        .then(() => persister.close?.())
        .then(() => say('bye'));
    }, runForMs);
  }
  say(`started; waiting for "${singleton.name}" (Ctrl-C to stop)`);
  await standBy();
}

main().catch((error: unknown) => {
  process.stderr.write(`daemon: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
