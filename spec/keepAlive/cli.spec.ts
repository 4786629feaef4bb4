/** `singleton-run --keep-alive loop|thread`: parsing, and a real run with the lease renewed from the thread. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCli, UsageError } from '../../lib/cli/args';
import { FilePersister } from '../../lib/persisters/FilePersister';
import { killAllCli, runCli } from '../cli/cliHarness';

afterEach(killAllCli);

describe('--keep-alive', () => {
  test('thread and loop are passed on; absent, the library default stays', () => {
    expect(parseCli(['--name', 'job', '--keep-alive', 'thread', '--', 'cmd'], {})).toMatchObject({ kind: 'run', keepAlive: 'thread' });
    expect(parseCli(['--name', 'job', '--keep-alive=loop', 'cmd'], {})).toMatchObject({ kind: 'run', keepAlive: 'loop' });
    expect(parseCli(['--name', 'job', 'cmd'], {})).not.toHaveProperty('keepAlive');
  });

  test('anything else is bad usage', () => {
    expect(() => parseCli(['--name', 'job', '--keep-alive', 'fiber', '--', 'cmd'], {})).toThrow(
      new UsageError('invalid --keep-alive "fiber": expected loop or thread'),
    );
  });

  test('a command running for several leases keeps the lock, renewed from the thread', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'singleton-cli-keepalive-'));
    try {
      const script = "setTimeout(() => {}, 2500); console.log('ran')";
      const result = await runCli(['--name', 'cli-thread', '--store', `file://${dir}`, '--ttl', '500', '--keep-alive', 'thread', '--', process.execPath, '-e', script], {}, 20_000);
      expect(result).toMatchObject({ code: 0, stdout: 'ran\n' });
      expect(result.stderr).toBe('');
      expect(await new FilePersister({ dir }).inspect('cli-thread')).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
