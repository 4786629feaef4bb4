/**
 * Hot standby in one call (the node-standby use case): `standby()` waits until
 * this replica is the active one, runs the task once, and keeps the lease until
 * the process ends. The other replicas stand by and know who leads; when the
 * active one stops, one of them takes over within milliseconds (within one lease
 * if it crashed).
 *
 *   npx tsx examples/standby.ts          # start it in two or three terminals, Ctrl-C the active one
 *   npx tsx examples/standby.ts --run-for 5000 --store redis://127.0.0.1:6379
 *
 * Store: `--store URL`, else $SINGLETON_STORE, else the file store (no server).
 */
import pino from 'pino';
import { FilePersister, type Persister, persisterFromUrl, standby } from '../lib';
import { exampleArgs, wholeMs } from './args';

const values = exampleArgs('standby', 'usage: npx tsx examples/standby.ts [--store URL] [--name NAME] [--ttl MS] [--run-for MS]', {
  store: { type: 'string' },
  name: { type: 'string', default: 'example-standby' },
  ttl: { type: 'string', default: '5000' },
  'run-for': { type: 'string' },
});

const say = (text: string) => process.stdout.write(`[standby ${process.pid}] ${text}\n`);

async function main(): Promise<void> {
  const url = values.store ?? process.env.SINGLETON_STORE;
  const persister: Persister = url ? await persisterFromUrl(url) : new FilePersister();

  let work: NodeJS.Timeout | undefined;
  const task = () => {
    say(`active: this replica runs the service now (fencing token ${singleton.fencingToken})`);
    work = setInterval(() => say('serving…'), 1_000);
  };
  const stopWork = () => {
    if (work) clearInterval(work);
    work = undefined;
  };

  const singleton = standby(persister, task, {
    name: values.name,
    ttlMs: wholeMs('standby', 'ttl', values.ttl),
    // This program prints what happens itself; the library logs errors only (SINGLETON_LOG_LEVEL=debug shows every step).
    logger: pino({ level: process.env.SINGLETON_LOG_LEVEL ?? 'error' }, pino.destination(2)),
  });
  singleton.on('conflict', ({ holder }) => say(`standing by, leader is ${holder.owner} (pid ${holder.pid} on ${holder.hostname})`));
  singleton.on('releasing', stopWork);
  // standby() goes back to standing by after a loss, and runs the task again when active again.
  singleton.on('lost', ({ reason }) => {
    stopWork();
    say(`lost the lease (${reason}); standing by again`);
  });
  singleton.on('error', (error) => say(`error: ${error.message}`));
  say(`started; replica "${singleton.owner}" joins "${singleton.name}" (Ctrl-C to stop)`);

  if (values['run-for'] !== undefined) {
    const runForMs = wholeMs('standby', 'run-for', values['run-for']);
    setTimeout(() => {
      say(`--run-for ${runForMs} ms is over: releasing and leaving`);
      // release() gives the lease up (a standby takes over at once) and stops standing by.
      void singleton
        .release()
        .then(() => persister.close?.())
        .then(() => say('bye'));
    }, runForMs);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`standby: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
