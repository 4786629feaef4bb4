/**
 * `npm run chaos` — fault injection against the public API (DESIGN.md §8).
 *
 * N worker processes (chaos/worker.ts) contend for one lock on a real Redis
 * (the lock store, reached through a TCP proxy the suite runs), each doing
 * read → sleep → write on two registers of a second Redis (the storage): one
 * plain, one fenced. The suite strikes the lock's holder from a seeded
 * schedule, one nemesis per phase (see schedule.ts), then stops the workers,
 * reads the registers and hands everything to chaos/checker.ts, which knows
 * nothing of the library. Exit 0 when the checker passes, 1 when it fails,
 * 64 on bad usage.
 *
 * `npm run chaos -- --quick` is the CI run (about a minute).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Redis from 'ioredis';
import { RedisPersister } from '../lib/index';
import { type RedisServer, startRedisServer } from '../spec/setup/redisServer';
import { checkRun, renderReport } from './checker';
import { buildWorker } from './compile';
import { type AcquiredMessage, nowUs, REGISTER_KEYS, type RunEvent } from './history';
import { LockProxy } from './proxy';
import { NEMESES, NEMESIS_DESCRIPTIONS, type Nemesis, seededRandom, strikesFor } from './schedule';

const ROOT = resolve(__dirname, '..');

interface Args {
  workers: number;
  seed: number;
  quick: boolean;
  ttlMs: number;
  phaseMs: number;
  nemeses: Nemesis[];
  lockRedis?: string;
  storageRedis?: string;
  keep: boolean;
}

const USAGE = `usage: npm run chaos [-- options]
  --quick               short run for CI (${NEMESES.length} phases of 10 s)
  --workers N           worker processes contending for the lock (default 8)
  --seed N              seed of the nemesis schedule (default: random, printed)
  --ttl MS              lease length (default 1000)
  --phase MS            length of each phase (default 60000, --quick 10000)
  --nemesis a,b         phases to run, of ${NEMESES.join(', ')} (default all)
  --lock-redis URL      use this Redis as the lock store (no restart nemesis: it is not ours to kill)
  --storage-redis URL   use this Redis for the registers
  --keep                keep the run directory (histories) even when the run passes
nemeses: ${NEMESES.map((n) => `\n  ${n.padEnd(10)} ${NEMESIS_DESCRIPTIONS[n]}`).join('')}
`;

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\n(see npm run chaos -- --help)\n`);
  process.exit(64);
}

function parseArgs(argv: string[]): Args {
  const args: Args = { workers: 8, seed: Math.floor(Math.random() * 2 ** 31), quick: false, ttlMs: 1000, phaseMs: 0, nemeses: [...NEMESES], keep: false };
  const integer = (flag: string, value: string | undefined, min: number, max: number): number => {
    const n = Number(value);
    if (value === undefined || !Number.isInteger(n) || n < min || n > max) usage(`${flag} needs an integer from ${min} to ${max}, got ${value ?? 'nothing'}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => argv[++i];
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else if (flag === '--quick') args.quick = true;
    else if (flag === '--keep') args.keep = true;
    else if (flag === '--workers') args.workers = integer(flag, value(), 2, 64);
    else if (flag === '--seed') args.seed = integer(flag, value(), 0, 2 ** 31 - 1);
    else if (flag === '--ttl') args.ttlMs = integer(flag, value(), 200, 60_000);
    else if (flag === '--phase') args.phaseMs = integer(flag, value(), 1_000, 3_600_000);
    else if (flag === '--lock-redis') args.lockRedis = value() ?? usage('--lock-redis needs a redis:// URL');
    else if (flag === '--storage-redis') args.storageRedis = value() ?? usage('--storage-redis needs a redis:// URL');
    else if (flag === '--nemesis') {
      const list = (value() ?? '').split(',').filter(Boolean);
      const bad = list.filter((n) => !(NEMESES as readonly string[]).includes(n));
      if (list.length === 0 || bad.length > 0) usage(`--nemesis takes a comma-separated list of ${NEMESES.join(', ')}, got ${bad.join(',') || 'nothing'}`);
      args.nemeses = list as Nemesis[];
    } else usage(`unknown argument ${flag}`);
  }
  if (args.phaseMs === 0) args.phaseMs = args.quick ? 10_000 : 60_000;
  if (args.lockRedis && args.nemeses.includes('restart')) {
    process.stderr.write('chaos: skipping the restart phase: the lock store was given (--lock-redis), so it is not ours to kill\n');
    args.nemeses = args.nemeses.filter((n) => n !== 'restart');
  }
  return args;
}

const progress = (message: string) => process.stderr.write(`chaos: ${message}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

/** Everything a run started, so every exit path can stop it. */
class Run {
  readonly workers = new Map<number, ChildProcess>(); // slot → current process
  readonly killedByUs = new Set<number>();
  /** Emits `acquired` (slot, pid, message) each time a worker enters its critical section. */
  readonly sections = new EventEmitter<{ acquired: [number, number, AcquiredMessage] }>();
  workerScript = '';
  stopping = false;
  lockServer: RedisServer | undefined;
  storageServer: RedisServer | undefined;
  lockUrl = '';
  storageUrl = '';
  proxy: LockProxy | undefined;
  readonly clients: Redis[] = [];
  private watchdog: ChildProcess | undefined;
  private readonly pidFile: string;
  private readonly runLog: number;

