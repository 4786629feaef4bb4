/**
 * `npm run demo -- --store postgres://…`: the hot-standby demo (examples/demo.ts) on
 * PostgreSQL, end to end: it exits 0 only when one instance was active at a time, the
 * hand-over and the crash takeover were measured and the fencing tokens increased.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describePostgres, POSTGRES_URL, testPool, uniqueTable } from './helpers/postgres';
import { REPO_ROOT } from './helpers/child';

describePostgres('npm run demo -- --store postgres://…', () => {
  const table = uniqueTable('demo');

  afterAll(async () => {
    const admin = testPool({ max: 1 });
    await admin.query(`DROP TABLE IF EXISTS "${table}"`);
    await admin.end();
  });

  it('runs the demo on PostgreSQL: hand-over, crash takeover, never two active, fences increasing', async () => {
    const store = `${POSTGRES_URL}${POSTGRES_URL?.includes('?') ? '&' : '?'}table=${table}`;
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'examples', 'demo.ts'), '--store', store], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    clearTimeout(timer);
    if (code !== 0) throw new Error(`demo exited ${code}\n${stdout}\n${stderr}`);
    expect(stdout).toContain(`store: ${store}`);
    expect(stdout).toMatch(/graceful hand-over \(SIGTERM\)\s+\d+\.\d ms/);
    expect(stdout).toMatch(/crash takeover \(SIGKILL\)\s+\d+\.\d ms/);
    expect(stdout).toContain('never two active');
    expect(stdout).toMatch(/fencing tokens\s+increasing/);
  }, 120_000);
});
