/**
 * Where the pieces meet user code, in real processes on real Redis (issue 10's scenarios
 * 1–5): the application's own SIGTERM listener during run(), standby after a lost lease,
 * listeners that throw under an application-level `uncaughtException` handler, and
 * overlapping run() calls on one instance. Each asserts what another process observes.
 */
import Redis from 'ioredis';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisPersister } from '../lib/persisters/RedisPersister';
import { Singleton } from '../lib/Singleton';
import type { ScenarioConfig } from './fixtures/leaseScenario';
import { type FixtureChild, killAllChildren, pollUntil, REPO_ROOT, spawnFixture, uniqueName } from './helpers/child';

const REDIS_URL = process.env.REDIS_URL as string;
const FIXTURE = join(REPO_ROOT, 'spec', 'fixtures', 'leaseScenario.ts');
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

let client: Redis;
let persister: RedisPersister;
const mine: Singleton[] = [];

beforeAll(() => {
  client = new Redis(REDIS_URL);
  persister = new RedisPersister(client);
});
afterEach(async () => {
  await Promise.all(mine.splice(0).map((s) => s.release().catch(() => undefined)));
  await killAllChildren();
});
afterAll(async () => {
  await client.quit();
});

function scenario(config: Omit<ScenarioConfig, 'redisUrl'>): FixtureChild {
  return spawnFixture(FIXTURE, { SCENARIO_CONFIG: JSON.stringify({ redisUrl: REDIS_URL, ...config }) }, config.scenario);
}

function contender(name: string, ttlMs = 1000): Singleton {
  const s = new Singleton(name, persister, { ttlMs, handleSignals: false, handleErrors: false, onLost: 'emit', logger: quiet, retryIntervalMs: 20 });
  mine.push(s);
  return s;
}

/** Takes the lock away from its holder in the store, as a store failover or an operator would. */
async function steal(name: string, by: Singleton): Promise<void> {
  await client.del(`singleton:{${name}}`);
  expect(await by.lock()).toBe(true);
}