  constructor(
    readonly dir: string,
    readonly args: Args,
  ) {
    this.pidFile = join(dir, 'pids');
    this.runLog = openSync(join(dir, 'run.jsonl'), 'a');
  }

  record(event: RunEvent): void {
    writeFileSync(this.runLog, `${JSON.stringify(event)}\n`);
  }

  /**
   * A shell that waits for EOF on a pipe from us, then kills (SIGCONT first, for a paused one) every
   * process this run started and still runs: the pipe closes however the suite ends, SIGKILL included.
   */
  startWatchdog(): void {
    this.watchdog = spawn('sh', ['-c', `read _; for p in $(cat '${this.pidFile}' 2>/dev/null); do kill -CONT $p; kill -9 $p; done 2>/dev/null`], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
    this.watchdog.unref();
    (this.watchdog.stdin as unknown as { unref?: () => void }).unref?.();
  }

  /** Rewrites the list of pids the watchdog would stop, after each start or exit. */
  updatePids(): void {
    const children = [...this.workers.values()];
    for (const server of [this.lockServer, this.storageServer]) if (server) children.push(server.process);
    const pids = children.filter(alive).map((c) => c.pid);
    writeFileSync(this.pidFile, `${pids.join(' ')}\n`);
  }

  /** Starts the worker of `slot`; resolves once it is connected to both stores. */
  async spawnWorker(slot: number): Promise<ChildProcess> {
    const port = await (this.proxy as LockProxy).listen(slot);
    const log = openSync(join(this.dir, `worker-${slot}.log`), 'a');
    const child = spawn(
      process.execPath,
      [this.workerScript, String(slot), String(port), this.storageUrl, this.dir, String(this.args.ttlMs)],
      { cwd: ROOT, stdio: ['ignore', log, log, 'ipc'] },
    );
    closeSync(log);
    this.workers.set(slot, child);
    this.updatePids();
    child.on('message', (message: Partial<AcquiredMessage>) => {
      if (typeof message === 'object' && message.acquired) this.sections.emit('acquired', slot, child.pid as number, message as AcquiredMessage);
    });
    child.once('exit', (code, signal) => {
      const pid = child.pid as number;
      const expected = this.killedByUs.has(pid) || (this.stopping && code === 0);
      this.record({ type: 'exit', slot, pid, code, signal, expected, t: nowUs() });
      this.updatePids();
      if (!expected) progress(`worker ${slot} (pid ${pid}) exited by itself (${signal ?? `code ${code}`}): see ${join(this.dir, `worker-${slot}.log`)}`);
      // Keep the contention going: a crashed worker is replaced too (the checker counts the crash).
      if (!this.stopping && !this.killedByUs.has(pid)) void this.spawnWorker(slot).catch((e: unknown) => progress(`respawning worker ${slot} failed: ${String(e)}`));
    });
    await new Promise<void>((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${slot} did not connect within 60 s: see ${join(this.dir, `worker-${slot}.log`)}`)), 60_000);
      child.once('message', () => {
        clearTimeout(timer);
        resolveReady();
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolveReady(); // the exit handler above reports it
      });
    });
    return child;
  }

  /** Stops everything this run started, at once; safe to call twice. */
  killEverything(): void {
    for (const worker of this.workers.values()) {
      if (alive(worker)) {
        worker.kill('SIGCONT');
        worker.kill('SIGKILL');
      }
    }
    this.proxy?.close().catch(() => undefined);
    for (const client of this.clients) client.disconnect();
    for (const server of [this.lockServer, this.storageServer]) if (server && alive(server.process)) server.process.kill('SIGKILL');
    if (this.watchdog && this.watchdog.exitCode === null) this.watchdog.kill('SIGKILL');
  }
}

/**
 * The next worker to start the work of its critical section (with at least `minWorkMs` of it when given):
 * strikes land on a holder in the middle of its work, not between operations. Resolves undefined
 * when none comes within `withinMs`.
 */
function nextSection(run: Run, minWorkMs: number, withinMs: number): Promise<{ slot: number; pid: number; workMs: number } | undefined> {
  return new Promise((resolveSection) => {
    const onAcquired = (slot: number, pid: number, message: AcquiredMessage) => {
      if (message.workMs < minWorkMs) return;
      done({ slot, pid, workMs: message.workMs });
    };
    const timer = setTimeout(() => done(undefined), withinMs);
    const done = (found: { slot: number; pid: number; workMs: number } | undefined) => {
      clearTimeout(timer);
      run.sections.off('acquired', onAcquired);
      resolveSection(found);
    };
    run.sections.on('acquired', onAcquired);
  });
}

/** The worker that holds the lock now according to the store, if it is one of ours and alive. */
async function storeHolder(run: Run, persister: RedisPersister): Promise<{ slot: number; pid: number } | undefined> {
  const holder = await persister.inspect('chaos').catch(() => null);
  for (const [slot, worker] of run.workers) if (holder && worker.pid === holder.pid && alive(worker)) return { slot, pid: holder.pid };
  return undefined;
}

/** Kills the lock store (-9) and restarts it empty on the same port; resolves when it listens again. */
async function restartLockStore(run: Run, downMs: number): Promise<void> {
  const server = run.lockServer as RedisServer;
  const exited = new Promise((r) => server.process.once('exit', r));
  server.process.kill('SIGKILL');
  await exited;
  run.updatePids();
  await sleep(downMs);
  run.lockServer = await startRedisServer(server.port);
  run.updatePids();
}

async function runPhase(run: Run, nemesis: Nemesis, persister: RedisPersister, random: () => number): Promise<void> {
  const { ttlMs, phaseMs } = run.args;
  const start = nowUs();
  const started = Date.now();
  const strikes = strikesFor(nemesis, phaseMs, ttlMs, random);
  progress(`phase ${nemesis}: ${NEMESIS_DESCRIPTIONS[nemesis]} (${strikes.length} strikes in ${phaseMs / 1000} s)`);
  for (const strike of strikes) {
    await sleep(strike.gapMs);
    const left = phaseMs - (Date.now() - started);
    if (left < ttlMs) break; // waiting for targets and respawns ate the phase: no strike that would overrun it
    // Partitions and restarts matter to a holder with work still ahead: aim them at a long critical
    // section (a partition at one that outlives the lease, a restart at one that outlives the store's outage).
    const minWorkMs = nemesis === 'partition' ? ttlMs * 1.2 : nemesis === 'restart' ? ttlMs * 0.5 : 0;
    const section = await nextSection(run, minWorkMs, Math.min(10 * ttlMs, left - ttlMs));
    // Land somewhere in its work (for a long section, in its first quarter: with work still ahead).
    if (section) await sleep(strike.aim * section.workMs * (minWorkMs > 0 ? 0.25 : 1));
    const holder = section ?? (await storeHolder(run, persister));
    if (!holder && nemesis !== 'restart') {
      progress(`phase ${nemesis}: no live holder found, strike skipped`);
      continue;
    }
    const t0 = nowUs();
    const target = holder ? { slot: holder.slot, pid: holder.pid } : { slot: -1, pid: 0 };
    if (nemesis === 'pause') {
      const worker = run.workers.get(target.slot) as ChildProcess;
      worker.kill('SIGSTOP');
      await sleep(strike.durationMs);
      worker.kill('SIGCONT');
      run.record({ type: 'nemesis', kind: nemesis, ...target, start: t0, end: nowUs() });
    } else if (nemesis === 'kill') {
      run.killedByUs.add(target.pid);
      (run.workers.get(target.slot) as ChildProcess).kill('SIGKILL');
      run.record({ type: 'nemesis', kind: nemesis, ...target, start: t0, end: nowUs() });
      await sleep(strike.durationMs);
      await run.spawnWorker(target.slot);
    } else if (nemesis === 'partition') {
      const proxy = run.proxy as LockProxy;
      proxy.freeze(target.slot);
      await sleep(strike.durationMs);
      proxy.cut(target.slot);
      run.record({ type: 'nemesis', kind: nemesis, ...target, start: t0, end: nowUs() });
    } else if (nemesis === 'restart') {
      await restartLockStore(run, strike.durationMs);
      run.record({ type: 'nemesis', kind: nemesis, ...target, start: t0, end: nowUs(), back: nowUs() });
    }
    await sleep(strike.recoveryMs);
  }
  await sleep(Math.max(0, phaseMs - (Date.now() - started)));
  run.record({ type: 'phase', name: nemesis, start, end: nowUs() });
}

/** Asks every worker to stop after its current operation; resolves whether they all exited in time. */
async function stopWorkers(run: Run, withinMs: number): Promise<boolean> {
  run.stopping = true;
  const workers = [...run.workers.values()].filter(alive);
  const exited = workers.map((w) => new Promise((r) => (alive(w) ? w.once('exit', r) : r(undefined))));
  for (const w of workers) {
    w.kill('SIGCONT');
    if (w.connected) w.send('stop');
  }
  const inTime = await Promise.race([Promise.all(exited).then(() => true), sleep(withinMs).then(() => false)]);
  return inTime;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const began = Date.now();
  const dir = mkdtempSync(join(tmpdir(), `singleton-chaos-${args.seed}-`));
  const run = new Run(dir, args);
  const bail = (signal: NodeJS.Signals) => {
    progress(`${signal}: stopping; histories kept in ${dir}`);
    run.killEverything();
    process.exit(130);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => bail(signal));
  run.startWatchdog();
  try {
    if (args.lockRedis) run.lockUrl = args.lockRedis;
    else {
      run.lockServer = await startRedisServer();
      run.lockUrl = run.lockServer.url;
    }
    if (args.storageRedis) run.storageUrl = args.storageRedis;
    else {
      run.storageServer = await startRedisServer();
      run.storageUrl = run.storageServer.url;
    }
    run.updatePids();
    const lockPort = Number(new URL(run.lockUrl).port || 6379);
    if (new URL(run.lockUrl).hostname !== '127.0.0.1' && new URL(run.lockUrl).hostname !== 'localhost') {
      usage(`--lock-redis must be on loopback (the proxy connects to 127.0.0.1), got ${run.lockUrl}`);
    }
    run.proxy = new LockProxy(lockPort);
    run.workerScript = buildWorker();
    const storage = new Redis(run.storageUrl);
    const admin = new Redis(run.lockUrl, { retryStrategy: () => 50, maxRetriesPerRequest: null });
    admin.on('error', () => undefined);
    run.clients.push(storage, admin);
    await storage.del(REGISTER_KEYS.unfenced, REGISTER_KEYS.fenced, REGISTER_KEYS.highestFence);
    const persister = new RedisPersister(admin, { operationTimeoutMs: args.ttlMs });
    progress(
      `seed ${args.seed}; ${args.workers} workers; lease ${args.ttlMs} ms; phases ${args.nemeses.join(', ')} of ${args.phaseMs / 1000} s; lock store ${run.lockUrl}, storage ${run.storageUrl}; histories in ${dir}`,
    );
    const slots = Array.from({ length: args.workers }, (_, i) => i);
    await Promise.all(slots.map((slot) => run.spawnWorker(slot)));
    progress(`${args.workers} workers connected after ${((Date.now() - began) / 1000).toFixed(1)} s`);

    const random = seededRandom(args.seed);
    for (const nemesis of args.nemeses) await runPhase(run, nemesis, persister, random);

    if (!(await stopWorkers(run, 15_000))) {
      progress('some workers did not stop within 15 s of being asked: killing them (counted as crashes)');
    }
    const final = {
      unfenced: JSON.parse((await storage.get(REGISTER_KEYS.unfenced)) ?? '[]') as string[],
      fenced: JSON.parse((await storage.get(REGISTER_KEYS.fenced)) ?? '[]') as string[],
    };
    writeFileSync(join(dir, 'final.json'), JSON.stringify(final));
    run.killEverything();

    const report = checkRun(dir);
    const seconds = (Date.now() - began) / 1000;
    const command = `npm run chaos -- ${process.argv.slice(2).join(' ')}`.replace(/ -- $/, '');
    const table = renderReport(report);
    process.stdout.write(
      `\nsingleton-process chaos — ${command} (seed ${args.seed}); ${args.workers} workers, lease ${args.ttlMs} ms, ${args.phaseMs / 1000} s per phase; ${seconds.toFixed(0)} s\n\n${table}\n`,
    );
    writeFileSync(join(dir, 'report.json'), JSON.stringify({ seed: args.seed, seconds, args, report }, null, 2));
    if (report.failures.length > 0 || args.keep) progress(`histories kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
    return report.failures.length === 0 ? 0 : 1;
  } catch (error) {
    progress(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}; histories kept in ${dir}`);
    run.killEverything();
    return 1;
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`chaos: ${String(error)}\n`);
      process.exit(1);
    },
  );
}
