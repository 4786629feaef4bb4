import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { PersisterError } from '../../lib/errors';
import { FilePersister } from '../../lib/persisters/FilePersister';
import { selfIdentity } from '../../lib/persisters/file/liveness';
import { lockPaths } from '../../lib/persisters/file/names';
import type { LockInfo, OwnerInfo } from '../../lib/persisters/Persister';
import { describePersister, newToken, waitUntil } from './conformance';

describePersister('FilePersister', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sp-file-conf-'));
  const dir = join(root, 'store');
  const persister = new FilePersister({ dir });
  return {
    persister,
    cleanup: async () => {
      await persister.close();
      rmSync(root, { recursive: true, force: true });
    },
    // The file store's data loss: a tmp cleaner wiping the directory. The fence must still increase.
    restart: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

const REPO = resolve(__dirname, '../..');
const FIXTURE = join(REPO, 'spec/fixtures/fileContender.ts');
const me: OwnerInfo = { owner: 'spec', hostname: hostname(), pid: process.pid };

/** A fixture child speaking JSON lines on stdout. */
class Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly messages: Array<Record<string, unknown>> = [];
  readonly exited: Promise<number | null>;
  private stderr = '';

  constructor(args: string[]) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], { cwd: REPO });
    createInterface({ input: this.proc.stdout }).on('line', (line) => this.messages.push(JSON.parse(line) as Record<string, unknown>));
    this.proc.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((done) => this.proc.on('exit', (code) => done(code)));
  }

  get pid(): number {
    return this.proc.pid as number;
  }

  /** The first message with `key`, waiting up to `timeoutMs`. */
  async message(key: string, timeoutMs = 15_000, from = 0): Promise<Record<string, unknown>> {
    await waitUntil(() => this.messages.slice(from).some((m) => key in m) || this.proc.exitCode !== null, timeoutMs, `a "${key}" message from ${this.pid}`);
    const found = this.messages.slice(from).find((m) => key in m);
    if (!found) throw new Error(`fixture ${this.pid} exited (${this.proc.exitCode}) without "${key}": ${this.stderr}`);
    return found;
  }

  send(line: string): void {
    this.proc.stdin.write(`${line}\n`);
  }
}

/** Acquires and releases `name`: the directory and a released record exist afterwards. */
async function prime(p: FilePersister, name: string): Promise<void> {
  const token = newToken();
  expect((await p.acquire({ name, token, ttlMs: 10_000, owner: me })).acquired).toBe(true);
  expect(await p.release({ name, token })).toBe(true);
}

