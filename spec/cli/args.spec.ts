/** singleton-run's argument parsing, status rendering and exit codes, in process. */
import { DEFAULT_CONFLICT_EXIT_CODE, DEFAULT_KILL_AFTER_MS, parseCli, readVersion, redactSecret, UsageError } from '../../lib/cli/args';
import { ExitCode, signalExitCode } from '../../lib/cli/exitCodes';
import { listJson, listText } from '../../lib/cli/list';
import { statusJson, statusText } from '../../lib/cli/status';
import type { LockInfo } from '../../lib/persisters/Persister';

const noEnv = {};

function usageError(argv: string[], env: NodeJS.ProcessEnv = noEnv): string {
  try {
    parseCli(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(64);
    expect((err as Error).message).not.toContain('\n');
    return (err as Error).message;
  }
  throw new Error(`parseCli(${JSON.stringify(argv)}) did not throw`);
}

describe('parseCli', () => {
  it('parses a full run command line, with defaults', () => {
    expect(parseCli(['--name', 'job', '--', 'backup.sh', '--full', '-v'], noEnv)).toEqual({
      kind: 'run',
      name: 'job',
      store: undefined,
      wait: false,
      waitTimeoutMs: undefined,
      ttlMs: undefined,
      conflictExitCode: DEFAULT_CONFLICT_EXIT_CODE,
      killAfterMs: DEFAULT_KILL_AFTER_MS,
      command: 'backup.sh',
      args: ['--full', '-v'],
    });
    expect(DEFAULT_CONFLICT_EXIT_CODE).toBe(75);
    expect(DEFAULT_KILL_AFTER_MS).toBe(10_000);
  });

  it('reads every flag, in both --flag value and --flag=value forms', () => {
    const parsed = parseCli(
      ['--name=job', '--store', 'redis://h:1', '--wait', '--wait-timeout=5000', '--ttl', '3000', '--conflict-exit-code', '0', '--kill-after', '250', '--', 'cmd'],
      noEnv,
    );
    expect(parsed).toMatchObject({
      name: 'job',
      store: 'redis://h:1',
      wait: true,
      waitTimeoutMs: 5000,
      ttlMs: 3000,
      conflictExitCode: 0,
      killAfterMs: 250,
      command: 'cmd',
      args: [],
    });
  });

  it('ends the options at the first non-option, so `--` is optional', () => {
    expect(parseCli(['--name', 'x', 'ls', '-la', '--', 'y'], noEnv)).toMatchObject({ command: 'ls', args: ['-la', '--', 'y'] });
    expect(parseCli(['--name', 'x', '--', '--weird-command'], noEnv)).toMatchObject({ command: '--weird-command', args: [] });
  });

  it('--wait-timeout implies --wait', () => {
    expect(parseCli(['--name', 'x', '--wait-timeout', '0', '--', 'c'], noEnv)).toMatchObject({ wait: true, waitTimeoutMs: 0 });
  });

  it('takes the store from --store, else $SINGLETON_STORE, else none (the file store)', () => {
    const env = { SINGLETON_STORE: 'redis://from-env:6379' };
    expect(parseCli(['--name', 'x', '--store', 'file:///tmp/x', '--', 'c'], env)).toMatchObject({ store: 'file:///tmp/x' });
    expect(parseCli(['--name', 'x', '--', 'c'], env)).toMatchObject({ store: 'redis://from-env:6379' });
    expect(parseCli(['--name', 'x', '--', 'c'], { SINGLETON_STORE: '' })).toMatchObject({ store: undefined });
    expect(parseCli(['--name', 'x', '--store', 'mongodb://a:1,b:2/db?replicaSet=rs', '--', 'c'], noEnv)).toMatchObject({
      store: 'mongodb://a:1,b:2/db?replicaSet=rs',
    });
  });

  it('parses status', () => {
    expect(parseCli(['status', '--name', 'x', '--json'], noEnv)).toEqual({ kind: 'status', name: 'x', store: undefined, json: true });
    expect(parseCli(['status', '--name', 'x'], { SINGLETON_STORE: 'file:' })).toEqual({ kind: 'status', name: 'x', store: 'file:', json: false });
  });

  it('answers --help and --version before anything else is checked', () => {
    expect(parseCli(['--help'], noEnv)).toEqual({ kind: 'help' });
    expect(parseCli(['--ttl', 'abc', '-h'], noEnv)).toEqual({ kind: 'help' });
    expect(parseCli(['status', '--help'], noEnv)).toEqual({ kind: 'help' });
    expect(parseCli(['--version'], noEnv)).toEqual({ kind: 'version' });
    expect(parseCli(['--name', 'x', '--', 'cmd', '--help'], noEnv)).toMatchObject({ kind: 'run', args: ['--help'] });
  });

  it.each<[string[], RegExp]>([
    [['--', 'c'], /^missing --name NAME/],
    [['--name', 'x'], /^missing the command/],
    [['--name', 'x', '--'], /^missing the command/],
    [['--name', 'x', '--', ''], /empty string/],
    [['--name', '', '--', 'c'], /^Expected `--name` to be a string of 1 to 200 printable characters/],
    [['--name', 'a\u0007b', '--', 'c'], /--name/],
    [['--name', 'x'.repeat(201), '--', 'c'], /--name/],
    [['--name', 'x', '--bogus', '--', 'c'], /^unknown option '--bogus'$/],
    [['--name', 'x', '-z', '--', 'c'], /^unknown option '-z'$/],
    [['--name'], /^option '--name' needs a value$/],
    [['--name', 'x', '--ttl', '--', 'c'], /^option '--ttl' needs a value$/],
    [['--name', 'x', '--wait=yes', '--', 'c'], /^option '--wait' does not take a value$/],
    [['--name', 'x', '--ttl', 'abc', '--', 'c'], /^invalid --ttl "abc": expected a whole number from 100 to/],
    [['--name', 'x', '--ttl', '1.5', '--', 'c'], /^invalid --ttl "1.5"/],
    [['--name', 'x', '--ttl', '10', '--', 'c'], /^invalid --ttl "10"/],
    [['--name', 'x', '--ttl', '20', '--', 'c'], /^invalid --ttl "20": expected a whole number from 100 to/],
    [['--name', 'x', '--ttl', '1e3', '--', 'c'], /^invalid --ttl "1e3"/],
    [['--name', 'x', '--ttl', '-5', '--', 'c'], /^invalid --ttl "-5"/],
    [['--name', 'x', '--wait-timeout', 'soon', '--', 'c'], /^invalid --wait-timeout "soon": expected a whole number from 0 to 2147483647/],
    [['--name', 'x', '--wait-timeout', '99999999999', '--', 'c'], /^invalid --wait-timeout/],
    [['--name', 'x', '--kill-after', '', '--', 'c'], /^invalid --kill-after ""/],
    [['--name', 'x', '--conflict-exit-code', '-1', '--', 'c'], /^invalid --conflict-exit-code "-1": expected a whole number from 0 to 255/],
    [['--name', 'x', '--conflict-exit-code', '256', '--', 'c'], /^invalid --conflict-exit-code "256"/],
    [['--name', 'x', '--store', 'nope', '--', 'c'], /^invalid --store "nope": not a URL/],
    [['--name', 'x', '--store', 'mysql://u:secret@h/db', '--', 'c'], /^invalid --store "mysql:\/\/u:\*\*\*@h\/db": unsupported scheme 'mysql:'/],
    [['status', '--name', 'x', 'y'], /^unexpected argument 'y'$/],
    [['status', '--name', 'x', '--wait'], /^unknown option '--wait'$/],
    [['status'], /^missing --name/],
  ])('%j is a usage error', (argv, message) => {
    expect(usageError(argv)).toMatch(message);
  });

  it('names $SINGLETON_STORE when the bad URL came from there', () => {
    expect(usageError(['--name', 'x', '--', 'c'], { SINGLETON_STORE: 'ftp://x' })).toMatch(/^invalid \$SINGLETON_STORE "ftp:\/\/x"/);
  });
});

describe('redactSecret', () => {
  it('hides the password of the URL wherever the URL appears, and nothing else', () => {
    const url = 'rediss://user:s3cret@redis.example:6380/0';
    expect(redactSecret(`cannot reach ${url}: ${url} said no (s3cret)`, url)).toBe(
      'cannot reach rediss://user:***@redis.example:6380/0: rediss://user:***@redis.example:6380/0 said no (s3cret)',
    );
    expect(redactSecret('at redis:/u:p@h', 'redis:/u:p@h')).toBe('at redis:/u:***@h');
    expect(redactSecret('a', 'redis://h:6379')).toBe('a');
    expect(redactSecret('a', undefined)).toBe('a');
  });
});

describe('readVersion', () => {
  it('reads the version of package.json', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    expect(readVersion()).toBe((require('../../package.json') as { version: string }).version);
  });
});

