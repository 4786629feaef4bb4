import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Redis from 'ioredis';
import { PersisterError, SingletonError } from '../../lib/errors';
import { FilePersister } from '../../lib/persisters/FilePersister';
import { MongoPersister } from '../../lib/persisters/MongoPersister';
import type { Persister } from '../../lib/persisters/Persister';
import { PostgresPersister } from '../../lib/persisters/PostgresPersister';
import { RedisPersister } from '../../lib/persisters/RedisPersister';
import {
  createPersisterFromUrl,
  parseMongoUrl,
  persisterFromUrl,
  redactUrl,
  type DriverImporter,
} from '../../lib/persisters/fromUrl';
import type { Pool } from 'pg';
import { describePostgres, POSTGRES_URL, testPool, uniqueTable } from '../helpers/postgres';
import { freePort } from '../setup/redisServer';
import { newToken, testOwner, waitUntil } from './conformance';

const REDIS_URL = process.env.REDIS_URL as string;
const closeLater: Persister[] = [];
afterAll(async () => {
  await Promise.all(closeLater.map((p) => p.close?.()));
});

async function make(url: string, options?: Parameters<typeof persisterFromUrl>[1]): Promise<Persister> {
  const persister = await persisterFromUrl(url, options);
  closeLater.push(persister);
  return persister;
}

