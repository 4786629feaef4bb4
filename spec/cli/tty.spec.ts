/**
 * singleton-run started from a terminal: the command keeps it as its
 * controlling terminal and stays in the foreground (it can prompt and read,
 * like sudo or ssh asking for a password), Ctrl-C reaches it once, and it still
 * dies with singleton-run. A real pseudo-terminal from util-linux `script`.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CHILD, childEvents, FROM_SOURCE, fileStore, isGone, ROOT, TREE, treePids, until, waitForChildEvent } from './cliHarness';
import { cliStoreSpace } from './cliSuite';

const TTY_FIXTURE = join(ROOT, 'spec', 'fixtures', 'cli', 'tty.sh');

/** util-linux `script` gives a command a pseudo-terminal as its controlling terminal (other `script`s take other flags). */
const hasScript = /util-linux/.test(spawnSync('script', ['--version'], { encoding: 'utf8' }).stdout ?? '');
if (!hasScript) console.warn('spec/cli/tty.spec.ts skipped: util-linux `script` is not installed (it provides the pseudo-terminal)');
const describeWithTty = hasScript ? describe : describe.skip;

/** `arg` quoted for sh. */
function quote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** singleton-run inside a pseudo-terminal: what it writes to the terminal, and the terminal's keyboard. */
class TerminalRun {
  readonly process: ChildProcess;
  output = '';
  readonly ended: Promise<number | null>;

  constructor(args: readonly string[], env: Record<string, string> = {}) {
    // exec: singleton-run replaces script's shell, so script's exit code is singleton-run's.
    const command = `exec ${[process.execPath, ...FROM_SOURCE, ...args].map(quote).join(' ')}`;
    // -e: exit with the command's code; -f: flush output at once; -q: no banner.
    this.process = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: ROOT,
      env: { ...process.env, ...env, SHELL: '/bin/sh' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.process.stdout?.setEncoding('utf8').on('data', (s: string) => (this.output += s));
    this.process.stderr?.setEncoding('utf8').on('data', (s: string) => (this.output += s));
    this.ended = new Promise((resolve) => this.process.once('close', (code) => resolve(code)));
  }

  /** Types `text` on the terminal's keyboard. */
  type(text: string): void {
    this.process.stdin?.write(text);
  }

  /** Resolves once the terminal shows `pattern`. */
  async shows(pattern: RegExp): Promise<void> {
    await until(() => pattern.test(this.output), `terminal output matching ${pattern} (so far: ${JSON.stringify(this.output)})`);
  }

  /** The exit code of singleton-run, bounded in time. */
  async exitCode(timeoutMs = 15_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms; terminal: ${JSON.stringify(this.output)}`)), timeoutMs);
    });
    return Promise.race([this.ended, timeout]).finally(() => clearTimeout(timer));
  }

  kill(): void {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGKILL');
  }
}

describeWithTty('singleton-run started from a terminal', () => {
  const runs: TerminalRun[] = [];
  // Declared before the space's clean-up, so it runs first (jest runs afterEach hooks in order).
  afterEach(() => {
    for (const run of runs.splice(0)) run.kill();
  });
  const space = cliStoreSpace('tty', fileStore);
  const { log, pidsToKill } = space;

  const start = (extra: string[], command: string[], env?: Record<string, string>) => {
    const run = new TerminalRun(['--name', space.name, '--store', space.store.url, ...extra, '--', ...command], env);
    runs.push(run);
    return run;
  };

  it('the command has the terminal as its controlling terminal, in the foreground, and reads a line from it', async () => {
    const run = start([], ['sh', TTY_FIXTURE]);
    await run.shows(/fg:|ctty:no/);
    expect(run.output).toMatch(/tty:\/dev\/pts\/\d+/);
    expect(run.output).toMatch(/ctty:yes/);
    expect(run.output).toMatch(/fg:yes/);
    run.type('hello from the keyboard\n');
    expect(await run.exitCode()).toBe(0);
    expect(run.output).toMatch(/got:hello from the keyboard/);
  });

  it('Ctrl-C reaches the command once (singleton-run does not send it again); its exit code is passed through', async () => {
    const run = start([], [process.execPath, CHILD, log('child'), '--sleep', '60000', '--ignore', 'SIGINT', '--trap', 'SIGTERM:7']);
    const started = await waitForChildEvent(log('child'), 'start');
    pidsToKill.push(started.pid);
    run.type('\x03');
    await waitForChildEvent(log('child'), 'signal');
    // A SIGINT singleton-run forwarded would reach the command before this SIGTERM, which goes the same way.
    process.kill((await space.holder())!.pid, 'SIGTERM');
    expect(await run.exitCode()).toBe(7);
    const signals = childEvents(log('child')).filter((e) => e.event === 'signal').map((e) => e.signal);
    expect(signals).toEqual(['SIGINT', 'SIGTERM']);
    expect(await space.holder()).toBeNull();
  });

  it('Ctrl-C while waiting for the lock ends the wait: exit 130, command not started', async () => {
    const holder = await space.persister.acquire({ name: space.name, token: 'abbaabbaabbaabbaabbaabbaabbaabba', ttlMs: 60_000, owner: { owner: 'other', hostname: 'test', pid: process.pid } });
    expect(holder.acquired).toBe(true);
    // At warn, the library logs the conflict: the sign that singleton-run is waiting.
    const run = start(['--wait'], [process.execPath, CHILD, log('child')], { SINGLETON_LOG_LEVEL: 'warn' });
    await run.shows(/is held by/);
    run.type('\x03');
    expect(await run.exitCode()).toBe(130);
    expect(childEvents(log('child'))).toEqual([]);
  });

  it('singleton-run killed with SIGKILL: the command and its background job are gone within a second', async () => {
    const pidFile = join(space.dir, 'tree.pids');
    start([], ['sh', TREE, pidFile]);
    const { child, grandchild } = await treePids(pidFile);
    pidsToKill.push(child, grandchild);
    const holder = await space.holder();
    expect(holder).not.toBeNull();

    const killedAt = Date.now();
    process.kill(holder!.pid, 'SIGKILL');
    const goneAt = await until(() => isGone(child) && isGone(grandchild), 'command and background job gone', { timeoutMs: 3_000, intervalMs: 5 });
    expect(goneAt - killedAt).toBeLessThan(3_000);
  });

  it('lock lost while running: the command and its background job are stopped, exit 70', async () => {
    const pidFile = join(space.dir, 'tree.pids');
    const run = start(['--ttl', '500'], ['sh', TREE, pidFile]);
    const { child, grandchild } = await treePids(pidFile);
    pidsToKill.push(child, grandchild);
    const holder = await space.holder();
    expect(holder).not.toBeNull();

    // Stall singleton-run until its lease runs out, take the lock, let it go on.
    process.kill(holder!.pid, 'SIGSTOP');
    const token = 'cafecafecafecafecafecafecafecafe';
    await until(
      async () => (await space.persister.acquire({ name: space.name, token, ttlMs: 10_000, owner: { owner: 'thief', hostname: 'test', pid: process.pid } })).acquired,
      'lease expired and taken over',
    );
    process.kill(holder!.pid, 'SIGCONT');
    // util-linux script stops itself when its command stops: wake it too.
    run.process.kill('SIGCONT');

    expect(await run.exitCode()).toBe(70);
    expect(run.output).toMatch(/lost lock/);
    expect(isGone(child) && isGone(grandchild)).toBe(true);
    await space.persister.release({ name: space.name, token });
  });
});
