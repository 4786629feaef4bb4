/**
 * `singleton-run` with `--store postgres://…` (and `postgresql://`): the command runs
 * under the lease and gets its fencing token, a second run exits 75 naming the holder,
 * `--wait` is handed the lock as soon as the first command ends (NOTIFY), `status` reads
 * the holder, and a server that cannot be reached is exit 69 with one line that does not
 * repeat the password.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Persister } from '../../lib/persisters/Persister';
import { persisterFromUrl } from '../../lib/persisters/fromUrl';
import { describePostgres, POSTGRES_URL, testPool, uniqueTable } from '../helpers/postgres';
import { freePort } from '../setup/redisServer';
import { CHILD, childEvents, killAllCli, killTree, lines, runCli, startCli, waitForChildEvent } from './cliHarness';

describePostgres('singleton-run with a PostgreSQL store', () => {
  const table = uniqueTable('cli');
  const url = `${POSTGRES_URL}${POSTGRES_URL?.includes('?') ? '&' : '?'}table=${table}`;
  let persister: Persister;
  let work: string;
  let name: string;
  let seq = 0;
  const pidsToKill: number[] = [];

  beforeAll(async () => {
    persister = await persisterFromUrl(url);
  });
  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'singleton-run-pg-'));
    name = `cli-pg-${process.pid}-${(seq += 1)}`;
  });
  afterEach(async () => {
    await killAllCli();
    for (const pid of pidsToKill.splice(0)) killTree(pid);
    rmSync(work, { recursive: true, force: true });
  });
  afterAll(async () => {
    await persister.close?.();
    const admin = testPool({ max: 1 });
    await admin.query(`DROP TABLE IF EXISTS "${table}"`);
    await admin.end();
  });

  const log = (label: string) => join(work, `${label}.log`);
  const start = (extra: string[], command: string[], store = url) =>
    startCli(['--name', name, '--store', store, ...extra, '--', ...command]);

  it('runs the command under the lease with its fencing token; a second run exits 75 naming the holder; the lock is free after', async () => {
    const first = start([], [process.execPath, CHILD, log('first'), '--sleep', '60000']);
    const started = await waitForChildEvent(log('first'), 'start');
    pidsToKill.push(started.pid);
    const lease = await persister.inspect(name);
    expect(lease).toMatchObject({ pid: first.pid, owner: `${hostname()}:${first.pid}` });
    expect(started.env).toEqual({ SINGLETON_NAME: name, SINGLETON_FENCING_TOKEN: String(lease?.fencingToken) });

    const second = await runCli(['--name', name, '--store', url.replace(/^postgres:/, 'postgresql:'), '--', process.execPath, CHILD, log('second')]);
    expect(second.code).toBe(75);
    expect(lines(second.stderr)).toHaveLength(1);
    expect(second.stderr).toContain(`held by ${hostname()}:${first.pid}`);
    expect(childEvents(log('second'))).toEqual([]);

    first.kill('SIGTERM');
    expect((await first.wait()).code).toBe(143);
    expect(await persister.inspect(name)).toBeNull();
  });

  it('--wait: the second command starts within moments of the first one ending (notified), with a higher fencing token', async () => {
    const first = start(['--ttl', '30000'], [process.execPath, CHILD, log('first'), '--sleep', '1500']);
    const firstStart = await waitForChildEvent(log('first'), 'start');
    const second = start(['--wait', '--ttl', '30000'], [process.execPath, CHILD, log('second')]);
    const [a, b] = await Promise.all([first.wait(), second.wait()]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const firstEnd = childEvents(log('first')).find((e) => e.event === 'end');
    const secondStart = childEvents(log('second')).find((e) => e.event === 'start');
    expect(secondStart!.t).toBeGreaterThanOrEqual(firstEnd!.t);
    expect(secondStart!.t - firstEnd!.t).toBeLessThan(5_000); // the lease was 30 s
    expect(BigInt(secondStart!.env!.SINGLETON_FENCING_TOKEN!)).toBeGreaterThan(BigInt(firstStart.env!.SINGLETON_FENCING_TOKEN!));
    expect(b.stderr).toBe('');
  });

  it('status: free, then the holder (text and JSON)', async () => {
    const free = await runCli(['status', '--name', name, '--store', url, '--json']);
    expect(free.code).toBe(0);
    expect(JSON.parse(free.stdout)).toEqual({ name, held: false });

    const cli = start([], [process.execPath, CHILD, log('a'), '--sleep', '60000']);
    pidsToKill.push((await waitForChildEvent(log('a'), 'start')).pid);
    const lease = await persister.inspect(name);
    const json = await runCli(['status', '--name', name, '--store', url, '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ name, held: true, pid: cli.pid, fencingToken: String(lease?.fencingToken) });
    const text = await runCli(['status', '--name', name, '--store', url]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`"${name}" is held by ${hostname()}:${cli.pid}`);
    expect(text.stdout).toMatch(new RegExp(`fencing token: +${String(lease?.fencingToken)}\\n`));
    cli.kill('SIGTERM');
    await cli.wait();
  });

  it('a server that cannot be reached: exit 69, one line, no password, command never started', async () => {
    const down = `postgres://locker:hunter2@127.0.0.1:${await freePort()}/db?operationTimeoutMs=1000`;
    const result = await runCli(['--name', name, '--store', down, '--', process.execPath, CHILD, log('never')]);
    expect(result.code).toBe(69);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).not.toContain('hunter2');
    expect(childEvents(log('never'))).toEqual([]);
    const status = await runCli(['status', '--name', name, '--store', down]);
    expect(status.code).toBe(69);
    expect(status.stderr).not.toContain('hunter2');
  });
});
