/**
 * Runs every example for real, as the README tells users to, and checks what it
 * prints: on the file store (no server) and on the Redis the global setup
 * started. So the examples never rot.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { FilePersister } from '../lib/persisters/FilePersister';
import { persisterFromUrl } from '../lib/persisters/fromUrl';
import type { Persister } from '../lib/persisters/Persister';

const REPO_ROOT = resolve(__dirname, '..');
const EXAMPLES = join(REPO_ROOT, 'examples');

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<ExampleRun>();

/** One example running in its own process, with everything it printed. */
class ExampleRun {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  exit: Exit | undefined;
  private readonly exited: Promise<Exit>;
  private readonly listeners = new Set<() => void>();

  constructor(script: string, args: string[]) {
    const env = { ...process.env };
    delete env.SINGLETON_STORE; // the default store is the file store unless a test passes --store
    this.child = spawn(process.execPath, ['--import', 'tsx', join(EXAMPLES, script), ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      for (const l of this.listeners) l();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolveExit) => {
      this.child.once('close', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        for (const l of this.listeners) l();
        resolveExit(this.exit);
      });
    });
    live.add(this);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Everything printed so far, for failure messages. */
  describe(): string {
    return `--- stdout:\n${this.stdout}\n--- stderr:\n${this.stderr.slice(-3000)}`;
  }

