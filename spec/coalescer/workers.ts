/**
 * The Coalescer across real processes, whatever the store: worker processes
 * (spec/fixtures/coalescerWorker.ts) that each make `config.calls` concurrent calls, and the
 * scenarios every store must pass — fn runs once for all of them; the runner killed with
 * SIGKILL mid-run is replaced by exactly one waiter, and every caller still gets its result.
 */
import { join } from 'node:path';
import type { CoalescerWorkerConfig } from '../fixtures/coalescerWorker';
import { type FixtureChild, REPO_ROOT, spawnFixture } from '../helpers/child';

const WORKER = join(REPO_ROOT, 'spec', 'fixtures', 'coalescerWorker.ts');

/** How many times fn ran for `config` (the worker counts its runs in the store). */
export type RunCount = (config: CoalescerWorkerConfig) => Promise<number>;

/** Starts `n` workers on `config`. */
export function spawnWorkers(n: number, config: CoalescerWorkerConfig): FixtureChild[] {
  return Array.from({ length: n }, (_, i) =>
    spawnFixture(WORKER, { COALESCER_CONFIG: JSON.stringify(config) }, `worker ${i + 1}/${n} (${config.store})`),
  );
}

/** Waits for each worker to exit 0 having printed `done` once. */
export async function finish(children: FixtureChild[]): Promise<void> {
  for (const child of children) {
    const exit = await child.waitForExit(30_000);
    if (exit.code !== 0) throw new Error(`${child.label} exited with ${exit.code ?? exit.signal}\n${child.describe()}`);
    expect(child.all('done')).toHaveLength(1);
  }
}

/** `n` workers in `config.mode` 'value': fn runs once, and all `n × calls` callers get its value. */
export async function expectOneRunForAll(n: number, config: CoalescerWorkerConfig, runs: RunCount): Promise<void> {
  const children = spawnWorkers(n, config);
  await finish(children);
  expect(await runs(config)).toBe(1);
  const values = children.flatMap((c) => c.all('result').map((e) => e.value));
  expect(values).toHaveLength(n * config.calls);
  const runners = children.filter((c) => c.all('running').length > 0);
  expect(runners).toHaveLength(1);
  for (const v of values) expect(v).toEqual({ run: 1, pid: runners[0].pid, at: '1970-01-01T00:00:00.000Z' });
}

/**
 * Three workers in `config.mode` 'hang-first': the first runner is killed with SIGKILL mid-run;
 * exactly one survivor takes over (after the kill, within its lease and a margin), fn ran
 * twice in all, and every survivor's caller gets the second run's value, no error.
 */
export async function expectTakeoverAfterKill(config: CoalescerWorkerConfig, runs: RunCount): Promise<void> {
  const children = spawnWorkers(3, config);
  await Promise.all(children.map((c) => c.waitForEvent('arrived', { timeoutMs: 20_000 })));
  const first = await Promise.any(children.map((c) => c.waitForEvent('running', { timeoutMs: 20_000 }).then(() => c)));
  expect(first.all('running')[0].run).toBe(1);
  const killedAt = first.kill('SIGKILL');
  const survivors = children.filter((c) => c !== first);
  await finish(survivors);
  expect(await runs(config)).toBe(2);
  const takers = survivors.filter((c) => c.all('running').length > 0);
  expect(takers).toHaveLength(1);
  const tookOverAt = takers[0].all('running')[0].t;
  expect(tookOverAt).toBeGreaterThanOrEqual(killedAt);
  expect(tookOverAt - killedAt).toBeLessThan(config.ttlMs + 5_000);
  const values = survivors.flatMap((c) => c.all('result').map((e) => e.value));
  expect(values).toHaveLength(survivors.length * config.calls);
  for (const v of values) expect(v).toEqual({ run: 2, pid: takers[0].pid, at: '1970-01-01T00:00:00.000Z' });
  expect(survivors.flatMap((c) => c.all('error'))).toEqual([]);
}
