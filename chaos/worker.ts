/**
 * One chaos worker: `node --import tsx chaos/worker.ts <slot> <lockPort> <storageUrl> <runDir> <ttlMs>`,
 * started by chaos/index.ts with an IPC channel.
 *
 * In a loop it runs `singleton.run(fn, { wait: true })` on the lock named
 * `chaos`, reached through the suite's TCP proxy at `lockPort`. `fn` reads
 * both registers of the storage Redis, sleeps, and writes each back with its
 * own operation id appended: the unfenced one with GET/SET, the fenced one
 * through a Lua check that refuses a fence lower than the highest seen. A
 * careful worker: it does not write once its lease signal has aborted. Every
 * step goes to its history file with a synchronous append.
 *
 * It stops after its current operation on the message `stop`, and exits at
 * once if the IPC channel closes (the suite died).
 */
import { join } from 'node:path';
import Redis from 'ioredis';
import { LockLostError, RedisPersister, Singleton } from '../lib/index';
import { type AcquiredMessage, FENCED_SCRIPT, HistoryFile, type Register, REGISTER_KEYS } from './history';

const [slotArg, lockPortArg, storageUrl, runDir, ttlArg] = process.argv.slice(2);
if (!slotArg || !lockPortArg || !storageUrl || !runDir || !ttlArg || !process.send) {
  process.stderr.write('usage: node --import tsx chaos/worker.ts <slot> <lockPort> <storageUrl> <runDir> <ttlMs> (with an IPC channel)\n');
  process.exit(64);
}
const slot = Number(slotArg);
const ttlMs = Number(ttlArg);
const history = new HistoryFile(join(runDir, `history-${slot}-${process.pid}.jsonl`), slot);
history.append({ type: 'start' });

const describe = (error: unknown) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));
// With the stack: the checker reports the first line, the history keeps where it came from.
const withStack = (error: unknown) => (error instanceof Error && error.stack ? `${describe(error)}\n${error.stack}` : describe(error));
process.on('unhandledRejection', (error) => {
  history.append({ type: 'unhandled', error: withStack(error) });
  process.exit(3);
});
process.on('uncaughtException', (error) => {
  history.append({ type: 'unhandled', error: withStack(error) });
  process.exit(4);
});
process.on('disconnect', () => process.exit(0));

// Reconnect quickly after a cut or a store restart: the suite measures the library, not ioredis's backoff.
const lockClient = new Redis({ host: '127.0.0.1', port: Number(lockPortArg), retryStrategy: () => 50, maxRetriesPerRequest: null });
lockClient.on('error', () => undefined); // outages are the point; the library reports what matters
const storage = new Redis(storageUrl, { retryStrategy: () => 50 });
storage.on('error', () => undefined);
storage.defineCommand('fenced', { numberOfKeys: 2, lua: FENCED_SCRIPT });

const singleton = new Singleton('chaos', new RedisPersister(lockClient, { operationTimeoutMs: Math.ceil(ttlMs / 2) }), {
  ttlMs,
  onLost: 'emit',
});
let current: string | undefined;
singleton.on('lost', ({ reason }) => history.append({ type: 'lost', op: current, reason }));
singleton.on('error', (error) => history.append({ type: 'store-error', error: describe(error) }));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Mostly short critical sections (2–15 ms); one in 25 long (0.3–2 leases, so renewals run during it).
 * The suite aims its partitions and store restarts at long ones: a holder in the middle of its work.
 */
function workMs(): number {
  return Math.random() < 0.96 ? 2 + Math.random() * 13 : ttlMs * (0.3 + Math.random() * 1.7);
}


type FencedReply = [string, string?];
const fenced = (fence: string, action: 'read' | 'write', value = ''): Promise<FencedReply> =>
  (storage as unknown as { fenced(...args: string[]): Promise<FencedReply> }).fenced(
    REGISTER_KEYS.fenced,
    REGISTER_KEYS.highestFence,
    fence,
    action,
    value,
  );

function appended(value: string, op: string): string {
  const ids = JSON.parse(value) as string[];
  ids.push(op);
  return JSON.stringify(ids);
}

function recordRead(op: string, reg: Register, value: string): void {
  const ids = JSON.parse(value) as string[];
  history.append({ type: 'read', op, reg, ids: ids.length, last: ids[ids.length - 1] });
}

async function criticalSection(op: string, signal: AbortSignal): Promise<void> {
  try {
    await work(op, signal);
  } finally {
    history.append({ type: 'section-end', op });
  }
}

async function work(op: string, signal: AbortSignal): Promise<void> {
  const fence = String(singleton.fencingToken);
  history.append({ type: 'acquired', op, fence });
  const ms = workMs();
  signal.addEventListener(
    'abort',
    () => history.append({ type: 'abort', op, reason: signal.reason instanceof LockLostError ? String(signal.reason.reason) : describe(signal.reason) }),
    { once: true },
  );
  let unfenced: string | undefined;
  let fencedValue: string | undefined;
  try {
    unfenced = (await storage.get(REGISTER_KEYS.unfenced)) ?? '[]';
    recordRead(op, 'unfenced', unfenced);
  } catch (error) {
    history.append({ type: 'storage-error', op, reg: 'unfenced', error: describe(error) });
  }
  try {
    const [status, value] = await fenced(fence, 'read');
    if (status === 'OK') {
      fencedValue = value ?? '[]';
      recordRead(op, 'fenced', fencedValue);
    } else history.append({ type: 'read-refused', op, reg: 'fenced', highest: String(value) });
  } catch (error) {
    history.append({ type: 'storage-error', op, reg: 'fenced', error: describe(error) });
  }
  // Tell the suite where we are: its strikes land in this sleep (between read and write), or just after.
  process.send?.({ acquired: op, workMs: ms } satisfies AcquiredMessage);
  await sleep(ms);
  if (signal.aborted) {
    history.append({ type: 'skip-write', op });
    throw signal.reason;
  }
  if (unfenced !== undefined) {
    history.append({ type: 'write', op, reg: 'unfenced' });
    try {
      await storage.set(REGISTER_KEYS.unfenced, appended(unfenced, op));
      history.append({ type: 'write-ack', op, reg: 'unfenced' });
    } catch (error) {
      history.append({ type: 'storage-error', op, reg: 'unfenced', error: describe(error) });
    }
  }
  if (fencedValue !== undefined) {
    history.append({ type: 'write', op, reg: 'fenced' });
    try {
      const [status, highest] = await fenced(fence, 'write', appended(fencedValue, op));
      if (status === 'OK') history.append({ type: 'write-ack', op, reg: 'fenced' });
      else history.append({ type: 'write-refused', op, reg: 'fenced', highest: String(highest) });
    } catch (error) {
      history.append({ type: 'storage-error', op, reg: 'fenced', error: describe(error) });
    }
  }
}

async function main(): Promise<void> {
  const stop = new AbortController();
  process.on('message', (message) => {
    if (message === 'stop') stop.abort();
  });
  await Promise.all([lockClient.ping(), storage.ping()]);
  process.send?.('ready');
  for (let n = 1; !stop.signal.aborted; n++) {
    const op = `${process.pid}.${n}`;
    current = op;
    history.append({ type: 'invoke', op });
    try {
      await singleton.run((signal) => criticalSection(op, signal), { wait: true, signal: stop.signal });
      history.append({ type: 'done', op });
    } catch (error) {
      history.append({ type: 'run-error', op, error: describe(error) });
    }
  }
  history.append({ type: 'stopped' });
  lockClient.disconnect();
  storage.disconnect();
  process.exit(0);
}

void main();
