/**
 * `npm run demo`: hot standby and fail-over, measured.
 *
 * Starts three instances (examples/demo/instance.ts) as child processes that
 * all `waitForLock` on one lock. One becomes active; the others stand by and
 * know the leader. The demo then stops the active one gracefully (SIGTERM: it
 * releases) and measures the hand-over, kills the next one with SIGKILL (it
 * cannot release) and measures the takeover, and checks from the instances'
 * own timestamps that two instances were never active at once.
 *
 *   npx tsx examples/demo.ts                         # file store in a temp dir: no server
 *   npx tsx examples/demo.ts --store redis://127.0.0.1:6379
 *   npx tsx examples/demo.ts --store postgres://user@127.0.0.1:5432/db
 *   SINGLETON_STORE=redis://… npx tsx examples/demo.ts
 *
 * Options: --store URL (else $SINGLETON_STORE, else the file store), --ttl MS
 * (lease length, default 2000), --verbose (show the instances' library logs).
 * Exit status: 0 when everything checked out, 1 with a message otherwise.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as nodeModule from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { persisterFromUrl } from '../lib';
import { exampleArgs } from './args';

const REPO_ROOT = resolve(__dirname, '..');
const INSTANCE_SCRIPT = join(__dirname, 'demo', 'instance.ts');
const IDS = ['A', 'B', 'C'] as const;
/** `node --import tsx` needs module.register (Node ≥ 20.6); older Node 20 loads tsx with --loader. */
const TSX_FLAG = typeof (nodeModule as { register?: unknown }).register === 'function' ? '--import' : '--loader';

/** How long each phase may take before the demo gives up, beyond the lease length. */
const STARTUP_TIMEOUT_MS = 30_000;
const PHASE_TIMEOUT_MS = 10_000;
/** How long the demo lets an active instance work before disturbing it. */
const OBSERVE_MS = 1_500;

/** High-resolution wall-clock ms, comparable with the instances' `t` on one host. */
function now(): number {
  return performance.timeOrigin + performance.now();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One JSON line an instance printed (see examples/demo/instance.ts). */
interface InstanceEvent {
  id: string;
  pid: number;
  event: string;
  t: number;
  fencingToken?: string;
  holder?: { owner: string; pid: number; fencingToken: string };
  previous?: { owner: string; pid: number };
  reason?: string;
  error?: string;
}

interface Instance {
  id: string;
  child: ChildProcess;
  events: InstanceEvent[];
  stderr: string[];
  /** Set by the demo before it signals the instance, so the exit is expected. */
  stopping?: 'SIGTERM' | 'SIGKILL';
  killedAt?: number;
  exit?: { code: number | null; signal: NodeJS.Signals | null; t: number };
}

class DemoFailure extends Error {
  override name = 'DemoFailure';
}

const USAGE = 'usage: npx tsx examples/demo.ts [--store URL] [--ttl MS] [--verbose]';
const args = exampleArgs('demo', USAGE, {
  store: { type: 'string' },
  ttl: { type: 'string', default: '2000' },
  verbose: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
});
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const ttlMs = Number(args.ttl);
if (!Number.isInteger(ttlMs) || ttlMs < 100) {
  process.stderr.write(`demo: --ttl must be a whole number of ms, at least 100 (got ${args.ttl})\n`);
  process.exit(1);
}

const lockName = `demo-${randomBytes(3).toString('hex')}`;
const givenStore = args.store ?? process.env.SINGLETON_STORE;
const tempDir = givenStore ? undefined : mkdtempSync(join(tmpdir(), 'singleton-demo-'));
const storeUrl = givenStore ?? pathToFileURL(tempDir as string).href;
const isFileStore = storeUrl.trim().toLowerCase().startsWith('file:');
const t0 = now();
const instances: Instance[] = [];
let failure: DemoFailure | undefined;
/** Re-checks the condition a phase is waiting for; set while one waits. */
let recheck: (() => void) | undefined;

// ——— the timeline ————————————————————————————————————————————————
// Lines from different processes can arrive a little out of order: hold them for
// a few ms and print them sorted by their own timestamps.
const pending: Array<{ t: number; who: string; text: string }> = [];
let flushTimer: NodeJS.Timeout | undefined;

function flush(): void {
  if (flushTimer) clearTimeout(flushTimer);
  flushTimer = undefined;
  pending.sort((a, b) => a.t - b.t);
  for (const { t, who, text } of pending.splice(0)) {
    process.stdout.write(`  ${`+${((t - t0) / 1000).toFixed(3)} s`.padStart(9)}  ${who.padEnd(4)} ${text}\n`);
  }
}

function line(t: number, who: string, text: string): void {
  pending.push({ t, who, text });
  flushTimer ??= setTimeout(flush, 40);
}

/** `instance-B` → `B`: the instances' owners are named after their ids. */
function shortOwner(owner: string): string {
  return owner.startsWith('instance-') ? owner.slice('instance-'.length) : owner;
}

function describe(e: InstanceEvent): string | undefined {
  switch (e.event) {
    case 'ready':
      return `started (pid ${e.pid}), waiting for the lock`;
    case 'locked':
      return `ACTIVE: holds the lock, fencing token ${e.fencingToken}`;
    case 'conflict':
      return e.holder
        ? `standing by; the leader is ${shortOwner(e.holder.owner)} (pid ${e.holder.pid}, fencing token ${e.holder.fencingToken})`
        : 'standing by';
    case 'expired':
      return e.previous ? `(took over the lease of ${shortOwner(e.previous.owner)}, which was never released)` : undefined;
    case 'releasing':
      return 'stopping work, releasing the lock';
    case 'released':
      return 'released the lock';
    case 'lost':
      return `LOST the lock (${e.reason})`;
    case 'error':
      return `store error: ${e.error}`;
    case 'fatal':
      return `failed: ${e.error}`;
    default:
      return undefined;
  }
}

// ——— the instances ——————————————————————————————————————————————

function start(id: string): Instance {
  const child = spawn(
    process.execPath,
    [TSX_FLAG, 'tsx', INSTANCE_SCRIPT, '--id', id, '--name', lockName, '--store', storeUrl, '--ttl', String(ttlMs)],
    // stdin stays a pipe: when the demo dies, the instance sees it close and stops.
    { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: process.env },
  );
  const instance: Instance = { id, child, events: [], stderr: [] };
  let buffered = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      onLine(instance, text);
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    instance.stderr.push(chunk);
    if (args.verbose) process.stderr.write(chunk.replace(/^(?=.)/gm, `[${id}] `));
  });
  child.stdin?.on('error', () => undefined); // the instance may be gone already
  child.on('error', (err) => fail(`could not start instance ${id}: ${err.message}`));
  child.on('exit', (code, signal) => {
    instance.exit = { code, signal, t: now() };
    line(instance.exit.t, id, `exited (${signal ?? `code ${code}`})`);
    if (!instance.stopping) {
      const output = instance.stderr.join('').trim().split('\n').slice(-5).join('\n    ');
      fail(`instance ${id} exited on its own (${signal ?? `code ${code}`})${output ? `:\n    ${output}` : ''}`);
    }
    recheck?.();
  });
  return instance;
}