  /** Resolves with the first match of `pattern` on stdout (already printed or to come). */
  waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return new Promise((resolveMatch, reject) => {
      const check = () => {
        const match = pattern.exec(this.stdout);
        if (match) return done(() => resolveMatch(match));
        if (this.exit) done(() => reject(new Error(`exited (${JSON.stringify(this.exit)}) before printing ${pattern}\n${this.describe()}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`did not print ${pattern} within ${timeoutMs} ms\n${this.describe()}`))), timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        settle();
      };
      this.listeners.add(check);
      check();
    });
  }

  /** How it ended; rejects if it still runs after `timeoutMs`. */
  async ended(timeoutMs = 30_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms\n${this.describe()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function run(script: string, ...args: string[]): ExampleRun {
  return new ExampleRun(script, args);
}

function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

afterEach(async () => {
  // No example outlives its test (the demo's own instances stop when it dies: their stdin closes).
  const running = [...live];
  for (const r of running) r.child.kill('SIGKILL');
  await Promise.all(running.map((r) => r.ended(10_000).catch(() => undefined)));
});

const redisUrl = (): string => {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set: the jest global setup should have started redis-server');
  return url;
};

const STORES: Array<{ label: string; args: () => string[]; persister: () => Promise<Persister> }> = [
  { label: 'file store (default)', args: () => [], persister: async () => new FilePersister() },
  { label: 'Redis (--store)', args: () => ['--store', redisUrl()], persister: () => persisterFromUrl(redisUrl()) },
];

describe('npm run demo (examples/demo.ts)', () => {
  test('file store, no server: fails over twice, measures both, never two active, exits 0 and cleans up', async () => {
    const demo = run('demo.ts');
    const exit = await demo.ended(90_000);
    if (exit.code !== 0) throw new Error(`demo exited ${JSON.stringify(exit)}\n${demo.describe()}`);
    expect(demo.stdout).toMatch(/standing by; the leader is [ABC]/);
    expect(demo.stdout).toMatch(/graceful hand-over \(SIGTERM\)\s+\d+\.\d ms/);
    expect(demo.stdout).toMatch(/crash takeover \(SIGKILL\)\s+\d+\.\d ms/);
    expect(demo.stdout).toContain('never two active');
    expect(demo.stdout).toMatch(/fencing tokens\s+increasing/);
    // The demo's private store directory is gone.
    const dir = /file store in (\S+) \(no server needed\)/.exec(demo.stdout)?.[1];
    expect(dir).toBeDefined();
    expect(existsSync(dir as string)).toBe(false);
  }, 120_000);

  test('Redis via --store: the crash takeover waits out the lease (about the ttl)', async () => {
    const demo = run('demo.ts', '--store', redisUrl());
    const exit = await demo.ended(90_000);
    if (exit.code !== 0) throw new Error(`demo exited ${JSON.stringify(exit)}\n${demo.describe()}`);
    expect(demo.stdout).toMatch(/graceful hand-over \(SIGTERM\)\s+\d+\.\d ms/);
    const crash = Number(/crash takeover \(SIGKILL\)\s+(\d+\.\d) ms/.exec(demo.stdout)?.[1]);
    // Lease 2000 ms, renewed every ~667 ms: the dead holder's lease runs out 1.3–2 s after the kill.
    expect(crash).toBeGreaterThan(1_000);
    expect(crash).toBeLessThan(2_000 + 1_500);
    expect(demo.stdout).toContain('never two active');
  }, 120_000);

  test('a bad --store is a clear message and exit 1', async () => {
    const demo = run('demo.ts', '--store', 'ftp://nowhere');
    const exit = await demo.ended(60_000);
    expect(exit.code).toBe(1);
    expect(demo.stderr).toMatch(/demo FAILED: bad --store: .*not supported/);
  }, 60_000);
});

describe.each(STORES)('examples on the $label', ({ args, persister }) => {
  test('cron-job.ts started twice: one runs the job, the other names the holder and exits 0', async () => {
    const name = uniqueName('example-cron');
    const first = run('cron-job.ts', '--name', name, '--job-ms', '4000', ...args());
    await first.waitFor(/running the job under/);
    const second = run('cron-job.ts', '--name', name, ...args());
    expect(await second.ended()).toEqual({ code: 0, signal: null });
    expect(second.stdout).toMatch(new RegExp(`already running elsewhere: .*pid ${first.pid} on`));
    expect(second.stdout).not.toContain('running the job');
    expect(await first.ended()).toEqual({ code: 0, signal: null });
    expect(first.stdout).toContain('done: report written; lock released');
  }, 60_000);

  test('daemon.ts --run-for: works while active (fencing token on each tick), releases and ends by itself', async () => {
    const daemon = run('daemon.ts', '--name', uniqueName('example-daemon'), '--run-for', '2500', ...args());
    expect(await daemon.ended()).toEqual({ code: 0, signal: null });
    const token = /active: holding "[^"]+" with fencing token (\d+)/.exec(daemon.stdout)?.[1];
    expect(token).toBeDefined();
    expect(daemon.stdout).toContain(`working (tick 1, fencing token ${token})`);
    expect(daemon.stdout).toMatch(/released the lock\n.*bye/);
  }, 60_000);

  test('daemon.ts: Ctrl-C (SIGINT) releases the lock through the process hooks', async () => {
    const name = uniqueName('example-daemon');
    const daemon = run('daemon.ts', '--name', name, ...args());
    await daemon.waitFor(/working \(tick 1/);
    daemon.child.kill('SIGINT');
    expect(await daemon.ended()).toEqual({ code: null, signal: 'SIGINT' });
    expect(daemon.stdout).toContain('released the lock');
    const store = await persister();
    try {
      expect(await store.inspect(name)).toBeNull();
    } finally {
      await store.close?.();
    }
  }, 60_000);

  test('standby.ts: one active, the other stands by knowing the leader, then takes over', async () => {
    const name = uniqueName('example-standby');
    const a = run('standby.ts', '--name', name, '--run-for', '4000', ...args());
    await a.waitFor(/active: this replica runs the service/);
    const b = run('standby.ts', '--name', name, ...args());
    await b.waitFor(new RegExp(`standing by, leader is ${hostname()}:${a.pid} \\(pid ${a.pid}`));
    expect(await a.ended()).toEqual({ code: 0, signal: null });
    expect(a.stdout).toContain('bye');
    await b.waitFor(/active: this replica runs the service/);
    b.child.kill('SIGTERM'); // as a deployment stops it: the lock is released, the process dies of the signal
    expect(await b.ended()).toEqual({ code: null, signal: 'SIGTERM' });
  }, 60_000);

  test("fenced-writes.ts: the stalled holder's stale write is refused", async () => {
    const example = run('fenced-writes.ts', '--name', uniqueName('example-fenced'), ...args());
    expect(await example.ended()).toEqual({ code: 0, signal: null });
    expect(example.stdout).toMatch(/A's lease is lost/);
    expect(example.stdout).toMatch(/accepted B's write "balance = 80"/);
    expect(example.stdout).toMatch(/REFUSED A's write "balance = 150"/);
    expect(example.stdout).toContain('final value: "balance = 80"');
  }, 60_000);

  test('metrics.ts: the diagnostics channel becomes Prometheus counters and a store-latency histogram', async () => {
    const name = uniqueName('example-metrics');
    const example = run('metrics.ts', '--name', name, ...args());
    expect(await example.ended()).toEqual({ code: 0, signal: null });
    const sample = (metric: string) => Number(new RegExp(`^${metric} (\\S+)$`, 'm').exec(example.stdout)?.[1]);
    expect(sample(`singleton_events_total\\{lock="${name}",event="locked",reason=""\\}`)).toBe(3);
    expect(sample(`singleton_events_total\\{lock="${name}",event="conflict",reason=""\\}`)).toBe(3);
    expect(sample(`singleton_events_total\\{lock="${name}",event="released",reason=""\\}`)).toBe(3);
    expect(sample('singleton_store_seconds_count\\{event="locked"\\}')).toBe(3);
    expect(sample('singleton_store_seconds_count\\{event="released"\\}')).toBe(3);
    expect(sample('singleton_store_seconds_count\\{event="renewed"\\}')).toBeGreaterThan(0);
  }, 60_000);
});
