/**
 * `singleton-run list` end to end, against the file store and a real Redis: the
 * real CLI lists what real holders (a `singleton-run` process and leases taken
 * through the persister) hold, as a table and as JSON, under a prefix.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { printLocks, type ListEntryJson } from '../../lib/cli/list';
import { MemoryPersister } from '../../lib/persisters/MemoryPersister';
import { persisterFromUrl } from '../../lib/persisters/fromUrl';
import type { Persister } from '../../lib/persisters/Persister';
import { CHILD, killAllCli, lines, runCli, startCli, waitForChildEvent } from './cliHarness';

const stores: Array<[string, () => { url: string; cleanup(): void }]> = [
  [
    'file',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'singleton-list-spec-'));
      return { url: pathToFileURL(join(dir, 'locks')).href, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
    },
  ],
  ['redis', () => ({ url: process.env.REDIS_URL as string, cleanup: () => undefined })],
];

describe.each(stores)('singleton-run list with the %s store', (kind, makeStore) => {
  let store: { url: string; cleanup(): void };
  let persister: Persister;
  let work: string;
  const prefix = `list-${kind}-${process.pid}-${Date.now().toString(36)}-`;

  beforeAll(async () => {
    store = makeStore();
    persister = await persisterFromUrl(store.url);
    work = mkdtempSync(join(tmpdir(), 'singleton-list-work-'));
  });

  afterAll(async () => {
    await killAllCli();
    await persister.close?.();
    rmSync(work, { recursive: true, force: true });
    store.cleanup();
  });

  it('lists every held lock under the prefix: a table, and a JSON array, sorted by name', async () => {
    const log = join(work, 'child.log');
    const holder = startCli(['--name', `${prefix}b-cli`, '--store', store.url, '--', process.execPath, CHILD, log, '--sleep', '60000']);
    const started = await waitForChildEvent(log, 'start');
    const owner = { owner: 'list-spec', hostname: 'spec-host', pid: 4242 };
    const taken = await persister.acquire({ name: `${prefix}a-lib`, token: 'a'.repeat(32), ttlMs: 60_000, owner });
    expect(taken.acquired).toBe(true);
    await persister.acquire({ name: `other-${prefix}`, token: 'c'.repeat(32), ttlMs: 60_000, owner }); // not under the prefix

    const json = await runCli(['list', '--store', store.url, '--prefix', prefix, '--json']);
    expect(json.code).toBe(0);
    const entries = JSON.parse(json.stdout) as ListEntryJson[];
    expect(entries.map((e) => e.name)).toEqual([`${prefix}a-lib`, `${prefix}b-cli`]);
    expect(entries[0]).toMatchObject({ owner: 'list-spec', hostname: 'spec-host', pid: 4242 });
    expect(entries[1].pid).toBe(holder.pid);
    expect(entries[1].fencingToken).toBe(started.env?.SINGLETON_FENCING_TOKEN);
    expect(new Date(entries[1].expiresAt).getTime()).toBeGreaterThan(Date.now());
    expect(json.stdout).not.toContain('a'.repeat(32));

    const text = await runCli(['list', '--store', store.url, '--prefix', prefix]);
    expect(text.code).toBe(0);
    const rows = lines(text.stdout);
    expect(rows[0]).toMatch(/^NAME\s+OWNER\s+HOST\s+PID\s+FENCE\s+ACQUIRED\s+EXPIRES IN$/);
    expect(rows).toHaveLength(3);
    expect(rows[1]).toMatch(new RegExp(`^${prefix}a-lib\\s+list-spec\\s+spec-host\\s+4242\\s+\\d+\\s+\\S+Z \\(.* ago\\)\\s+\\d+ s$`));
    expect(rows[2]).toContain(` ${holder.pid} `);
    expect(rows[2]).toContain(String(started.env?.SINGLETON_FENCING_TOKEN));
    // Columns line up: every row has its PID column at the same offset as the header.
    const pidColumn = rows[0].indexOf('PID');
    expect([rows[1], rows[2]].map((r) => r.slice(pidColumn).split(' ')[0])).toEqual(['4242', String(holder.pid)]);

    const everything = JSON.parse((await runCli(['list', '--store', store.url, '--json'])).stdout) as ListEntryJson[];
    expect(everything.map((e) => e.name)).toEqual(expect.arrayContaining([`${prefix}a-lib`, `${prefix}b-cli`, `other-${prefix}`]));

    holder.kill('SIGTERM'); // forwarded to its command; both end, and the lease is released
    expect((await holder.wait()).code).toBe(143);
  }, 120_000); // five CLI runs: each starts Node and tsx, seconds apiece on a loaded machine

  it('says when nothing is held under the prefix ([] with --json)', async () => {
    const text = await runCli(['list', '--store', store.url, '--prefix', `${prefix}none-`]);
    expect(text.code).toBe(0);
    expect(lines(text.stdout)).toEqual([`no lock held whose name starts with "${prefix}none-"`]);
    const json = await runCli(['list', '--store', store.url, '--prefix', `${prefix}none-`, '--json']);
    expect(JSON.parse(json.stdout)).toEqual([]);
  }, 60_000);
});

describe('singleton-run list: usage and stores that cannot list', () => {
  afterEach(killAllCli);

  it('an unknown flag is a usage error: 64, two lines pointing to --help', async () => {
    const r = await runCli(['list', '--name', 'x']);
    expect(r.code).toBe(64);
    expect(lines(r.stderr)).toEqual([expect.stringContaining("unknown option '--name'"), expect.stringContaining('--help')]);
  });

  it('a persister without list() is a clear error (69), not a crash', async () => {
    const memory = new MemoryPersister();
    const bare: Persister = {
      capabilities: { ...memory.capabilities, list: false },
      acquire: (r) => memory.acquire(r),
      renew: (r) => memory.renew(r),
      release: (r) => memory.release(r),
      inspect: (n) => memory.inspect(n),
    };
    const written: string[] = [];
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      expect(await printLocks(bare, { kind: 'list', store: 'redis://example:6379', prefix: '', json: false })).toBe(69);
    } finally {
      spy.mockRestore();
    }
    expect(written.join('')).toMatch(/redis:\/\/example:6379 cannot list its locks: its persister offers no list\(\)/);
  });
});
