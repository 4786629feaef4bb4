/**
 * singleton-run dies, its command dies: the supervisor ends the command's
 * processes within a second of singleton-run's death, even by SIGKILL, so a
 * second singleton-run can never start the command while the first one's runs.
 * Real CLI processes, the file store and a real Redis.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { descendants } from '../../lib/cli/processTree';
import { CHILD, CLI_STORES, childEvents, isGone, lines, ROOT, startCli, TREE, treePids, until, waitForChildEvent } from './cliHarness';
import { cliStoreSpace, cliTestSpace } from './cliSuite';

/** The supervisor, from source. */
const SUPERVISOR_SOURCE = join(ROOT, 'lib', 'cli', 'supervisor.ts');
/** The built CLI, as the installed package's bin points at it. */
const BUILT_MAIN = join(ROOT, 'dist', 'cjs', 'cli', 'main.js');

describe.each(CLI_STORES)('singleton-run killed with SIGKILL (%s store)', (kind, makeStore) => {
  const space = cliStoreSpace(`sup-${kind}`, makeStore);
  const { start, log, pidsToKill } = space;

  it('the command and its background job are gone within a second', async () => {
    const pidFile = join(space.dir, 'tree.pids');
    const cli = start([], ['sh', TREE, pidFile]);
    const { child, grandchild } = await treePids(pidFile);
    pidsToKill.push(child, grandchild);
    expect(isGone(child) || isGone(grandchild)).toBe(false);

    const killedAt = Date.now();
    cli.kill('SIGKILL');
    const goneAt = await until(() => isGone(child) && isGone(grandchild), 'command and background job gone', { timeoutMs: 3_000, intervalMs: 5 });
    expect(goneAt - killedAt).toBeLessThan(3_000);
    const result = await cli.wait();
    expect(result.signal).toBe('SIGKILL');
    expect(result.stderr).toMatch(/singleton-run \(pid \d+\) ended; stopping sh \(pid \d+\) with SIGTERM/);
  });

  it('a second run waiting for the lock starts its command only after the first command ended', async () => {
    // The first command logs "end" when SIGTERM arrives and exits; the second one logs "start".
    const first = start(['--ttl', '1000'], [process.execPath, CHILD, log('first'), '--sleep', '60000', '--trap', 'SIGTERM:0']);
    const firstStart = await waitForChildEvent(log('first'), 'start');
    pidsToKill.push(firstStart.pid);
    const second = start(['--wait'], [process.execPath, CHILD, log('second'), '--sleep', '60000'], { SINGLETON_LOG_LEVEL: 'warn' });
    await until(() => second.stderr.includes('is held by'), 'second run waiting');

    first.kill('SIGKILL');
    const secondStart = await waitForChildEvent(log('second'), 'start', 1, 20_000);
    pidsToKill.push(secondStart.pid);
    const firstEnd = childEvents(log('first')).find((e) => e.event === 'end');
    expect(firstEnd).toBeDefined();
    expect(firstEnd!.t).toBeLessThanOrEqual(secondStart.t);
    expect(isGone(firstStart.pid)).toBe(true);
    expect(Number(secondStart.env?.SINGLETON_FENCING_TOKEN)).toBeGreaterThan(Number(firstStart.env?.SINGLETON_FENCING_TOKEN));
    second.kill('SIGTERM');
    expect((await second.wait()).code).toBe(143);
  });
  it('a second run waiting for the lock does not start beside a first command that ignores SIGTERM (it lives half a second on)', async () => {
    // The file store frees a lease at once when its holder dies: the supervisor guards it until the command is gone.
    const first = start(['--ttl', '1000'], [process.execPath, CHILD, log('first'), '--sleep', '60000', '--ignore', 'SIGTERM']);
    const firstStart = await waitForChildEvent(log('first'), 'start');
    pidsToKill.push(firstStart.pid);
    const seen = join(space.dir, 'seen');
    const firstRuns = `[ -d /proc/${firstStart.pid} ] && ! grep -q '^State:.*[ZX]' /proc/${firstStart.pid}/status 2>/dev/null`;
    const second = start(['--wait'], ['sh', '-c', `if ${firstRuns}; then echo overlap > ${seen}; else echo alone > ${seen}; fi`], { SINGLETON_LOG_LEVEL: 'warn' });
    await until(() => second.stderr.includes('is held by'), 'second run waiting');
    first.kill('SIGKILL');
    // SIGTERM reached the first command, which lives on until SIGKILL half a second later: the
    // lock must look held all that time (read the lock, then see the command still running).
    await waitForChildEvent(log('first'), 'signal');
    const holderThen = await space.holder();
    const ranAfterRead = !isGone(firstStart.pid);
    expect({ ranAfterRead, held: ranAfterRead ? holderThen !== null : 'not asked' }).toEqual({ ranAfterRead, held: ranAfterRead ? true : 'not asked' });
    expect((await second.wait(20_000)).code).toBe(0);
    expect(readFileSync(seen, 'utf8').trim()).toBe('alone');
    expect(childEvents(log('first')).filter((e) => e.event === 'signal')).toEqual([expect.objectContaining({ signal: 'SIGTERM' })]);
  });
});