describe('exit codes', () => {
  it('follows sysexits and the shell', () => {
    expect(ExitCode).toMatchObject({ OK: 0, USAGE: 64, UNAVAILABLE: 69, SOFTWARE: 70, LOST: 70, TEMPFAIL: 75, CONFLICT: 75, CANNOT_EXECUTE: 126, NOT_FOUND: 127 });
    expect(Object.isFrozen(ExitCode)).toBe(true);
  });

  it('maps signals to 128+n', () => {
    expect(signalExitCode('SIGINT')).toBe(130);
    expect(signalExitCode('SIGTERM')).toBe(143);
    expect(signalExitCode('SIGHUP')).toBe(129);
    expect(signalExitCode('SIGKILL')).toBe(137);
  });
});

describe('status rendering', () => {
  const holder: LockInfo = {
    name: 'job',
    owner: 'web-1:42',
    hostname: 'web-1',
    pid: 42,
    fencingToken: 1_732_000_000_000_001n,
    acquiredAt: new Date('2026-01-01T00:00:00.000Z'),
    expiresAt: new Date('2026-01-01T00:01:15.000Z'),
  };
  const now = Date.parse('2026-01-01T00:01:05.000Z');

  it('JSON: the fencing token as a string, times in ISO 8601', () => {
    expect(statusJson('job', holder)).toEqual({
      name: 'job',
      held: true,
      owner: 'web-1:42',
      hostname: 'web-1',
      pid: 42,
      fencingToken: '1732000000000001',
      acquiredAt: '2026-01-01T00:00:00.000Z',
      expiresAt: '2026-01-01T00:01:15.000Z',
    });
    expect(statusJson('job', null)).toEqual({ name: 'job', held: false });
  });

  it('text: holder, host, pid, token, acquired, expires in; or free', () => {
    expect(statusText('job', holder, now)).toBe(
      [
        '"job" is held by web-1:42',
        '  owner:         web-1:42',
        '  host:          web-1',
        '  pid:           42',
        '  fencing token: 1732000000000001',
        '  acquired:      2026-01-01T00:00:00.000Z (65 s ago)',
        '  expires in:    10000 ms',
        '',
      ].join('\n'),
    );
    expect(statusText('job', holder, Date.parse('2026-01-01T00:01:16.000Z'))).toContain('expired:       1000 ms ago');
    expect(statusText('job', null)).toBe('"job" is free\n');
  });
});

