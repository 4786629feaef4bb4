/**
 * singleton-run end to end: the real CLI in a child process, against the file
 * store and a real Redis (the global setup's). Each test uses its own lock
 * name and, for the file store, its own directory.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { CHILD, CLI_STORES, childEvents, isGone, lines, runCli, startCli, TREE, treePids, until, waitForChildEvent } from './cliHarness';
import { cliStoreSpace, cliTestSpace } from './cliSuite';

describe.each(CLI_STORES)('singleton-run with the %s store', (kind, makeStore) => {
  const space = cliStoreSpace(`cli-${kind}`, makeStore);
  const { run, start, log, holder, pidsToKill } = space;

  it('passes the exit code through (0 and 3), with the lock free afterwards and no output of its own', async () => {
    const ok = await run([], [process.execPath, CHILD, log('a')]);
    expect(ok).toMatchObject({ code: 0, stderr: '', stdout: '' });
    const three = await run([], [process.execPath, CHILD, log('b'), '--exit', '3']);
    expect(three).toMatchObject({ code: 3, stderr: '' });
    expect(await holder()).toBeNull();
  });

  it('exits 128+n when the command dies of a signal', async () => {
    const result = await run([], ['sh', '-c', 'kill -KILL $$']);
    expect(result.code).toBe(137);
  });

  it('gives the command SINGLETON_NAME and the fencing token of the lease it holds', async () => {
    const cli = start([], [process.execPath, CHILD, log('a'), '--sleep', '60000']);
    const started = await waitForChildEvent(log('a'), 'start');
    pidsToKill.push(started.pid);
    const lease = await holder();
    expect(lease).not.toBeNull();
    expect(started.env).toEqual({ SINGLETON_NAME: space.name, SINGLETON_FENCING_TOKEN: String(lease?.fencingToken) });
    expect(lease).toMatchObject({ pid: cli.pid, hostname: hostname(), owner: `${hostname()}:${cli.pid}` });
    cli.kill('SIGTERM');
    expect((await cli.wait()).code).toBe(143);
  });

  it('runs one of two concurrent runs; the other exits 75 with one line naming the holder, or --conflict-exit-code', async () => {
    const first = start([], [process.execPath, CHILD, log('first'), '--sleep', '60000']);
    pidsToKill.push((await waitForChildEvent(log('first'), 'start')).pid);

    const second = await run([], [process.execPath, CHILD, log('second')]);
    expect(second.code).toBe(75);
    expect(lines(second.stderr)).toHaveLength(1);
    expect(second.stderr).toContain(`held by ${hostname()}:${first.pid} (pid ${first.pid} on ${hostname()}`);
    expect(second.stderr).toMatch(/since \d{4}-\d\d-\d\dT/);
    expect(second.stdout).toBe('');

    const zero = await run(['--conflict-exit-code', '0'], [process.execPath, CHILD, log('third')]);
    expect(zero.code).toBe(0);
    expect(lines(zero.stderr)).toHaveLength(1);

    expect(childEvents(log('second'))).toEqual([]);
    expect(childEvents(log('third'))).toEqual([]);
    first.kill('SIGTERM');
    expect((await first.wait()).code).toBe(143);
  });

  it('two runs started at the same moment: exactly one command runs, the other run exits 75', async () => {
    const runs = ['x', 'y'].map((label) => ({ label, cli: start([], [process.execPath, CHILD, log(label), '--sleep', '60000']) }));
    let loser: (typeof runs)[number] | undefined;
    await until(() => {
      loser = runs.find((r) => r.cli.result !== undefined);
      return loser !== undefined;
    }, 'one run ends');
    const winner = runs.find((r) => r !== loser)!;
    expect(loser!.cli.result?.code).toBe(75);
    expect(loser!.cli.result?.stderr).toContain(`pid ${winner.cli.pid}`);
    pidsToKill.push((await waitForChildEvent(log(winner.label), 'start')).pid);
    expect(childEvents(log(loser!.label))).toEqual([]);
    winner.cli.kill('SIGTERM');
    expect((await winner.cli.wait()).code).toBe(143);
  });

  it('--wait starts the second command only after the first one exited', async () => {
    const first = start([], [process.execPath, CHILD, log('first'), '--sleep', '1500']);
    await waitForChildEvent(log('first'), 'start');
    const second = start(['--wait'], [process.execPath, CHILD, log('second')]);

    const [a, b] = await Promise.all([first.wait(), second.wait()]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const firstEnd = childEvents(log('first')).find((e) => e.event === 'end');
    const secondStart = childEvents(log('second')).find((e) => e.event === 'start');
    expect(firstEnd).toBeDefined();
    expect(secondStart).toBeDefined();
    expect(secondStart!.t).toBeGreaterThanOrEqual(firstEnd!.t);
    // Handed over promptly: notified (Redis pub/sub, fs.watch), not after a full lease.
    expect(secondStart!.t - firstEnd!.t).toBeLessThan(8_000); // well inside the default 15 s lease
    expect(Number(secondStart!.env?.SINGLETON_FENCING_TOKEN)).toBeGreaterThan(0);
    expect(b.stderr).toBe('');
  });

  it('--wait-timeout runs out: exit 75 with one line saying it timed out, command not started', async () => {
    const first = start([], [process.execPath, CHILD, log('first'), '--sleep', '60000']);
    pidsToKill.push((await waitForChildEvent(log('first'), 'start')).pid);
    const before = Date.now();
    const second = await run(['--wait-timeout', '700'], [process.execPath, CHILD, log('second')]);
    expect(second.code).toBe(75);
    expect(second.at - before).toBeGreaterThanOrEqual(700);
    expect(lines(second.stderr)).toHaveLength(1);
    expect(second.stderr).toMatch(/timed out after 700 ms/);
    expect(second.stderr).toContain(`pid ${first.pid}`);
    expect(childEvents(log('second'))).toEqual([]);
    first.kill('SIGTERM');
    await first.wait();
  });

  it('a signal while waiting ends the wait at once: exit 143, command never started, holder untouched', async () => {
    const first = start([], [process.execPath, CHILD, log('first'), '--sleep', '60000']);
    pidsToKill.push((await waitForChildEvent(log('first'), 'start')).pid);
    const lease = await holder();
    // At warn, the library logs the conflict: the observable sign that the second run is waiting.
    const second = start(['--wait'], [process.execPath, CHILD, log('second')], { SINGLETON_LOG_LEVEL: 'warn' });
    await until(() => second.stderr.includes('is held by'), 'second run waiting');
    const sentAt = Date.now();
    second.kill('SIGTERM');
    const result = await second.wait();
    expect(result.code).toBe(143);
    expect(result.at - sentAt).toBeLessThan(3_000);
    expect(childEvents(log('second'))).toEqual([]);
    expect(await holder()).toMatchObject({ pid: first.pid, fencingToken: lease?.fencingToken });
    first.kill('SIGINT');
    expect((await first.wait()).code).toBe(130);
  });

  it('forwards SIGTERM to the command group: child and grandchild gone, exit 143, lock free (status says so)', async () => {
    const pidFile = join(space.dir, 'tree.pids');
    const cli = start([], ['sh', TREE, pidFile]);
    const { child, grandchild } = await treePids(pidFile);
    pidsToKill.push(child, grandchild);
    expect(isGone(child)).toBe(false);
    expect(isGone(grandchild)).toBe(false);

    cli.kill('SIGTERM');
    const result = await cli.wait();
    expect(result.code).toBe(143);
    await until(() => isGone(child) && isGone(grandchild), 'child and grandchild gone', { timeoutMs: 5_000 });
    expect(await holder()).toBeNull();
    const status = await runCli(['status', '--name', space.name, '--store', space.store.url]);
    expect(status).toMatchObject({ code: 0, stdout: `"${space.name}" is free\n` });
  });

  it('forwards SIGINT and SIGHUP; the command decides the exit code', async () => {
    const cli = start([], [process.execPath, CHILD, log('int'), '--sleep', '60000', '--trap', 'SIGINT:5']);
    await waitForChildEvent(log('int'), 'start');
    cli.kill('SIGINT');
    expect((await cli.wait()).code).toBe(5);
    expect(childEvents(log('int')).filter((e) => e.event === 'signal')).toEqual([expect.objectContaining({ signal: 'SIGINT' })]);

    const hup = start([], [process.execPath, CHILD, log('hup'), '--sleep', '60000']);
    await waitForChildEvent(log('hup'), 'start');
    hup.kill('SIGHUP');
    expect((await hup.wait()).code).toBe(129);
    expect(await holder()).toBeNull();
  });

  it('SIGINT to a shell script: its background job, which ignores SIGINT, is stopped before the lock is released', async () => {
    const pidFile = join(space.dir, 'tree.pids');
    const cli = start([], ['sh', TREE, pidFile]);
    const { child, grandchild } = await treePids(pidFile);
    pidsToKill.push(child, grandchild);
    cli.kill('SIGINT');
    const result = await cli.wait();
    expect(result.code).toBe(130); // the shell's own answer to SIGINT
    // The lock was released just before singleton-run exited: nothing of the command runs any more.
    expect(isGone(grandchild)).toBe(true);
    expect(await holder()).toBeNull();
  });

  it('lock lost while running (process stalled, lease taken over): SIGTERM to the group, child and grandchild gone, exit 70', async () => {
    const pidFile = join(space.dir, 'tree.pids');
    const cli = start(['--ttl', '500'], ['sh', TREE, pidFile]);
    const { child, grandchild } = await treePids(pidFile);
    pidsToKill.push(child, grandchild);

    // Stall singleton-run (its command runs on, in its own group) until its lease runs out, then take the lock.
    cli.kill('SIGSTOP');
    const thief = { owner: 'thief', hostname: 'test', pid: process.pid };
    let taken = false;
    await until(async () => {
      taken = (await space.persister.acquire({ name: space.name, token: 'feedfacefeedfacefeedfacefeedface', ttlMs: 10_000, owner: thief })).acquired;
      return taken;
    }, 'lease expired and taken over');
    cli.kill('SIGCONT');

    const result = await cli.wait();
    expect(result.code).toBe(70);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(/lost lock/);
    expect(isGone(child) && isGone(grandchild)).toBe(true);
    // The thief's lease was never touched by the loser.
    expect(await holder()).toMatchObject({ owner: 'thief' });
    await space.persister.release({ name: space.name, token: 'feedfacefeedfacefeedfacefeedface' });
  });

  it('lock lost and the command ignores SIGTERM: SIGKILL after --kill-after, exit 70', async () => {
    const cli = start(['--ttl', '500', '--kill-after', '600'], [process.execPath, CHILD, log('stubborn'), '--sleep', '60000', '--ignore', 'SIGTERM']);
    const started = await waitForChildEvent(log('stubborn'), 'start');
    pidsToKill.push(started.pid);
    cli.kill('SIGSTOP');
    const token = 'beefbeefbeefbeefbeefbeefbeefbeef';
    await until(
      async () => (await space.persister.acquire({ name: space.name, token, ttlMs: 10_000, owner: { owner: 'thief', hostname: 'test', pid: process.pid } })).acquired,
      'lease taken over',
    );
    cli.kill('SIGCONT');
    const ignored = await waitForChildEvent(log('stubborn'), 'signal');
    const result = await cli.wait();
    expect(result.code).toBe(70);
    expect(ignored.signal).toBe('SIGTERM');
    expect(result.at - ignored.t).toBeGreaterThanOrEqual(500);
    expect(isGone(started.pid)).toBe(true);
    expect(childEvents(log('stubborn')).some((e) => e.event === 'end')).toBe(false);
    await space.persister.release({ name: space.name, token });
  });

  it('status: text and JSON, held and free', async () => {
    const free = await runCli(['status', '--name', space.name, '--store', space.store.url, '--json']);
    expect(free.code).toBe(0);
    expect(JSON.parse(free.stdout)).toEqual({ name: space.name, held: false });
    expect(lines(free.stdout)).toHaveLength(1);

    const cli = start([], [process.execPath, CHILD, log('a'), '--sleep', '60000']);
    pidsToKill.push((await waitForChildEvent(log('a'), 'start')).pid);
    const lease = await holder();

    const json = await runCli(['status', '--name', space.name, '--store', space.store.url, '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout);
    expect(parsed).toEqual({
      name: space.name,
      held: true,
      owner: `${hostname()}:${cli.pid}`,
      hostname: hostname(),
      pid: cli.pid,
      fencingToken: String(lease?.fencingToken),
      acquiredAt: lease?.acquiredAt.toISOString(),
      expiresAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/),
    });

    const text = await runCli(['status', '--name', space.name, '--store', space.store.url]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`"${space.name}" is held by ${hostname()}:${cli.pid}`);
    expect(text.stdout).toMatch(new RegExp(`host: +${hostname()}`));
    expect(text.stdout).toMatch(new RegExp(`pid: +${cli.pid}\\n`));
    expect(text.stdout).toMatch(new RegExp(`fencing token: +${String(lease?.fencingToken)}\\n`));
    expect(text.stdout).toMatch(/acquired: +\d{4}-\d\d-\d\dT\S+Z/);
    expect(text.stdout).toMatch(/expires in: +\d+ ms/);
    expect(text.stderr).toBe('');

    cli.kill('SIGTERM');
    await cli.wait();
  });

  it('reads the store from $SINGLETON_STORE when --store is absent', async () => {
    const cli = startCli(['--name', space.name, '--', process.execPath, CHILD, log('a'), '--sleep', '60000'], { SINGLETON_STORE: space.store.url });
    pidsToKill.push((await waitForChildEvent(log('a'), 'start')).pid);
    expect(await holder()).toMatchObject({ pid: cli.pid });
    cli.kill('SIGTERM');
    expect((await cli.wait()).code).toBe(143);
  });
});

describe('singleton-run, Redis specifics', () => {
  const space = cliTestSpace('cli-del');
  let redis: Redis;

  beforeAll(() => {
    redis = new Redis(process.env.REDIS_URL as string);
  });
  afterAll(async () => {
    await redis.quit();
  });

  it('lease deleted from Redis (DEL singleton:{name}) while running: child and grandchild stopped, exit 70', async () => {
    const { name } = space;
    const pidFile = join(space.dir, 'tree.pids');
    const cli = startCli(['--name', name, '--store', process.env.REDIS_URL as string, '--ttl', '600', '--', 'sh', TREE, pidFile]);
    const { child, grandchild } = await treePids(pidFile);
    space.pidsToKill.push(child, grandchild);
    expect(await redis.exists(`singleton:{${name}}`)).toBe(1);
    await redis.del(`singleton:{${name}}`);
    const result = await cli.wait();
    expect(result.code).toBe(70);
    expect(result.stderr).toMatch(/lost lock/);
    expect(isGone(child) && isGone(grandchild)).toBe(true);
  });
});
