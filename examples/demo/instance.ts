/**
 * One instance of the fail-over demo (`examples/demo.ts` starts three of these).
 *
 * It stands by for the lock with `waitForLock`, holds it (renewed in the
 * background) once it is the active one, and goes back to standing by if the
 * lease is ever lost. It prints one JSON line per event on stdout for the demo
 * to read:
 *
 *   {"demo":1,"id":"A","pid":123,"event":"locked","t":1745000000123.456,"fencingToken":"…"}
 *
 * `t` is a high-resolution wall-clock time (`performance.timeOrigin + performance.now()`),
 * comparable between processes on one host. The library's own log goes to stderr.
 *
 * SIGTERM / Ctrl-C: the library's process hooks release the lock, then the
 * process dies of the signal. If the demo itself dies (its end of our stdin
 * closes), the instance stops the same way, so no orphan stays behind.
 *
 * Run alone: npx tsx examples/demo/instance.ts --id A --name demo-test [--store URL] [--ttl 2000]
 */
import { parseArgs } from 'node:util';
import { FilePersister, type LockInfo, type Persister, persisterFromUrl, Singleton } from '../../lib';

/** High-resolution wall-clock ms, comparable across processes on one host. */
function now(): number {
  return performance.timeOrigin + performance.now();
}

function holderFields(h: LockInfo): Record<string, unknown> {
  return { owner: h.owner, pid: h.pid, hostname: h.hostname, fencingToken: String(h.fencingToken), expiresAt: h.expiresAt.getTime() };
}

function emit(id: string, event: string, fields: Record<string, unknown> = {}): void {
  // Writes to a pipe are synchronous on Linux: the line is out before the signal that may follow.
  process.stdout.write(`${JSON.stringify({ demo: 1, id, pid: process.pid, event, t: now(), ...fields })}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      id: { type: 'string' },
      name: { type: 'string' },
      store: { type: 'string' },
      ttl: { type: 'string', default: '2000' },
    },
  });
  const id = values.id;
  const name = values.name;
  if (!id || !name) throw new Error('usage: instance.ts --id A --name LOCK [--store URL] [--ttl MS]');
  const ttlMs = Number(values.ttl);
  const url = values.store ?? process.env.SINGLETON_STORE;
  const persister: Persister = url ? await persisterFromUrl(url) : new FilePersister();

  const singleton = new Singleton(name, persister, { ttlMs, owner: `instance-${id}` });
  singleton.on('locked', (e) => emit(id, 'locked', { fencingToken: String(e.fencingToken) }));
  singleton.on('conflict', (e) => emit(id, 'conflict', { holder: holderFields(e.holder) }));
  singleton.on('expired', (e) => emit(id, 'expired', { previous: holderFields(e.previous) }));
  singleton.on('releasing', () => emit(id, 'releasing'));
  singleton.on('released', () => emit(id, 'released'));
  singleton.on('error', (e) => emit(id, 'error', { error: e.message }));

  // The demo went away (closed our stdin): stop as if it had sent SIGTERM, so a held lock is released.
  process.stdin.on('data', () => undefined);
  process.stdin.on('end', () => process.kill(process.pid, 'SIGTERM'));

  // Listening for 'lost' means a lost lease is ours to handle (no exit 70): stand by again.
  let lost: (() => void) | undefined;
  singleton.on('lost', (e) => {
    emit(id, 'lost', { reason: e.reason, holder: e.holder && holderFields(e.holder) });
    lost?.();
  });

  emit(id, 'ready', { ttlMs });
  for (;;) {
    await singleton.waitForLock();
    // Active until the lease is lost; SIGTERM ends the process from the hooks.
    await new Promise<void>((resolve) => {
      lost = resolve;
    });
  }
}

main().catch((error: unknown) => {
  emit(process.argv.includes('--id') ? String(process.argv[process.argv.indexOf('--id') + 1]) : '?', 'fatal', {
    error: error instanceof Error ? error.message : String(error),
  });
  process.exit(1);
});