describe('FilePersister (one host, real files, real processes)', () => {
  let root: string;
  let dir: string;
  let children: Child[];
  let persisters: FilePersister[];

  const child = (...args: string[]) => {
    const c = new Child(args);
    children.push(c);
    return c;
  };
  const make = (options: ConstructorParameters<typeof FilePersister>[0] = { dir }) => {
    const p = new FilePersister(options);
    persisters.push(p);
    return p;
  };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'sp-file-'));
    dir = join(root, 'store');
    children = [];
    persisters = [];
  });
  afterEach(async () => {
    for (const c of children) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
      await c.exited;
    }
    for (const p of persisters) await p.close();
    rmSync(root, { recursive: true, force: true });
  });

  describe('construction', () => {
    it('rejects bad options with a TypeError or RangeError naming the value', () => {
      expect(() => new FilePersister({ dir: 42 as unknown as string })).toThrow(/`dir`.*42 \(number\)/);
      expect(() => new FilePersister({ dir: '' })).toThrow(TypeError);
      expect(() => new FilePersister({ dir: 'a\0b' })).toThrow(TypeError);
      expect(() => new FilePersister(null as unknown as {})).toThrow(/`options`/);
      expect(() => new FilePersister({ pollIntervalMs: '5' as unknown as number })).toThrow(TypeError);
      expect(() => new FilePersister({ pollIntervalMs: 1 })).toThrow(RangeError);
    });

    it('defaults to <tmpdir>/singleton-process and resolves relative directories', () => {
      expect(new FilePersister().dir).toBe(join(tmpdir(), 'singleton-process'));
      expect(new FilePersister({ dir: 'locks' }).dir).toBe(resolve('locks'));
      expect(new FilePersister().capabilities).toEqual({ serverClock: true, notify: true, fencing: true, persistent: true, list: true });
    });

    it('creates its directory (0o700, with parents) on first use', async () => {
      const nested = join(dir, 'a', 'b');
      const p = make({ dir: nested });
      expect(existsSync(nested)).toBe(false);
      expect((await p.acquire({ name: 'x', token: newToken(), ttlMs: 10_000, owner: me })).acquired).toBe(true);
      expect(statSync(nested).mode & 0o777).toBe(0o700);
    });

    it('reports an unusable directory as a PersisterError naming the path and what to do', async () => {
      const file = join(root, 'not-a-dir');
      writeFileSync(file, '');
      const p = make({ dir: join(file, 'store') });
      const failure = p.acquire({ name: 'x', token: newToken(), ttlMs: 10_000, owner: me });
      await expect(failure).rejects.toBeInstanceOf(PersisterError);
      await expect(failure).rejects.toThrow(new RegExp(`${file}.*not a directory`));
    });
  });

  describe('files', () => {
    it('encodes every name into one safe file name inside the directory', async () => {
      const p = make();
      const names = ['../x', '../../etc/passwd', 'a/b', '..', '.', '-rf', 'Case', 'case', 'ünïcødé 名前 🔒/..', 'y'.repeat(200), '名'.repeat(200)];
      const leases = new Map<string, string>();
      for (const name of names) {
        const token = newToken();
        const r = await p.acquire({ name, token, ttlMs: 10_000, owner: me });
        expect(r.acquired).toBe(true);
        leases.set(name, token);
      }
      expect(readdirSync(root)).toEqual(['store']); // nothing escaped
      const files = readdirSync(dir);
      expect(files).toHaveLength(names.length); // one record per name, no left-over mutex or temp file
      for (const file of files) {
        expect(file).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]*\.[0-9a-f]{32}\.lock$/);
        expect(Buffer.byteLength(file)).toBeLessThanOrEqual(255);
      }
      for (const name of names) expect((await p.inspect(name))?.name).toBe(name);
      // No file holds a token: a reader of the directory learns nothing it could release with.
      const text = files.map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
      for (const token of leases.values()) expect(text.includes(token)).toBe(false);
    });

    it('keeps leases across persister instances (another process sees the same files)', async () => {
      const a = make();
      const token = newToken();
      const held = await a.acquire({ name: 'shared', token, ttlMs: 10_000, owner: me });
      const b = make();
      expect((await b.inspect('shared'))?.fencingToken).toBe(held.acquired && held.lease.fencingToken);
      expect((await b.acquire({ name: 'shared', token: newToken(), ttlMs: 10_000, owner: me })).acquired).toBe(false);
      expect(await b.release({ name: 'shared', token })).toBe(true);
      expect(await a.inspect('shared')).toBeNull();
    });

    it('reads a torn or foreign record as free and seeds the fence from the clock', async () => {
      const p = make();
      await p.acquire({ name: 'torn', token: newToken(), ttlMs: 10_000, owner: me });
      writeFileSync(lockPaths(dir, 'torn').state, '{"v":1,"name":"to');
      const before = Date.now() * 1000;
      const r = await p.acquire({ name: 'torn', token: newToken(), ttlMs: 10_000, owner: me });
      expect(r.acquired).toBe(true);
      if (r.acquired) expect(Number(r.lease.fencingToken)).toBeGreaterThanOrEqual(before);
    });
  });

  describe('stale mutex', () => {
    /** The pid of a process that has exited (and was reaped). */
    const deadPid = () => spawnSync(process.execPath, ['-e', '']).pid as number;

    it('breaks at once a mutex whose process is dead, and removes its temp files', async () => {
      const p = make();
      await prime(p, 'm'); // creates the directory and a (released) record
      const paths = lockPaths(dir, 'm');
      const pid = deadPid();
      symlinkSync(JSON.stringify({ ...selfIdentity(), pid, start: '', at: Date.now(), n: 'dead' }), paths.mutex);
      const temp = join(dir, `${paths.key}.${pid}.abcdef.tmp`);
      writeFileSync(temp, '{');
      const t0 = performance.now();
      const r = await p.acquire({ name: 'm', token: newToken(), ttlMs: 10_000, owner: me });
      expect(r.acquired).toBe(true);
      expect(performance.now() - t0).toBeLessThan(1_000);
      expect(existsSync(paths.mutex)).toBe(false);
      expect(existsSync(temp)).toBe(false);
    });

    it('breaks a mutex older than the hard bound even when its holder seems alive, or is garbage', async () => {
      const p = make();
      await prime(p, 'old');
      const paths = lockPaths(dir, 'old');
      symlinkSync(JSON.stringify({ ...selfIdentity(), at: Date.now() - 60_000, n: 'stuck' }), paths.mutex);
      const stuck = newToken();
      expect((await p.acquire({ name: 'old', token: stuck, ttlMs: 10_000, owner: me })).acquired).toBe(true);
      expect(await p.release({ name: 'old', token: stuck })).toBe(true);
      writeFileSync(paths.mutex, 'garbage'); // a plain file, as on filesystems without symlinks
      const past = new Date(Date.now() - 60_000);
      utimesSync(paths.mutex, past, past);
      expect((await p.acquire({ name: 'old', token: newToken(), ttlMs: 10_000, owner: me })).acquired).toBe(true);
      expect(existsSync(paths.mutex)).toBe(false);
    });

    it('waits for a fresh mutex of a live process instead of breaking it', async () => {
      const p = make();
      await prime(p, 'busy');
      const paths = lockPaths(dir, 'busy');
      symlinkSync(JSON.stringify({ ...selfIdentity(), at: Date.now(), n: 'live' }), paths.mutex);
      const order: string[] = [];
      const pending = p.acquire({ name: 'busy', token: newToken(), ttlMs: 10_000, owner: me }).then((r) => {
        order.push('acquired');
        return r;
      });
      await new Promise((done) => setTimeout(done, 100));
      order.push('mutex released');
      rmSync(paths.mutex);
      expect((await pending).acquired).toBe(true);
      expect(order).toEqual(['mutex released', 'acquired']);
    });
  });

  describe('processes', () => {
    it('guardLease: a lease whose holder was killed stays held while its guard process runs, and is free once the guard is gone too', async () => {
      const p = make({ dir, pollIntervalMs: 50 });
      const guard = spawn('sleep', ['60']);
      try {
        const holder = child('hold', dir, '30000', 'guarded');
        const { pid } = (await holder.message('fences')) as { pid: number };
        holder.send(`guard ${guard.pid}`);
        expect(await holder.message('guarded')).toEqual({ guarded: { guarded: true } });
        holder.proc.kill('SIGKILL');
        await new Promise((resolve) => holder.proc.once('exit', resolve));
        let notified = 0;
        const stop = await p.watch('guarded', () => notified++);
        await new Promise((resolve) => setTimeout(resolve, 200)); // several polls of the watcher
        expect((await p.inspect('guarded'))?.pid).toBe(pid);
        expect((await p.acquire({ name: 'guarded', token: newToken(), ttlMs: 10_000, owner: me })).acquired).toBe(false);
        expect(notified).toBe(0);
        guard.kill('SIGKILL');
        await waitUntil(() => notified === 1, 2_000, 'watch notification once the guard is gone');
        const took = await p.acquire({ name: 'guarded', token: newToken(), ttlMs: 10_000, owner: me });
        expect(took.acquired && took.expired?.pid).toBe(pid);
        await stop();
      } finally {
        guard.kill('SIGKILL');
      }
    });

    it('guardLease refuses a lease this process does not hold, and a process that does not run', async () => {
      const p = make();
      const token = newToken();
      expect(await p.guardLease('unheld', process.pid)).toBe(false);
      expect((await p.acquire({ name: 'held-here', token, ttlMs: 10_000, owner: me })).acquired).toBe(true);
      expect(await p.guardLease('held-here', 2 ** 22 + 12345)).toBe(false); // above pid_max: no such process
      expect(await p.guardLease('held-here', process.pid)).toBe(true);
      await p.release({ name: 'held-here', token });
    });

    it('takes over at once from a holder killed with SIGKILL (ttl 30 s) and reports it as expired', async () => {
      const p = make({ dir, pollIntervalMs: 50 });
      const holder = child('hold', dir, '30000', 'job');
      const { pid, fences } = (await holder.message('fences')) as { pid: number; fences: Record<string, string> };
      expect((await p.inspect('job'))?.pid).toBe(pid);
      let notified = 0;
      const stop = await p.watch('job', () => notified++);
      const before = await p.acquire({ name: 'job', token: newToken(), ttlMs: 10_000, owner: me });
      expect(before.acquired).toBe(false);

      const t0 = performance.now();
      holder.proc.kill('SIGKILL');
      // A watcher learns of the death by polling (a death writes no file), before anyone takes over.
      await waitUntil(() => notified === 1, 2_000, 'watch notification of the dead holder');
      const notifiedMs = performance.now() - t0;
      let took: { lease: LockInfo; expired?: LockInfo } | undefined;
      await waitUntil(async () => {
        const r = await p.acquire({ name: 'job', token: newToken(), ttlMs: 10_000, owner: me });
        if (r.acquired) took = r;
        return r.acquired;
      }, 2_000, 'takeover after kill -9');
      const takeoverMs = performance.now() - t0;
      expect(notifiedMs).toBeLessThan(2_000);
      expect(takeoverMs).toBeLessThan(2_000);
      expect(took?.expired?.pid).toBe(pid);
      expect(String(took?.expired?.fencingToken)).toBe(fences.job);
      expect(BigInt(took!.lease.fencingToken) > BigInt(fences.job)).toBe(true);
      await stop();
    });

    it('lets exactly one of 6 processes racing for a dead holder’s lease win, round after round', async () => {
      const rounds = ['1', '2', '3', '4', '5', '6', '7', '8'];
      const holder = child('hold', dir, '30000', ...rounds.map((r) => `race-${r}`));
      const racers = Array.from({ length: 6 }, () => child('takeover', dir, 'race'));
      const { pid: deadPid } = (await holder.message('fences')) as { pid: number };
      await Promise.all(racers.map((r) => r.message('ready')));
      holder.proc.kill('SIGKILL');
      await holder.exited;
      for (const round of rounds) {
        // From round 3 on, the dead holder also left its mutex behind: all 6 must break it, and one win.
        if (Number(round) >= 3) {
          const identity = { ...selfIdentity(), pid: deadPid, start: '', at: Date.now(), n: `r${round}` };
          symlinkSync(JSON.stringify(identity), lockPaths(dir, `race-${round}`).mutex);
        }
        const from = racers.map((r) => r.messages.length);
        for (const r of racers) r.send(`go ${round}`);
        const results = await Promise.all(racers.map((r, i) => r.message('round', 15_000, from[i])));
        const winners = results.filter((m) => m.acquired === true);
        expect(winners).toHaveLength(1);
        expect(winners[0].expiredPid).toBe(deadPid);
        for (const loser of results.filter((m) => m.acquired === false)) {
          expect(loser.fence).toBe(winners[0].fence);
          expect(loser.holderPid).toBe(winners[0].pid);
        }
      }
      expect(readdirSync(dir).filter((f) => !f.endsWith('.lock'))).toEqual([]); // mutexes broken, no temp files left
    });

    it('keeps 6 processes contending for seconds mutually exclusive, with strictly increasing fences', async () => {
      const log = join(root, 'critical.log');
      const contenders = Array.from({ length: 6 }, () => child('contend', dir, 'hot', log, '3000', '5000'));
      await Promise.all(contenders.map((c) => c.message('ready')));
      for (const c of contenders) c.send('go');
      const summaries = (await Promise.all(contenders.map((c) => c.message('wins', 20_000)))) as Array<{
        pid: number;
        wins: number;
        errors: string[];
        refusedReleases: number;
        acquireP50Ms: number;
        releaseP50Ms: number;
      }>;
      const lines = readFileSync(log, 'utf8').trim().split('\n');
      let last = 0n;
      const winners = new Set<number>();
      for (let i = 0; i < lines.length; i += 2) {
        const [startWord, fence, pid] = lines[i].split(' ');
        // Each critical section is "start f p" immediately followed by its own "end f p": no overlap.
        expect([startWord, lines[i + 1]]).toEqual(['start', `end ${fence} ${pid}`]);
        expect(BigInt(fence) > last).toBe(true);
        last = BigInt(fence);
        winners.add(Number(pid));
      }
      for (const s of summaries) {
        expect(s.errors).toEqual([]);
        expect(s.refusedReleases).toBe(0);
        expect(winners.has(s.pid)).toBe(true);
      }
      expect(lines.length / 2).toBe(summaries.reduce((n, s) => n + s.wins, 0));
    }, 45_000);

    it('notifies a watcher when another process releases (fs.watch, no polling needed)', async () => {
      const p = make({ dir, pollIntervalMs: 60_000 });
      const holder = child('hold', dir, '30000', 'w');
      await holder.message('fences');
      let notifiedAt = 0;
      const stop = await p.watch('w', () => (notifiedAt = performance.now()));
      const t0 = performance.now();
      holder.send('release');
      expect((await holder.message('released')).released).toEqual({ w: true });
      await waitUntil(() => notifiedAt > 0, 2_000, 'release notification');
      expect(notifiedAt - t0).toBeLessThan(2_000);
      await stop();
    });

    it('never keeps the process alive, and leaves no watcher or timer behind after unsubscribe and close', async () => {
      const refed = () => process.getActiveResourcesInfo().filter((r) => r === 'FSEventWrap' || r === 'Timeout').length;
      const p = make();
      const internals = () => p['watcher'] as unknown as { fsWatcher?: unknown; timer?: unknown };
      await prime(p, 'h');
      const before = refed();
      const stopA = await p.watch('h', () => undefined);
      const stopB = await p.watch('h2', () => undefined);
      expect(internals().fsWatcher).toBeDefined();
      expect(internals().timer).toBeDefined();
      expect(refed()).toBe(before); // unref()-ed: watching alone never holds the process open
      await stopA();
      expect(internals().timer).toBeDefined();
      await stopB();
      expect(internals()).toEqual(expect.objectContaining({ fsWatcher: undefined, timer: undefined }));
      await p.watch('h', () => undefined);
      await p.close();
      expect(internals()).toEqual(expect.objectContaining({ fsWatcher: undefined, timer: undefined }));
    });
  });
});