describe('singleton-run killed with SIGKILL: commands that resist, a killed supervisor, the built CLI', () => {
  const space = cliTestSpace('sup');
  const { log, pidsToKill } = space;
  const storeUrl = () => pathToFileURL(join(space.dir, 'locks')).href;

  it('a command that ignores SIGTERM gets SIGKILL: gone within a second', async () => {
    const cli = startCli(['--name', space.name, '--store', storeUrl(), '--', process.execPath, CHILD, log('stubborn'), '--sleep', '60000', '--ignore', 'SIGTERM']);
    const started = await waitForChildEvent(log('stubborn'), 'start');
    pidsToKill.push(started.pid);

    const killedAt = Date.now();
    cli.kill('SIGKILL');
    const ignored = await waitForChildEvent(log('stubborn'), 'signal');
    const goneAt = await until(() => isGone(started.pid), 'stubborn command gone', { timeoutMs: 3_000, intervalMs: 5 });
    expect(ignored.signal).toBe('SIGTERM');
    // SIGTERM first, SIGKILL about half a second later.
    expect(goneAt - ignored.t).toBeGreaterThanOrEqual(400);
    expect(goneAt - killedAt).toBeLessThan(3_000);
    expect(childEvents(log('stubborn')).some((e) => e.event === 'end')).toBe(false);
  });

  it('--kill-after shorter than half a second shortens the grace too: --kill-after 0 kills at once', async () => {
    const cli = startCli(['--name', space.name, '--store', storeUrl(), '--kill-after', '0', '--', process.execPath, CHILD, log('stubborn'), '--sleep', '60000', '--ignore', 'SIGTERM']);
    const started = await waitForChildEvent(log('stubborn'), 'start');
    pidsToKill.push(started.pid);

    const killedAt = Date.now();
    cli.kill('SIGKILL');
    const goneAt = await until(() => isGone(started.pid), 'stubborn command gone', { timeoutMs: 3_000, intervalMs: 5 });
    // The default grace alone is 500 ms.
    expect(goneAt - killedAt).toBeLessThan(450);
    expect((await cli.wait()).stderr).toMatch(/SIGKILL after 0 ms/);
  });

  it('singleton-run killed while nobody reads its stderr any more: the supervisor still ends the command', async () => {
    // The command ignores SIGTERM: the supervisor must live on to send SIGKILL.
    const cli = startCli(['--name', space.name, '--store', storeUrl(), '--', process.execPath, CHILD, log('a'), '--sleep', '60000', '--ignore', 'SIGTERM']);
    const started = await waitForChildEvent(log('a'), 'start');
    pidsToKill.push(started.pid);
    // The supervisor's one line about it then meets EPIPE.
    cli.process.stderr?.destroy();
    cli.kill('SIGKILL');
    await until(() => isGone(started.pid), 'command gone', { timeoutMs: 3_000, intervalMs: 5 });
  });

  it('the supervisor itself killed: singleton-run kills the command, says so in one line and exits 70', async () => {
    const pidFile = join(space.dir, 'tree.pids');
    const cli = startCli(['--name', space.name, '--store', storeUrl(), '--', 'sh', TREE, pidFile]);
    const { child, grandchild } = await treePids(pidFile);
    pidsToKill.push(child, grandchild);
    const supervisor = descendants(cli.pid).find((pid) => readCmdline(pid).includes('supervisor'));
    expect(supervisor).toBeDefined();

    process.kill(supervisor!, 'SIGKILL');
    const result = await cli.wait();
    expect(result.code).toBe(70);
    expect(lines(result.stderr)).toEqual([expect.stringMatching(/the supervisor of sh ended unexpectedly \(SIGKILL\); sh was killed/)]);
    await until(() => isGone(child) && isGone(grandchild), 'command and background job gone', { timeoutMs: 3_000 });
  });

  it('the supervisor starts the command only when singleton-run says so, never once singleton-run is gone', async () => {
    const marker = join(space.dir, 'started');
    const supervisor = (...command: string[]) =>
      spawn(process.execPath, ['--import', 'tsx', SUPERVISOR_SOURCE, 'group', '1000', String(process.pid), ...command], { cwd: ROOT, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    // singleton-run gone before it said `start` (killed while the supervisor started): nothing starts.
    const orphan = supervisor('sh', '-c', `echo orphan >> ${marker}`);
    await new Promise<void>((resolve) => orphan.once('spawn', () => resolve()));
    orphan.disconnect();
    expect(await exited(orphan)).toBe(0);

    // Told to start: the command runs and the supervisor reports it.
    const told = supervisor('sh', '-c', `echo told >> ${marker}`);
    const started = new Promise<unknown>((resolve) => told.once('message', resolve));
    told.send({ type: 'start' });
    expect(await started).toMatchObject({ type: 'started', pid: expect.any(Number) });
    await exited(told);
    expect(readFileSync(marker, 'utf8')).toBe('told\n');
  });

  it('works from the build, run through a bin symlink as npm installs it', async () => {
    if (!existsSync(join(ROOT, 'dist', 'cjs', 'cli', 'supervisor.js'))) {
      throw new Error('dist/ has no supervisor.js: run `npm run build` first (npm test does)');
    }
    const bin = join(space.dir, 'singleton-run');
    symlinkSync(BUILT_MAIN, bin);
    const pidFile = join(space.dir, 'tree.pids');
    const cli = startCli(['--name', space.name, '--store', storeUrl(), '--', 'sh', TREE, pidFile], {}, [bin]);
    const { child, grandchild } = await treePids(pidFile);
    pidsToKill.push(child, grandchild);

    const killedAt = Date.now();
    cli.kill('SIGKILL');
    const goneAt = await until(() => isGone(child) && isGone(grandchild), 'command and background job gone', { timeoutMs: 3_000, intervalMs: 5 });
    expect(goneAt - killedAt).toBeLessThan(3_000);

    // And the ordinary path: the exit code passed through.
    const ok = await startCli(['--name', space.name, '--store', storeUrl(), '--', 'sh', '-c', 'exit 7'], {}, [bin]).wait();
    expect(ok).toMatchObject({ code: 7, stderr: '' });
  });
});

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}
