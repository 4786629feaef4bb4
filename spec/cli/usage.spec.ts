/**
 * singleton-run's own failures, end to end: bad usage (64), --help and
 * --version, an unreachable store (69), a command that cannot run (126/127).
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort } from '../setup/redisServer';
import { CHILD, killAllCli, lines, ROOT, runCli } from './cliHarness';

let dir: string;
let store: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'singleton-run-usage-'));
  store = pathToFileURL(join(dir, 'locks')).href;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(killAllCli);

describe('bad usage exits 64 with at most two lines on stderr, the last pointing to --help', () => {
  it.each<[string, string[], RegExp]>([
    ['an unknown flag', ['--name', 'x', '--frobnicate', '--', 'true'], /unknown option '--frobnicate'/],
    ['a missing --name', ['--', 'true'], /missing --name/],
    ['a missing command', ['--name', 'x'], /missing the command/],
    ['a non-numeric --ttl', ['--name', 'x', '--ttl', 'abc', '--', 'true'], /invalid --ttl "abc"/],
    ['a negative --wait-timeout', ['--name', 'x', '--wait-timeout', '-1', '--', 'true'], /invalid --wait-timeout "-1"/],
    ['a --conflict-exit-code above 255', ['--name', 'x', '--conflict-exit-code', '256', '--', 'true'], /invalid --conflict-exit-code "256"/],
    ['a --name without value', ['--name'], /option '--name' needs a value/],
    ['a store URL of another scheme', ['--name', 'x', '--store', 'http://localhost', '--', 'true'], /invalid --store .*unsupported scheme 'http:'/],
    ['status with a stray argument', ['status', '--name', 'x', 'extra'], /unexpected argument 'extra'/],
    ['status without --name', ['status'], /missing --name/],
  ])('%s', async (_, args, message) => {
    const result = await runCli(args, { SINGLETON_STORE: store });
    expect(result.code).toBe(64);
    expect(result.stdout).toBe('');
    const errLines = lines(result.stderr);
    expect(errLines.length).toBeLessThanOrEqual(2);
    expect(errLines[0]).toMatch(/^singleton-run: /);
    expect(errLines[0]).toMatch(message);
    expect(errLines[errLines.length - 1]).toBe("Try 'singleton-run --help'.");
  });

  it('never echoes a password from a bad store URL', async () => {
    for (const url of ['redis:/u:hunter2@host', 'redis://u:hunter2@host:port']) {
      const result = await runCli(['--name', 'x', '--store', url, '--', 'true']);
      expect(result.code).toBe(64);
      expect(result.stderr).toContain(':***@');
      expect(result.stderr).not.toContain('hunter2');
    }
  });
});

describe('--help and --version', () => {
  it('--help prints the usage on stdout and exits 0', async () => {
    for (const args of [['--help'], ['-h'], ['status', '--help']]) {
      const result = await runCli(args);
      expect(result).toMatchObject({ code: 0, stderr: '' });
      expect(result.stdout).toMatch(/^Usage:\n {2}singleton-run --name NAME/);
      expect(result.stdout).toContain('--conflict-exit-code N');
    }
  });

  it('--version prints the package version and exits 0', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const result = await runCli(['--version']);
    expect(result).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' });
  });
});

describe('the command cannot run', () => {
  it('not found: 127, one line, lock released', async () => {
    const result = await runCli(['--name', 'cli-enoent', '--store', store, '--', join(dir, 'no-such-command')]);
    expect(result.code).toBe(127);
    expect(lines(result.stderr)).toEqual([`singleton-run: ${join(dir, 'no-such-command')}: command not found`]);
    const status = await runCli(['status', '--name', 'cli-enoent', '--store', store, '--json']);
    expect(JSON.parse(status.stdout)).toEqual({ name: 'cli-enoent', held: false });
  });

  it('not executable: 126, one line', async () => {
    const file = join(dir, 'not-executable');
    writeFileSync(file, '#!/bin/sh\nexit 0\n');
    chmodSync(file, 0o644);
    const result = await runCli(['--name', 'cli-eacces', '--store', store, '--', file]);
    expect(result.code).toBe(126);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(/cannot execute/);
  });

  it('the command runs without a shell: its arguments arrive as they are', async () => {
    const log = join(dir, 'args.log');
    const result = await runCli(['--name', 'cli-args', '--store', store, process.execPath, CHILD, log, '--exit', '4']);
    expect(result.code).toBe(4);
    const out = join(dir, 'arg.out');
    const weird = await runCli(['--name', 'cli-args', '--store', store, '--', 'sh', '-c', 'printf %s "$1" > "$2"', 'sh', 'a b;$HOME *', out]);
    expect(weird.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('a b;$HOME *');
  });
});

describe('an unreachable store exits 69 with one clear line', () => {
  // ioredis keeps a 2 s timer after disconnecting a socket that never connected: the CLI does not wait for it.
  const quiet = { SINGLETON_RUN_DEBUG_HANDLES: '' };
  /** singleton-run's own lines (the driver may add its own, see the `failing` test below). */
  const ownLines = (stderr: string) => lines(stderr).filter((l) => l.startsWith('singleton-run:'));

  it('Redis on a port nobody listens on, within a few seconds', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const log = join(dir, 'never.log');
    const before = Date.now();
    const result = await runCli(['--name', 'cli-down', '--store', url, '--', process.execPath, CHILD, log], quiet);
    expect(result.code).toBe(69);
    expect(result.at - before).toBeLessThan(10_000);
    expect(ownLines(result.stderr)).toEqual([expect.stringMatching(new RegExp(`^singleton-run: cannot reach ${url.replace(/[.]/g, '\\.')}: `))]);
    expect(result.stdout).toBe('');
    expect(() => readFileSync(log)).toThrow();
  });

  it('status against it: 69', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const result = await runCli(['status', '--name', 'cli-down', '--store', url], quiet);
    expect(result.code).toBe(69);
    expect(result.stdout).toBe('');
    expect(ownLines(result.stderr)).toHaveLength(1);
  });

  // The persister owns the client persisterFromUrl made, and listens for its 'error' events:
  // ioredis must not add "[ioredis] Unhandled error event" and a stack to the one line.
  it('nothing but that one line on stderr (no driver noise)', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const result = await runCli(['--name', 'cli-down', '--store', url, '--', 'true'], quiet);
    expect(result.code).toBe(69);
    expect(lines(result.stderr)).toHaveLength(1);
  });
});