describe('parseCli: list and release --force', () => {
  it('parses list with its defaults and flags', () => {
    expect(parseCli(['list'], noEnv)).toEqual({ kind: 'list', store: undefined, prefix: '', json: false });
    expect(parseCli(['list', '--prefix', 'jobs:', '--json', '--store', 'redis://r:6379'], noEnv)).toEqual({
      kind: 'list',
      store: 'redis://r:6379',
      prefix: 'jobs:',
      json: true,
    });
    expect(parseCli(['list'], { SINGLETON_STORE: 'file:///x' })).toMatchObject({ store: 'file:///x' });
    expect(parseCli(['list', '--help'], noEnv)).toEqual({ kind: 'help' });
    expect(usageError(['list', '--name', 'x'])).toBe("unknown option '--name'");
    expect(usageError(['list', 'extra'])).toMatch(/unexpected argument/);
  });

  it('parses release --force, and refuses it without --force or --name', () => {
    expect(parseCli(['release', '--force', '--name', 'job'], noEnv)).toEqual({ kind: 'release', name: 'job', store: undefined });
    expect(usageError(['release', '--name', 'job'])).toMatch(/add --force to confirm/);
    expect(usageError(['release', '--force'])).toMatch(/missing --name/);
    expect(usageError(['release', '--force', '--name', 'a\u0007b'])).toMatch(/--name/);
    expect(usageError(['release', '--force', '--name', 'job', '--store', 'ftp://x'])).toMatch(/unsupported scheme/);
  });
});

describe('list rendering', () => {
  const now = Date.parse('2026-01-01T00:01:05.000Z');
  const lock = (name: string, pid: number): LockInfo => ({
    name,
    owner: `web-${pid}:${pid}`,
    hostname: `web-${pid}`,
    pid,
    fencingToken: 1732000000000001n + BigInt(pid),
    acquiredAt: new Date('2026-01-01T00:00:00.000Z'),
    expiresAt: new Date('2026-01-01T00:01:15.000Z'),
  });

  it('json: an array of objects, fencing tokens as decimal strings', () => {
    expect(listJson([lock('a', 1)])).toEqual([
      {
        name: 'a',
        owner: 'web-1:1',
        hostname: 'web-1',
        pid: 1,
        fencingToken: '1732000000000002',
        acquiredAt: '2026-01-01T00:00:00.000Z',
        expiresAt: '2026-01-01T00:01:15.000Z',
      },
    ]);
    expect(listJson([])).toEqual([]);
  });

  it('text: an aligned table with a header, or one line when nothing is held', () => {
    expect(listText([lock('a', 1), lock('long-name', 1234)], '', now).split('\n')).toEqual([
      'NAME       OWNER          HOST      PID   FENCE             ACQUIRED                             EXPIRES IN',
      'a          web-1:1        web-1     1     1732000000000002  2026-01-01T00:00:00.000Z (65 s ago)  10 s',
      'long-name  web-1234:1234  web-1234  1234  1732000000001235  2026-01-01T00:00:00.000Z (65 s ago)  10 s',
      '',
    ]);
    expect(listText([], '', now)).toBe('no lock held\n');
    expect(listText([], 'jobs:', now)).toBe('no lock held whose name starts with "jobs:"\n');
  });
});
