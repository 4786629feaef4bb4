/**
 * `singleton-run release --force` end to end, against the file store and a real
 * Redis: the real CLI evicts a real holder process (a `singleton-run` running a
 * command, and a `Singleton.run()`), which is told `lost` (`taken-over`) at its
 * next renewal; the next holder's fencing token is higher.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CHILD, killAllCli, lines, ROOT, runCli, startCli, until, waitForChildEvent } from './cliHarness';

const stores: Array<[string, () => { url: string; cleanup(): void }]> = [
  [
    'file',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'singleton-force-spec-'));
      return { url: pathToFileURL(join(dir, 'locks')).href, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
    },
  ],
  ['redis', () => ({ url: process.env.REDIS_URL as string, cleanup: () => undefined })],
];

/** The `Singleton.run()` fixture in a child process, its JSON lines collected. */
class RunHolder {
  readonly events: Array<Record<string, unknown> & { event: string; t: number }> = [];
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;

  constructor(env: Record<string, string>) {
    this.process = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'spec', 'fixtures', 'runHolder.ts')], {
      cwd: ROOT,
      env: { ...process.env, SINGLETON_LOG_LEVEL: 'error', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buffer = '';
    this.process.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk;
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const line of parts) if (line.trim()) this.events.push(JSON.parse(line) as RunHolder['events'][number]);
    });
    this.exited = new Promise((resolve) => this.process.once('close', (code) => resolve(code)));
  }

  async next(event: string): Promise<Record<string, unknown> & { t: number }> {
    await until(() => this.events.some((e) => e.event === event), `run holder event "${event}"`, { timeoutMs: 15_000 });
    return this.events.find((e) => e.event === event) as Record<string, unknown> & { t: number };
  }
}

let seq = 0;

describe.each(stores)('singleton-run release --force with the %s store', (kind, makeStore) => {
  let store: { url: string; cleanup(): void };
  let work: string;
  let name: string;
  const holders: RunHolder[] = [];

  beforeEach(() => {
    store = makeStore();
    work = mkdtempSync(join(tmpdir(), 'singleton-force-work-'));
    name = `force-${kind}-${process.pid}-${Date.now().toString(36)}-${(seq += 1)}`;
  });

  afterEach(async () => {
    await killAllCli();
    for (const h of holders.splice(0)) h.process.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
    store.cleanup();
  });

  it('evicts a singleton-run holder: it is told lost (taken-over), stops its command, exits 70; the next fence is higher', async () => {
    const log = join(work, 'first.log');
    const holder = startCli(['--name', name, '--store', store.url, '--ttl', '1500', '--', process.execPath, CHILD, log, '--sleep', '60000']);
    const started = await waitForChildEvent(log, 'start');
    const firstFence = BigInt(started.env?.SINGLETON_FENCING_TOKEN ?? '0');

    const released = await runCli(['release', '--force', '--name', name, '--store', store.url]);
    expect(released.code).toBe(0);
    const audit = lines(released.stdout);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toContain(`release --force of "${name}"`);
    expect(audit[0]).toContain(`evicted ${hostname()}:${holder.pid}`);
    expect(audit[0]).toContain(`pid ${holder.pid} on`);
    expect(audit[0]).toContain(`fencing token ${firstFence}`);
    const logged = lines(released.stderr).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 40, audit: 'release --force', lock: name, evicted: { pid: holder.pid, fencingToken: String(firstFence) } });

    const ended = await holder.wait(15_000);
    expect(ended.code).toBe(70);
    expect(ended.stderr).toMatch(new RegExp(`lost lock "${name}" \\(taken-over, freed by release --force( \\(pid \\d+ on [^)]+\\))? at \\d{4}-`));
    expect(ended.stderr).not.toMatch(/now held by/); // nobody holds it: the lock was freed
    expect(ended.at - released.at).toBeLessThan(5_000); // told at its next renewal (every 500 ms here)

    const log2 = join(work, 'second.log');
    const next = await runCli(['--name', name, '--store', store.url, '--', process.execPath, CHILD, log2]);
    expect(next.code).toBe(0);
    const secondFence = BigInt((await waitForChildEvent(log2, 'start')).env?.SINGLETON_FENCING_TOKEN ?? '0');
    expect(secondFence > firstFence).toBe(true);
  }, 90_000); // three CLI runs, each starting Node and tsx

  it("evicts a Singleton.run(): its signal aborts with taken-over and run() rejects with a LockLostError", async () => {
    const holder = new RunHolder({ STORE_URL: store.url, NAME: name, TTL_MS: '1500' });
    holders.push(holder);
    const running = await holder.next('running');
    const released = await runCli(['release', '--force', '--name', name, '--store', store.url]);
    expect(released.code).toBe(0);
    expect(released.stdout).toContain(`run-holder-${holder.process.pid}`);
    const lost = await holder.next('lost');
    const aborted = await holder.next('aborted');
    const rejected = await holder.next('run-rejected');
    expect(lost).toMatchObject({ reason: 'taken-over', holderOwner: 'release --force' });
    expect(aborted).toMatchObject({ errorName: 'LockLostError', reason: 'taken-over' });
    expect(rejected).toMatchObject({ errorName: 'LockLostError', reason: 'taken-over', isLockLost: true });
    expect(lost.t).toBeLessThanOrEqual(aborted.t);
    expect(await holder.exited).toBe(0);

    const next = new RunHolder({ STORE_URL: store.url, NAME: name, TTL_MS: '1500' });
    holders.push(next);
    const again = await next.next('running');
    expect(BigInt(again.fencingToken as string) > BigInt(running.fencingToken as string)).toBe(true);
    next.process.kill('SIGTERM');
  }, 90_000);

  it('says so, and exits 0, when the lock was not held', async () => {
    const r = await runCli(['release', '--force', '--name', name, '--store', store.url]);
    expect(r.code).toBe(0);
    expect(lines(r.stdout)).toEqual([expect.stringContaining('it was not held, nothing released')]);
  });
});

describe('singleton-run release without --force', () => {
  afterEach(killAllCli);

  it('is a usage error: 64, at most two lines pointing to --help', async () => {
    const r = await runCli(['release', '--name', 'anything']);
    expect(r.code).toBe(64);
    expect(r.stdout).toBe('');
    const err = lines(r.stderr);
    expect(err.length).toBeLessThanOrEqual(2);
    expect(err[0]).toMatch(/--force/);
    expect(err[err.length - 1]).toMatch(/--help/);
  });

  it('--force without --name is a usage error too', async () => {
    const r = await runCli(['release', '--force']);
    expect(r.code).toBe(64);
    expect(lines(r.stderr)[0]).toMatch(/--name/);
  });
});