describe('a lease and the code around it, in real processes (Redis)', () => {
  it('SIGTERM while run() works, with the application listening for SIGTERM: the work is told (shutdown) and the lock moves only after it stopped', async () => {
    const name = uniqueName('run-app-sigterm');
    const child = scenario({ name, ttlMs: 3000, scenario: 'run-with-app-sigterm', cleanupMs: 400 });
    await child.waitForEvent('working', { timeoutMs: 20_000 });
    const other = contender(name);
    const waiting = other.waitForLock({ timeoutMs: 20_000 }).then(() => Date.now());
    child.kill('SIGTERM');
    const aborted = await child.waitForEvent('aborted');
    expect(aborted.reason).toBe('shutdown');
    const stopped = await child.waitForEvent('stopped');
    const rejected = await child.waitForEvent('run-rejected');
    expect(rejected).toMatchObject({ code: 'SINGLETON_LOST', reason: 'shutdown' });
    const lockedAt = await waiting;
    // The next holder starts only after the old work stopped.
    expect(lockedAt).toBeGreaterThanOrEqual(stopped.t);
    expect(child.all('run-done')).toHaveLength(0);
    expect(child.all('app-sigterm')).toHaveLength(1);
    const after = await child.waitForEvent('after');
    expect(after.hooks).toEqual({ signals: [], errors: false });
    expect((await child.waitForExit()).code).toBe(0);
  }, 60_000);

  it('standby() with a `lost` listener: the task is told, and a new task starts only after the old one stopped', async () => {
    const name = uniqueName('standby-lost');
    const child = scenario({ name, ttlMs: 600, scenario: 'standby-lost-listened', cleanupMs: 500 });
    await child.waitForEvent('working', { where: (e) => e.label === 'task-1', timeoutMs: 20_000 });
    const thief = contender(name);
    await steal(name, thief);
    const lost = await child.waitForEvent('lost');
    expect(lost.reason).toBe('taken-over');
    const aborted = await child.waitForEvent('aborted', { where: (e) => e.label === 'task-1' });
    expect(aborted.reason).toBe('taken-over');
    await thief.release();
    const second = await child.waitForEvent('working', { where: (e) => e.label === 'task-2', timeoutMs: 10_000 });
    const firstStopped = await child.waitForEvent('stopped', { where: (e) => e.label === 'task-1' });
    expect(second.t).toBeGreaterThanOrEqual(firstStopped.t);
    // Never two tasks at work in one process: task-2 began after task-1 ended.
    expect(child.events.findIndex((e) => e.label === 'task-2')).toBeGreaterThan(child.events.indexOf(firstStopped));
  }, 60_000);

  it('standby() without a `lost` listener keeps the default policy: the process exits 70 instead of carrying on', async () => {
    const name = uniqueName('standby-default');
    const child = scenario({ name, ttlMs: 600, scenario: 'standby-lost-default' });
    await child.waitForEvent('working', { where: (e) => e.label === 'task-1', timeoutMs: 20_000 });
    await steal(name, contender(name));
    const exit = await child.waitForExit(10_000);
    expect(exit.code).toBe(70);
    expect(child.all('working').filter((e) => e.label === 'task-2')).toHaveLength(0);
  }, 60_000);

  it('standby() on the file store: a task that fails is run again after the backoff (the wait keeps the process up), and the process exits once released', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sp-standby-fails-'));
    try {
      const child = scenario({ name: uniqueName('standby-fails'), ttlMs: 2_000, scenario: 'standby-task-fails-file', dir });
      const exit = await child.waitForExit(20_000);
      expect(child.events.map((e) => e.event)).toEqual(['task', 'error', 'task', 'released', 'exit']);
      const [first, second] = child.all('task');
      expect(second.t - first.t).toBeGreaterThanOrEqual(200); // not before the backoff (retryIntervalMs)
      expect(exit.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('a `lost` listener that throws stops no renewal: the other lease of the process stays held, and the error surfaces as uncaught', async () => {
    const name = uniqueName('lost-throws');
    const child = scenario({ name, ttlMs: 500, scenario: 'lost-listener-throws' });
    await child.waitForEvent('locked', { timeoutMs: 20_000 });
    await steal(`${name}:a`, contender(`${name}:a`));
    const uncaught = await child.waitForEvent('uncaught');
    expect(uncaught.message).toBe('lost listener failed');
    // Several lease lengths later, b is still held and renewed by the child: nobody else gets it.
    const b = contender(`${name}:b`);
    const before = child.all('heartbeat').length;
    await pollUntil(() => child.all('heartbeat').length >= before + 10, { timeoutMs: 15_000, what: '10 more heartbeats' });
    expect(await b.lock()).toBe(false);
    const last = child.all('heartbeat').at(-1) as unknown as { b: string; renewedB: number };
    expect(last.b).toBe('locked');
    expect(last.renewedB).toBeGreaterThan(3);
    expect(child.all('b-lost')).toHaveLength(0);
  }, 60_000);

  it('an `expired` listener that throws wedges nothing: release works, the lock is free, and it locks again', async () => {
    const name = uniqueName('expired-throws');
    const child = scenario({ name, ttlMs: 1000, scenario: 'expired-listener-throws' });
    const first = await child.waitForEvent('first-lock', { timeoutMs: 20_000 });
    expect(first).toMatchObject({ locked: true, state: 'locked' });
    expect((await child.waitForEvent('uncaught')).message).toBe('expired listener failed');
    expect(await child.waitForEvent('released')).toMatchObject({ state: 'released', holder: null });
    expect(await child.waitForEvent('second-lock')).toMatchObject({ locked: true, state: 'locked' });
    const after = await child.waitForEvent('after');
    expect(after).toMatchObject({ state: 'released', hooks: { signals: [], errors: false } });
    expect((await child.waitForExit()).code).toBe(0);
  }, 60_000);

  it('two overlapping run() on one instance: the second answers conflict naming this process, a waiting one runs after; never two at once', async () => {
    const name = uniqueName('overlap');
    // A lease long enough that no renewal on a loaded machine can be late (this is about overlap, not expiry).
    const child = scenario({ name, ttlMs: 5000, scenario: 'overlapping-runs' });
    const second = await child.waitForEvent('second', { timeoutMs: 20_000 });
    expect(second).toMatchObject({ status: 'conflict', holderPid: child.pid });
    expect(child.all('second-ran-concurrently')).toHaveLength(0);
    // While the third run works (after the first released), nobody else can take the lock.
    await child.waitForEvent('third-running');
    expect(await contender(name).lock()).toBe(false);
    const firstDone = await child.waitForEvent('first-done');
    const thirdRunning = child.all('third-running')[0];
    expect(thirdRunning.t).toBeGreaterThanOrEqual(firstDone.t);
    expect(await child.waitForEvent('third')).toMatchObject({ result: { status: 'done', value: 3 } });
    expect(await child.waitForEvent('after')).toMatchObject({ state: 'released', hooks: { signals: [], errors: false } });
    // And afterwards another process can lock.
    await pollUntil(async () => (await persister.inspect(name)) === null, { what: 'lock free' });
    expect(await contender(name).lock()).toBe(true);
  }, 60_000);
});