describe('persisterFromUrl: redis', () => {
  let admin: Redis;
  beforeAll(() => {
    admin = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    await admin.quit();
  });

  /** Names of the connections the server sees. */
  async function connectionNames(): Promise<string[]> {
    const list = (await admin.client('LIST')) as string;
    return list
      .split('\n')
      .map((line) => /\bname=(\S*)/.exec(line)?.[1] ?? '')
      .filter(Boolean);
  }

  it('makes a RedisPersister that connects on first use, takes ?keyPrefix=, and closes its connection', async () => {
    const connectionName = `fromurl-${randomBytes(4).toString('hex')}`;
    const prefix = `fromurl-${randomBytes(2).toString('hex')}:`;
    const persister = await persisterFromUrl(`${REDIS_URL}/0?keyPrefix=${encodeURIComponent(prefix)}`, {
      redisOptions: { connectionName },
    });
    expect(persister).toBeInstanceOf(RedisPersister);
    expect((persister as RedisPersister).keyPrefix).toBe(prefix);
    expect(await connectionNames()).not.toContain(connectionName); // created, not connected

    const token = newToken();
    const result = await persister.acquire({ name: 'job', token, ttlMs: 10_000, owner: testOwner(1) });
    expect(result.acquired).toBe(true);
    // The prefix went to the persister, not to ioredis (which would have prefixed it twice).
    expect(await admin.exists(`${prefix}{job}`)).toBe(1);
    expect(await connectionNames()).toContain(connectionName);
    expect(await persister.release({ name: 'job', token })).toBe(true);

    await persister.close?.();
    await waitUntil(async () => !(await connectionNames()).includes(connectionName), 3_000, 'the connection to close');
  });

  it('works for a rediss:// URL too (builds it, TLS connects on first use)', async () => {
    const persister = await make('rediss://127.0.0.1:1');
    expect(persister).toBeInstanceOf(RedisPersister);
  });

  it('an unreachable server is a PersisterError on the first operation, not at creation, and close() does not hang', async () => {
    const port = await freePort();
    const started = Date.now();
    const persister = await persisterFromUrl(`redis://127.0.0.1:${port}`, { operationTimeoutMs: 1_000 });
    expect(Date.now() - started).toBeLessThan(500);
    const error = await persister.acquire({ name: 'job', token: newToken(), ttlMs: 1_000, owner: testOwner(1) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PersisterError);
    expect(Date.now() - started).toBeLessThan(3_000);
    const closing = Date.now();
    await persister.close?.();
    expect(Date.now() - closing).toBeLessThan(2_000);
  });

  it('refuses a path that is not valid percent-encoding', async () => {
    await expect(persisterFromUrl('redis://127.0.0.1:1/%E0%A4%A')).rejects.toThrow(/its path is not valid percent-encoding/);
  });

  it.each([['/abc'], ['?db=abc'], ['/1?db=-2']])('refuses a database index that is not a whole number (%s), naming it', async (tail) => {
    const error = await persisterFromUrl(`redis://127.0.0.1:1${tail}`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/the database index "(abc|-2)" \(URL (path|parameter db)\) is not a whole number/);
  });

  it('a database index the server does not have: every call fails saying so, and nothing lands in database 0', async () => {
    const prefix = `test:${process.pid}:db99:`;
    const persister = await persisterFromUrl(`${REDIS_URL}/99`, { keyPrefix: prefix, operationTimeoutMs: 1_000 });
    try {
      const error = await persister.acquire({ name: 'job', token: newToken(), ttlMs: 10_000, owner: testOwner(1) }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PersisterError);
      expect((error as Error).message).toMatch(/refused the database index in its URL \(.*DB index is out of range/);
      await expect(persister.inspect('job')).rejects.toThrow(/refused the database index/);
      expect(await admin.exists(`${prefix}{job}`)).toBe(0);
    } finally {
      await persister.close?.();
    }
  });

  it.each([
    ['redis://127.0.0.1:1?keyprefix=app:', 'keyprefix', 'keyPrefix'],
    ['redis://127.0.0.1:1?operationtimeoutms=5', 'operationtimeoutms', 'operationTimeoutMs'],
    ['postgres://u@127.0.0.1:1/db?Table=locks', 'Table', 'table'],
    ['mongodb://127.0.0.1:1/db?Collection=locks', 'Collection', 'collection'],
  ])('refuses one of our parameters spelt in another case (%s): the driver would ignore it', async (url, key, meant) => {
    const error = await persisterFromUrl(url).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toContain(`its parameter "${key}" is spelt "${meant}"`);
  });

  it('takes ?operationTimeoutMs= from the URL, the option winning over it', async () => {
    const fromUrl = (await make(`${REDIS_URL}?operationTimeoutMs=1234`)) as RedisPersister;
    expect(fromUrl.operationTimeoutMs).toBe(1234);
    const fromOption = (await make(`${REDIS_URL}?operationTimeoutMs=1234&keyPrefix=a:`, { operationTimeoutMs: 99, keyPrefix: 'b:' })) as RedisPersister;
    expect(fromOption.operationTimeoutMs).toBe(99);
    expect(fromOption.keyPrefix).toBe('b:');
    await expect(persisterFromUrl(`${REDIS_URL}?operationTimeoutMs=soon`)).rejects.toThrow(/operationTimeoutMs/);
  });
});

describe('persisterFromUrl: mongodb', () => {
  it('makes a MongoPersister on an unconnected client: database from the path (default "singleton"), ?collection=', async () => {
    const plain = (await make('mongodb://127.0.0.1:1')) as MongoPersister;
    expect(plain).toBeInstanceOf(MongoPersister);
    expect(plain.collection.dbName).toBe('singleton');
    expect(plain.collection.collectionName).toBe('singleton_leases');

    const named = (await make('mongodb://u:p@h1:27017,h2:27018/app?collection=locks&replicaSet=rs0&authSource=admin')) as MongoPersister;
    expect(named.collection.dbName).toBe('app');
    expect(named.collection.collectionName).toBe('locks');

    const option = (await make('mongodb://h/app?collection=locks', { collection: 'leases' })) as MongoPersister;
    expect(option.collection.collectionName).toBe('leases');

    const srv = (await make('mongodb+srv://cluster0.example.invalid/jobs')) as MongoPersister; // no DNS until the first operation
    expect(srv.collection.dbName).toBe('jobs');
  });

  it('parses multi-host URLs and hands the driver everything but its own parameters', () => {
    expect(parseMongoUrl('mongodb://u:p%2Fq@a:1,b:2/my%20db?collection=c&w=majority#frag')).toEqual({
      driverUrl: 'mongodb://u:p%2Fq@a:1,b:2/my%20db?w=majority',
      database: 'my db',
      collection: 'c',
      hasServerSelectionTimeout: false,
    });
    expect(parseMongoUrl('mongodb+srv://h/?serverSelectionTimeoutMS=100')).toMatchObject({
      driverUrl: 'mongodb+srv://h/?serverSelectionTimeoutMS=100',
      database: 'singleton',
      hasServerSelectionTimeout: true,
    });
  });

  it('an unreachable server is a PersisterError on the first operation (URL serverSelectionTimeoutMS honoured)', async () => {
    const port = await freePort();
    const persister = await persisterFromUrl(`mongodb://127.0.0.1:${port}/?serverSelectionTimeoutMS=300`);
    const started = Date.now();
    await expect(persister.inspect('job')).rejects.toBeInstanceOf(PersisterError);
    expect(Date.now() - started).toBeLessThan(2_000);
    await persister.close?.();
  });

  it('refuses what the driver refuses, as a TypeError without the password', async () => {
    const error = await persisterFromUrl('mongodb://user:s3cret@h/db?notAnOption=1').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/notanoption/i);
    expect((error as Error).message).not.toMatch(/s3cret/);
    await expect(persisterFromUrl('mongodb://')).rejects.toThrow(TypeError);
    await expect(persisterFromUrl('mongodb:/nohost')).rejects.toThrow(TypeError);
  });
});

describePostgres('persisterFromUrl: postgres', () => {
  const url = POSTGRES_URL as string;
  const withParams = (params: string) => `${url}${url.includes('?') ? '&' : '?'}${params}`;

  it('makes a PostgresPersister on a pool it owns: ?table= and ?schema= taken out, the table made on first use, close() ends the pool', async () => {
    const table = uniqueTable('fromurl');
    const admin = testPool({ max: 1 });
    try {
      for (const scheme of ['postgres:', 'postgresql:']) {
        const persister = (await persisterFromUrl(withParams(`table=${table}&schema=public`).replace(/^postgres(ql)?:/, scheme))) as PostgresPersister;
        expect(persister).toBeInstanceOf(PostgresPersister);
        expect(persister.table).toBe(`public.${table}`);
        const token = newToken();
        const result = await persister.acquire({ name: `job-${scheme}`, token, ttlMs: 10_000, owner: testOwner(1) });
        expect(result.acquired).toBe(true);
        const { rows } = await admin.query(`SELECT name FROM public."${table}" WHERE name = $1`, [`job-${scheme}`]);
        expect(rows).toHaveLength(1);
        const pool = persister.pgPool as Pool;
        expect(pool.totalCount).toBeGreaterThan(0);
        await persister.close();
        expect(pool.ended).toBe(true);
      }
    } finally {
      await admin.query(`DROP TABLE IF EXISTS public."${table}"`);
      await admin.end();
    }
  });

  it('takes ?operationTimeoutMs=, the options winning over the URL', async () => {
    const fromUrl = (await make(withParams('operationTimeoutMs=1234&table=a'))) as PostgresPersister;
    expect(fromUrl.operationTimeoutMs).toBe(1234);
    expect(fromUrl.table).toBe('a');
    const fromOption = (await make(withParams('operationTimeoutMs=1234&table=a'), { operationTimeoutMs: 99, table: 'b' })) as PostgresPersister;
    expect(fromOption.operationTimeoutMs).toBe(99);
    expect(fromOption.table).toBe('b');
    await expect(persisterFromUrl(withParams('operationTimeoutMs=soon'))).rejects.toThrow(/operationTimeoutMs/);
    await expect(persisterFromUrl(withParams('table=Robert%27;DROP'))).rejects.toThrow(TypeError);
  });

  it('an unreachable server is a PersisterError on the first operation, without the password, and close() does not hang', async () => {
    const port = await freePort();
    const started = Date.now();
    const persister = await persisterFromUrl(`postgres://u:hunter2@127.0.0.1:${port}/db`, { operationTimeoutMs: 1_000 });
    expect(Date.now() - started).toBeLessThan(500);
    const error = await persister.acquire({ name: 'job', token: newToken(), ttlMs: 1_000, owner: testOwner(1) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PersisterError);
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
    expect((error as Error).message).not.toContain('hunter2');
    expect(Date.now() - started).toBeLessThan(3_000);
    const closing = Date.now();
    await persister.close();
    expect(Date.now() - closing).toBeLessThan(2_000);
  });
});

describe('persisterFromUrl: file', () => {
  it('maps file URLs to FilePersister directories', async () => {
    const dir = join(tmpdir(), `fromurl-${randomBytes(4).toString('hex')}`);
    const abs = (await make(`file://${dir}`)) as FilePersister;
    expect(abs).toBeInstanceOf(FilePersister);
    expect(abs.dir).toBe(dir);
    expect(((await make('file:')) as FilePersister).dir).toBe(new FilePersister().dir);
    expect(((await make('file://')) as FilePersister).dir).toBe(new FilePersister().dir);
    expect(((await make('file://localhost/tmp/x')) as FilePersister).dir).toBe('/tmp/x');
    expect(((await make('file:///tmp/a%20b')) as FilePersister).dir).toBe('/tmp/a b');
    expect(((await make('file:relative/locks')) as FilePersister).dir).toBe(resolve('relative/locks'));
    expect(((await make('FILE:/tmp/y')) as FilePersister).dir).toBe('/tmp/y');
    await expect(persisterFromUrl('file://elsewhere/tmp/x')).rejects.toThrow(TypeError);

    const token = newToken();
    const result = await abs.acquire({ name: 'job', token, ttlMs: 5_000, owner: testOwner(1) });
    expect(result.acquired).toBe(true);
    expect(await abs.release({ name: 'job', token })).toBe(true);
  });
});

describe('persisterFromUrl: bad URLs', () => {
  it.each([
    [42],
    [undefined],
    [''],
    ['localhost:6379'],
    ['http://example.com'],
    ['mysql://user:hunter2@db/app'],
    ['postgres:/user:hunter2@db/app'],
    ['redis:no-slashes'],
    ['redis://[::1'],
  ])('%p → TypeError listing the supported schemes', async (url) => {
    const error = await persisterFromUrl(url as string).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TypeError);
    const message = (error as Error).message;
    for (const scheme of ['redis://', 'rediss://', 'mongodb://', 'mongodb+srv://', 'postgres://', 'postgresql://', 'file:']) expect(message).toContain(scheme);
    expect(message).not.toContain('hunter2');
  });

  it('redacts passwords', () => {
    expect(redactUrl('redis://:pw@h:1/0')).toBe('redis://:***@h:1/0');
    expect(redactUrl('mongodb://u:p@a,b/db')).toBe('mongodb://u:***@a,b/db');
    expect(redactUrl('redis://h:1/0')).toBe('redis://h:1/0');
    expect(redactUrl('postgres://u:secret@h:5432/db?table=t')).toBe('postgres://u:***@h:5432/db?table=t');
    expect(redactUrl('postgresql://h/db?user=u&password=secret&sslmode=require')).toBe('postgresql://h/db?user=u&password=***&sslmode=require');
  });
});

describe('persisterFromUrl: missing driver', () => {
  const missing =
    (driver: string): DriverImporter =>
    async () => {
      throw Object.assign(new Error(`Cannot find module '${driver}'\nRequire stack:\n- /app/index.js`), { code: 'MODULE_NOT_FOUND' });
    };

  it.each([
    ['redis://127.0.0.1:6379', 'ioredis'],
    ['rediss://127.0.0.1:6379', 'ioredis'],
    ['mongodb://127.0.0.1/db', 'mongodb'],
    ['mongodb+srv://cluster.example.invalid/db', 'mongodb'],
    ['postgres://127.0.0.1/db', 'pg'],
    ['postgresql://u:p@127.0.0.1/db', 'pg'],
  ])('%s without %s → SINGLETON_DRIVER_MISSING saying what to install', async (url, driver) => {
    const error = await createPersisterFromUrl(url, {}, missing(driver)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SingletonError);
    expect((error as SingletonError).code).toBe('SINGLETON_DRIVER_MISSING');
    expect((error as Error).message).toContain(`npm install ${driver}`);
    expect((error as Error).cause).toBeInstanceOf(Error);
  });

  it('ESM-style ERR_MODULE_NOT_FOUND counts too; other import failures pass through unchanged', async () => {
    const esm: DriverImporter = async () => {
      throw Object.assign(new Error("Cannot find package 'mongodb' imported from /app/x.mjs"), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    await expect(createPersisterFromUrl('mongodb://h/db', {}, esm)).rejects.toMatchObject({ code: 'SINGLETON_DRIVER_MISSING' });
    const broken = new Error('driver crashed while loading');
    const crashing: DriverImporter = async () => {
      throw broken;
    };
    await expect(createPersisterFromUrl('redis://h', {}, crashing)).rejects.toBe(broken);
  });

  it('file: needs no driver', async () => {
    const never: DriverImporter = async () => {
      throw new Error('should not import');
    };
    expect(await createPersisterFromUrl('file:', {}, never)).toBeInstanceOf(FilePersister);
  });
});