function onLine(instance: Instance, text: string): void {
  let e: InstanceEvent & { demo?: number };
  try {
    e = JSON.parse(text) as InstanceEvent & { demo?: number };
  } catch {
    e = { id: instance.id, pid: instance.child.pid ?? 0, event: 'output', t: now() };
  }
  if (e.demo !== 1) {
    line(now(), instance.id, `(output) ${text}`);
    return;
  }
  instance.events.push(e);
  const text2 = describe(e);
  if (text2) line(e.t, instance.id, text2);
  if (e.event === 'fatal') fail(`instance ${instance.id} failed: ${e.error}`);
  recheck?.();
}

function fail(message: string): void {
  failure ??= new DemoFailure(message);
  recheck?.();
}

/** Resolves with `check()`'s first defined answer; rejects on a failure or after `timeoutMs`. */
function until<T>(what: string, timeoutMs: number, check: () => T | undefined): Promise<T> {
  return new Promise<T>((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      recheck = undefined;
      reject(new DemoFailure(`gave up after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    recheck = () => {
      if (failure) {
        clearTimeout(timer);
        recheck = undefined;
        reject(failure);
        return;
      }
      const found = check();
      if (found !== undefined) {
        clearTimeout(timer);
        recheck = undefined;
        resolvePromise(found);
      }
    };
    recheck();
  });
}

function action(text: string): void {
  line(now(), '--', text);
}

function lastEvent(inst: Instance, event: string, after = 0): InstanceEvent | undefined {
  for (let i = inst.events.length - 1; i >= 0; i--) {
    const e = inst.events[i];
    if (e.event === event && e.t >= after) return e;
  }
  return undefined;
}

/** The first `locked` by any instance other than `except`, at or after `after`. */
function nextLocked(after: number, except: Instance[]): { inst: Instance; e: InstanceEvent } | undefined {
  let best: { inst: Instance; e: InstanceEvent } | undefined;
  for (const inst of instances) {
    if (except.includes(inst)) continue;
    const e = inst.events.find((x) => x.event === 'locked' && x.t >= after);
    if (e && (!best || e.t < best.e.t)) best = { inst, e };
  }
  return best;
}

/** Each instance's active intervals: from `locked` to `releasing` / `lost` / its death. */
function activeIntervals(): Array<{ id: string; from: number; to: number; token: string }> {
  const out: Array<{ id: string; from: number; to: number; token: string }> = [];
  for (const inst of instances) {
    let open: InstanceEvent | undefined;
    for (const e of inst.events) {
      if (e.event === 'locked') open = e;
      else if ((e.event === 'releasing' || e.event === 'lost') && open) {
        out.push({ id: inst.id, from: open.t, to: e.t, token: open.fencingToken ?? '?' });
        open = undefined;
      }
    }
    if (open) {
      // Still active when it died: SIGKILLed (it can do nothing after the kill, or after its last line), or it just exited.
      const lastSeen = inst.events[inst.events.length - 1]?.t ?? open.t;
      const end = inst.killedAt !== undefined ? Math.max(inst.killedAt, lastSeen) : (inst.exit?.t ?? now());
      out.push({ id: inst.id, from: open.t, to: end, token: open.fencingToken ?? '?' });
    }
  }
  return out.sort((a, b) => a.from - b.from);
}

function stop(inst: Instance, signal: 'SIGTERM' | 'SIGKILL'): void {
  inst.stopping = signal;
  if (signal === 'SIGKILL') inst.killedAt = now();
  if (inst.exit === undefined) inst.child.kill(signal);
}

const alive = () => instances.filter((i) => i.exit === undefined);

/** Ends every instance still running: SIGTERM (they release), then SIGKILL after `graceMs`. */
async function stopAll(graceMs: number): Promise<void> {
  for (const inst of alive()) stop(inst, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive().length > 0 && Date.now() < deadline) await sleep(20);
  for (const inst of alive()) stop(inst, 'SIGKILL');
  while (alive().length > 0 && Date.now() < deadline + 2_000) await sleep(20);
}

function removeTempDir(): void {
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
}

// Whatever happens, no instance outlives the demo.
process.on('exit', () => {
  for (const inst of alive()) inst.child.kill('SIGKILL');
  removeTempDir();
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    flush();
    process.stdout.write(`\ndemo: ${signal} received, stopping the instances\n`);
    void stopAll(3_000).finally(() => {
      flush();
      process.exit(signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 129);
    });
  });
}

function redact(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/?#@]*?:)[^/?#@]*@/i, '$1***@');
}

function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}

// ——— the demo ——————————————————————————————————————————————————————

async function preflight(): Promise<void> {
  let persister;
  try {
    persister = await persisterFromUrl(storeUrl);
  } catch (error) {
    throw new DemoFailure(`bad --store: ${(error as Error).message}`);
  }
  try {
    await persister.inspect(lockName);
  } catch (error) {
    throw new DemoFailure(`cannot use the store ${redact(storeUrl)}: ${(error as Error).message}`);
  } finally {
    await persister.close?.().catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const storeText = tempDir ? `file store in ${tempDir} (no server needed)` : `${redact(storeUrl)}`;
  process.stdout.write(
    [
      `singleton-process demo: three instances (A, B, C) compete for one lock, "${lockName}"`,
      `store: ${storeText}; lease ${ttlMs} ms, renewed every ${Math.round(ttlMs / 3)} ms`,
      'Each instance calls waitForLock(): one is active, the others stand by and know the leader.',
      '',
      '       time  who  what',
      '',
    ].join('\n'),
  );
  await preflight();

  // 1. Three instances start at once; one wins, two stand by.
  for (const id of IDS) instances.push(start(id));
  const first = await until('one instance to become active', STARTUP_TIMEOUT_MS, () => nextLocked(0, []));
  const firstOwner = `instance-${first.inst.id}`;
  await until(`the other two to stand by behind ${first.inst.id}`, STARTUP_TIMEOUT_MS, () =>
    instances
      .filter((i) => i !== first.inst)
      .every((i) => i.events.some((e) => e.event === 'conflict' && e.holder?.owner === firstOwner))
      ? true
      : undefined,
  );
  await sleep(OBSERVE_MS);

  // 2. Graceful stop of the active one: it releases, a standby takes over at once.
  flush();
  action(`stopping ${first.inst.id} gracefully (SIGTERM): it releases the lock, then exits`);
  stop(first.inst, 'SIGTERM');
  const second = await until('a standby to take over after the graceful stop', PHASE_TIMEOUT_MS + ttlMs, () =>
    nextLocked(first.e.t + 0.001, [first.inst]),
  );
  await until(`${first.inst.id} to exit`, PHASE_TIMEOUT_MS, () => first.inst.exit);
  const releasing = lastEvent(first.inst, 'releasing');
  const released = lastEvent(first.inst, 'released');
  if (!releasing || !released) throw new DemoFailure(`${first.inst.id} exited on SIGTERM without releasing the lock`);
  const third = instances.find((i) => i !== first.inst && i !== second.inst) as Instance;
  const secondOwner = `instance-${second.inst.id}`;
  // The last standby learns the new leader at its next attempt (woken by the release).
  await until(`${third.id} to see the new leader`, PHASE_TIMEOUT_MS, () =>
    third.events.some((e) => e.event === 'conflict' && e.holder?.owner === secondOwner) ? true : undefined,
  ).catch((error: unknown) => {
    if (failure) throw error;
  });
  await sleep(OBSERVE_MS);

  // 3. Crash of the active one: no release; the last standby takes over the stale lease.
  flush();
  action(`killing ${second.inst.id} with SIGKILL: it cannot release; ${third.id} must take the lease over`);
  stop(second.inst, 'SIGKILL');
  const killedAt = second.inst.killedAt as number;
  const takeover = await until(`${third.id} to take over after the crash`, PHASE_TIMEOUT_MS + 3 * ttlMs, () =>
    nextLocked(killedAt, [first.inst, second.inst]),
  );
  await sleep(OBSERVE_MS / 2);

  // 4. Done: the last one releases and exits.
  flush();
  action(`stopping ${third.id} gracefully (SIGTERM)`);
  stop(third, 'SIGTERM');
  await until('every instance to exit', PHASE_TIMEOUT_MS, () => (alive().length === 0 ? true : undefined));
  await sleep(50);
  flush();

  // The checks, from the instances' own timestamps.
  const intervals = activeIntervals();
  const overlaps: string[] = [];
  for (let i = 0; i < intervals.length; i++) {
    for (let j = i + 1; j < intervals.length; j++) {
      const a = intervals[i];
      const b = intervals[j];
      if (a.from < b.to && b.from < a.to) {
        overlaps.push(`${a.id} and ${b.id} were both active for ${ms(Math.min(a.to, b.to) - Math.max(a.from, b.from))}`);
      }
    }
  }
  const tokens = intervals.map((x) => x.token);
  const increasing = tokens.every((tok, i) => i === 0 || (/^\d+$/.test(tok) && BigInt(tok) > BigInt(tokens[i - 1])));

  // From the moment the active one stops work and sends its release, to the next one holding
  // the lock: the time nobody is active. (Its own `released` line comes after the store's answer,
  // which can reach it after a watching standby was notified and already locked.)
  const handOverMs = second.e.t - releasing.t;
  const crashMs = takeover.e.t - killedAt;
  const crashWhy = isFileStore
    ? 'the file store sees the holder process is dead: no waiting for the lease to run out (standbys check every 250 ms)'
    : `the store cannot tell a process died: the lease had to run out (ttl ${ttlMs} ms)`;
  const rows: Array<[string, string, string]> = [
    [
      'graceful hand-over (SIGTERM)',
      ms(handOverMs),
      `${first.inst.id} stops work and releases → ${second.inst.id} locked (nobody active meanwhile)`,
    ],
    ['crash takeover (SIGKILL)', ms(crashMs), `kill -9 of ${second.inst.id} → ${third.id} locked; ${crashWhy}`],
    [
      'two instances active at once',
      overlaps.length === 0 ? 'never' : 'YES',
      overlaps.length === 0 ? `never two active (${intervals.length} leases compared)` : overlaps.join('; '),
    ],
    ['fencing tokens', increasing ? 'increasing' : 'NOT increasing', tokens.join(' < ')],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  const width2 = Math.max(...rows.map((r) => r[1].length));
  process.stdout.write(`\nSummary (${tempDir ? 'file store' : redact(storeUrl)}, lease ${ttlMs} ms)\n`);
  for (const [what, value, note] of rows) process.stdout.write(`  ${what.padEnd(width)}  ${value.padStart(width2)}  ${note}\n`);

  if (overlaps.length > 0) throw new DemoFailure(`two instances were active at the same time: ${overlaps.join('; ')}`);
  if (!increasing) throw new DemoFailure(`fencing tokens did not increase from one lease to the next: ${tokens.join(', ')}`);
  if (handOverMs > ttlMs) throw new DemoFailure(`the graceful hand-over took ${ms(handOverMs)}, longer than a whole lease`);
  process.stdout.write('\nOK: one instance active at a time; hand-over and takeover measured above.\n');
}

main().then(
  () => process.exit(0),
  async (error: unknown) => {
    flush();
    const message = error instanceof DemoFailure ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`\ndemo FAILED: ${message}\n`);
    await stopAll(3_000);
    flush();
    process.exit(1);
  },
);
