/**
 * MongoPersister.
 *
 * 1. The conformance suite against a real MongoDB when `MONGODB_URL` is set
 *    (or `mongodb-memory-server` when it is installed). Otherwise the suite is
 *    reported by name as not run, loudly.
 * 2. Everywhere: the exact filters and update pipelines the persister sends
 *    (server clock only, fence from the stored one), their meaning checked by a
 *    small evaluator of the aggregation operators they use, the persister's
 *    handling of the driver's answers (duplicate key → conflict, Long fences),
 *    constructor validation, and a down server → PersisterError, no hang.
 */
import { randomBytes } from 'node:crypto';
import { Long, MongoClient, type Collection, type Db, type Document } from 'mongodb';
import { Coalescer } from '../../lib/Coalescer';
import { MongoOutcomeStore } from '../../lib/coalescer/MongoOutcomeStore';
import { outcomeStoreFor } from '../../lib/coalescer/OutcomeStore';
import { PersisterError } from '../../lib/errors';
import { MongoPersister } from '../../lib/persisters/MongoPersister';
import {
  EVICTION_FIELDS,
  evictedFilter,
  forceReleasePipeline,
  listFilter,
  NEXT_FENCE,
  WITHOUT_TOKEN,
  acquireFilter,
  acquirePipeline,
  heldByFilter,
  isDuplicateKeyError,
  liveFilter,
  releasePipeline,
  renewPipeline,
  toFencingToken,
} from '../../lib/persisters/mongoOperations';
import { freePort } from '../setup/redisServer';
import { describePersister, newToken, testOwner, waitUntil } from './conformance';

// ---------------------------------------------------------------------------------------------
// 1. Conformance against a real server, or a loud, named "not run".
// ---------------------------------------------------------------------------------------------

type MongoTarget = { url: string; stop?: () => Promise<void> };

/** `mongodb-memory-server` only if it is installed: it is not a dependency of this project. */
function memoryServerModule(): string | undefined {
  try {
    return require.resolve('mongodb-memory-server');
  } catch {
    return undefined;
  }
}

const MONGODB_URL = process.env.MONGODB_URL;
const MEMORY_SERVER = MONGODB_URL ? undefined : memoryServerModule();

async function startTarget(): Promise<MongoTarget> {
  if (MONGODB_URL) return { url: MONGODB_URL };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { MongoMemoryReplSet } = require(MEMORY_SERVER as string) as {
    MongoMemoryReplSet: { create(o: unknown): Promise<{ getUri(): string; stop(): Promise<unknown> }> };
  };
  const server = await MongoMemoryReplSet.create({ replSet: { count: 1 } });
  return { url: server.getUri(), stop: async () => void (await server.stop()) };
}

if (MONGODB_URL || MEMORY_SERVER) {
  const where = MONGODB_URL ? 'MONGODB_URL' : 'mongodb-memory-server';
  for (const mode of ['Collection', 'Db'] as const) {
    describePersister(`MongoPersister conformance (${where}, built from a ${mode})`, async () => {
      const target = await startTarget();
      const client = new MongoClient(target.url, { serverSelectionTimeoutMS: 5_000 });
      const db = client.db(process.env.MONGODB_DB ?? 'singleton_test');
      const collectionName = `conformance_${randomBytes(4).toString('hex')}`;
      const persister =
        mode === 'Collection' ? new MongoPersister(db.collection(collectionName)) : new MongoPersister(db, { collection: collectionName });
      return {
        persister,
        cleanup: async () => {
          await db
            .collection(collectionName)
            .drop()
            .catch(() => undefined);
          await client.close();
          await target.stop?.();
        },
      };
    });
  }
  describe(`Coalescer on MongoDB (${MONGODB_URL ? 'MONGODB_URL' : 'mongodb-memory-server'}): outcomes in <collection>_outcomes`, () => {
    let target: MongoTarget;
    let client: MongoClient;
    let db: Db;
    const collectionName = `coalescer_${randomBytes(4).toString('hex')}`;
    beforeAll(async () => {
      target = await startTarget();
      client = new MongoClient(target.url, { serverSelectionTimeoutMS: 5_000 });
      db = client.db(process.env.MONGODB_DB ?? 'singleton_test');
    });
    afterAll(async () => {
      for (const name of [collectionName, `${collectionName}_outcomes`]) await db.collection(name).drop().catch(() => undefined);
      await client.close();
      await target.stop?.();
    });

    it('runs fn once for two Coalescers (no outcomes option), the waiter polling the stored outcome; it expires by the server clock', async () => {
      const a = new Coalescer(new MongoPersister(db, { collection: collectionName }), { resultTtlMs: 1_000, retryIntervalMs: 50 });
      const b = new Coalescer(new MongoPersister(db, { collection: collectionName }), { resultTtlMs: 1_000, retryIntervalMs: 50 });
      try {
        let runs = 0;
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        const fromA = a.run('report', async () => {
          runs++;
          await gate;
          return { total: 42 };
        });
        await waitUntil(async () => (await db.collection(collectionName).countDocuments({ _id: 'report' } as Document)) === 1, 5_000, 'a to hold');
        const fromB = b.run('report', async () => {
          runs++;
          return { total: -1 };
        });
        release();
        expect(await fromA).toEqual({ total: 42 });
        expect(await fromB).toEqual({ total: 42 });
        expect(runs).toBe(1);
        const stored = await db.collection(`${collectionName}_outcomes`).findOne({ _id: 'report' } as Document);
        expect(JSON.parse(String(stored?.outcome))).toMatchObject({ ok: true, value: { total: 42 } });
        await waitUntil(async () => (await (outcomeStoreFor(new MongoPersister(db, { collection: collectionName })).store.get('report'))) === null, 5_000, 'the outcome to expire');
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
} else {
  const reason = 'no MongoDB — set MONGODB_URL=mongodb://… to run';
  // eslint-disable-next-line no-console
  console.warn(`MongoPersister conformance suite and the Coalescer's MongoDB outcome store NOT RUN (${reason}).`);
  describe(`MongoPersister conformance (not run: ${reason})`, () => {
    it.todo(`run the persister conformance suite against MongoDB (${reason})`);
  });
  describe(`Coalescer on MongoDB (not run: ${reason})`, () => {
    it.todo(`run the Coalescer with its outcomes in <collection>_outcomes against MongoDB (${reason})`);
  });
}

// ---------------------------------------------------------------------------------------------
// 2a. What is sent: filters and pipelines, as data.
// ---------------------------------------------------------------------------------------------

/** Every value inside `tree`, depth first. */
function* walk(tree: unknown): Generator<unknown> {
  yield tree;
  if (Array.isArray(tree)) for (const v of tree) yield* walk(v);
  else if (tree !== null && typeof tree === 'object' && !(tree instanceof Date)) for (const v of Object.values(tree)) yield* walk(v);
}

/** The pipeline / filter sends no client time: no Date, and no number that looks like "now" in ms or µs. */
function expectNoClientClock(tree: unknown): void {
  const now = Date.now();
  for (const v of walk(tree)) {
    expect(v).not.toBeInstanceOf(Date);
    if (typeof v === 'number' || typeof v === 'bigint') {
      const n = Number(v);
      expect(Math.abs(n - now) < 86_400_000 || Math.abs(n - now * 1000) < 86_400_000_000).toBe(false);
    }
  }
}

const mentionsNow = (tree: unknown) => [...walk(tree)].includes('$$NOW');

describe('MongoPersister: filters and pipelines', () => {
  const owner = testOwner(1);

  it('acquire matches only a free, released, run-out (server clock) or own lease of that _id', () => {
    expect(acquireFilter('job', 'tok')).toEqual({
      _id: 'job',
      $or: [{ token: null }, { token: 'tok' }, { $expr: { $lte: ['$expiresAt', '$$NOW'] } }],
    });
  });

  it('acquire pipeline decides with $$NOW only and seeds the fence from the stored one and the server clock', () => {
    const pipeline = acquirePipeline('tok', 15_000, owner);
    expect(pipeline).toHaveLength(1);
    const set = pipeline[0].$set as Record<string, unknown>;
    expect(Object.keys(pipeline[0])).toEqual(['$set']);
    expect(Object.keys(set).sort()).toEqual(
      ['acquiredAt', 'expired', 'expiresAt', 'fence', 'hostname', 'owner', 'pid', 'released', 'token'].sort(),
    );
    expect(set.expiresAt).toEqual({ $add: ['$$NOW', { $literal: 15_000 }] });
    expect(set.acquiredAt).toEqual({ $cond: { if: expect.anything(), then: '$acquiredAt', else: '$$NOW' } });
    // A new lease's fence: max(stored fence + 1, server ms × 1000); a live re-acquire keeps the stored one.
    expect(set.fence).toEqual({ $cond: { if: expect.anything(), then: '$fence', else: NEXT_FENCE } });
    expect(NEXT_FENCE).toEqual({
      $toLong: { $max: [{ $add: [{ $toLong: { $ifNull: ['$fence', 0] } }, 1] }, { $multiply: [{ $toLong: '$$NOW' }, 1000] }] },
    });
    expect(set.token).toEqual({ $literal: 'tok' });
    expect(set.owner).toEqual({ $literal: owner.owner });
    expect(set.hostname).toEqual({ $literal: owner.hostname });
    expect(set.pid).toEqual({ $literal: owner.pid });
    expect(set.released).toEqual({ $literal: false });
    expect(mentionsNow(set.expired)).toBe(true);
    expectNoClientClock(pipeline);
    expectNoClientClock(acquireFilter('job', 'tok'));
  });

  it('caller strings are literals, never field paths or operators', () => {
    const evil = { owner: '$token', hostname: '$$NOW', pid: 7 };
    const set = acquirePipeline('$fence', 1_000, evil)[0].$set as Record<string, unknown>;
    expect(set.token).toEqual({ $literal: '$fence' });
    expect(set.owner).toEqual({ $literal: '$token' });
    expect(set.hostname).toEqual({ $literal: '$$NOW' });
    // In query filters a string is compared as a value (operators are only object keys).
    expect(heldByFilter('$x', '$y')).toEqual({ _id: '$x', token: '$y', $expr: { $gt: ['$expiresAt', '$$NOW'] } });
  });

  it('renew matches _id + token + not run out (server clock) and moves only expiresAt', () => {
    expect(heldByFilter('job', 'tok')).toEqual({ _id: 'job', token: 'tok', $expr: { $gt: ['$expiresAt', '$$NOW'] } });
    expect(renewPipeline(5_000)).toEqual([{ $set: { expiresAt: { $add: ['$$NOW', { $literal: 5_000 }] } } }]);
    expectNoClientClock(renewPipeline(5_000));
  });

  it('release keeps the document (and fence): token cleared, ends at $$NOW, marked released', () => {
    expect(releasePipeline()).toEqual([
      { $set: { token: { $literal: null }, expiresAt: '$$NOW', released: { $literal: true } } },
      { $unset: 'expired' },
    ]);
    for (const stage of releasePipeline()) expect(JSON.stringify(stage)).not.toMatch(/fence/);
  });

  it('inspect reads a live lease by the server clock', () => {
    expect(liveFilter('job')).toEqual({ _id: 'job', token: { $ne: null }, $expr: { $gt: ['$expiresAt', '$$NOW'] } });
  });

  it('forced release ends whoever holds it, keeps the fence and notes the eviction on the server (its token never read back)', () => {
    const pipeline = forceReleasePipeline({ hostname: 'ops-host', pid: 7 });
    expect(pipeline).toEqual([
      {
        $set: {
          evicted: { token: '$token', at: '$$NOW', hostname: { $literal: 'ops-host' }, pid: { $literal: 7 }, fence: '$fence' },
          token: { $literal: null },
          expiresAt: '$$NOW',
          released: { $literal: true },
        },
      },
      { $unset: 'expired' },
    ]);
    expectNoClientClock(pipeline);
    expect(WITHOUT_TOKEN).toEqual({ token: 0, 'evicted.token': 0 });
    expect(evictedFilter('job', 'tok')).toEqual({ _id: 'job', 'evicted.token': 'tok' });
    expect(EVICTION_FIELDS).not.toHaveProperty('evicted.token');
  });

  it('list reads live leases by the server clock, under a prefix taken literally', () => {
    expect(listFilter('')).toEqual({ token: { $ne: null }, $expr: { $gt: ['$expiresAt', '$$NOW'] } });
    expect(listFilter('a.b*(c)[d]$^')).toEqual({
      _id: { $regex: '^a\\.b\\*\\(c\\)\\[d\\]\\$\\^' },
      token: { $ne: null },
      $expr: { $gt: ['$expiresAt', '$$NOW'] },
    });
    expect(new RegExp((listFilter('a.b*') as { _id: { $regex: string } })._id.$regex).test('a.b*x')).toBe(true);
    expect(new RegExp((listFilter('a.b*') as { _id: { $regex: string } })._id.$regex).test('aXb*x')).toBe(false);
  });

  it('fences come back as numbers whatever BSON type the driver returns', () => {
    const micros = 1_760_000_000_000_000;
    expect(toFencingToken(micros)).toBe(micros);
    expect(toFencingToken(BigInt(micros))).toBe(micros);
    expect(toFencingToken(Long.fromNumber(micros))).toBe(micros);
    expect(toFencingToken(Long.fromString('9007199254740993'))).toBe(9007199254740993n);
    expect(() => toFencingToken(null)).toThrow(TypeError);
    expect(() => toFencingToken(1.5)).toThrow(TypeError);
  });

  it('recognises the duplicate key error', () => {
    expect(isDuplicateKeyError({ code: 11000 })).toBe(true);
    expect(isDuplicateKeyError({ codeName: 'DuplicateKey' })).toBe(true);
    expect(isDuplicateKeyError({ code: 11600 })).toBe(false);
    expect(isDuplicateKeyError(new Error('E11000'))).toBe(false);
    expect(isDuplicateKeyError(null)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// 2b. What the pipelines mean: a small evaluator of exactly the operators they use, with
//     MongoDB's rules (a single $set stage reads the input document; missing sorts below null;
//     $$REMOVE drops a field). It is a model of the server, not a server: it checks the logic
//     of the conditions, not MongoDB itself (that is what MONGODB_URL is for).
// ---------------------------------------------------------------------------------------------

const REMOVE = Symbol('REMOVE');
type Doc = Record<string, unknown>;

/** BSON comparison order of the types involved: missing < null < numbers < strings < objects < booleans < dates. */
function rank(v: unknown): number {
  if (v === undefined) return 0;
  if (v === null) return 1;
  if (typeof v === 'number' || typeof v === 'bigint') return 2;
  if (typeof v === 'string') return 3;
  if (typeof v === 'boolean') return 8;
  if (v instanceof Date) return 9;
  return 4;
}

function compare(a: unknown, b: unknown): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
  if (rank(a) === 2) return Number(BigInt(a as number | bigint) - BigInt(b as number | bigint));
  if (typeof a === 'string') return a < (b as string) ? -1 : a > (b as string) ? 1 : 0;
  if (typeof a === 'boolean') return Number(a) - Number(b);
  return JSON.stringify(a) === JSON.stringify(b) ? 0 : 1;
}

function evaluate(expr: unknown, doc: Doc, now: Date): unknown {
  if (typeof expr === 'string') {
    if (expr === '$$NOW') return now;
    if (expr === '$$REMOVE') return REMOVE;
    if (expr.startsWith('$$')) throw new Error(`model: unknown variable ${expr}`);
    if (expr.startsWith('$')) return doc[expr.slice(1)];
    return expr;
  }
  if (Array.isArray(expr)) return expr.map((e) => evaluate(e, doc, now));
  if (expr === null || typeof expr !== 'object' || expr instanceof Date) return expr;
  const keys = Object.keys(expr);
  const op = keys[0];
  if (keys.length === 1 && op.startsWith('$')) {
    const arg = (expr as Doc)[op];
    if (op === '$literal') return arg;
    if (op === '$cond') {
      const c = arg as { if: unknown; then: unknown; else: unknown };
      return evaluate(c.if, doc, now) === true ? evaluate(c.then, doc, now) : evaluate(c.else, doc, now);
    }
    const args = (Array.isArray(arg) ? arg : [arg]).map((a) => evaluate(a, doc, now));
    switch (op) {
      case '$and':
        return args.every((a) => a === true);
      case '$eq':
        return compare(args[0], args[1]) === 0;
      case '$ne':
        return compare(args[0], args[1]) !== 0;
      case '$gt':
        return compare(args[0], args[1]) > 0;
      case '$lte':
        return compare(args[0], args[1]) <= 0;
      case '$ifNull':
        return args[0] === undefined || args[0] === null ? args[1] : args[0];
      case '$toLong': {
        const v = args[0];
        if (v instanceof Date) return BigInt(v.getTime());
        if (typeof v === 'number' || typeof v === 'bigint') return BigInt(v);
        throw new Error(`model: $toLong of ${String(v)}`);
      }
      case '$max':
        return args.reduce((m, a) => (compare(a, m) > 0 ? a : m));
      case '$add': {
        const date = args.find((a) => a instanceof Date) as Date | undefined;
        const sum = args.filter((a) => !(a instanceof Date)).reduce<bigint>((s, a) => s + BigInt(a as number | bigint), 0n);
        if (date) return new Date(date.getTime() + Number(sum));
        return args.some((a) => typeof a === 'bigint') ? sum : Number(sum);
      }
      case '$multiply':
        return args.reduce<bigint>((p, a) => p * BigInt(a as number | bigint), 1n);
      default:
        throw new Error(`model: operator ${op} is not modelled`);
    }
  }
  const out: Doc = {};
  for (const [k, v] of Object.entries(expr)) {
    const value = evaluate(v, doc, now);
    if (value !== REMOVE && value !== undefined) out[k] = value;
  }
  return out;
}

/** The value at a dotted path (`evicted.token`). */
function at(doc: Doc, path: string): unknown {
  return path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Doc)[k] : undefined), doc);
}

function matches(filter: Doc, doc: Doc, now: Date): boolean {
  return Object.entries(filter).every(([key, cond]) => {
    if (key.includes('.')) return cond !== null && typeof cond !== 'object' && compare(at(doc, key), cond) === 0;
    if (cond !== null && typeof cond === 'object' && '$regex' in (cond as Doc)) {
      return typeof doc[key] === 'string' && new RegExp((cond as Doc).$regex as string).test(doc[key] as string);
    }
    if (key === '$or') return (cond as Doc[]).some((f) => matches(f, doc, now));
    if (key === '$expr') return evaluate(cond, doc, now) === true;
    if (cond !== null && typeof cond === 'object' && '$ne' in (cond as Doc)) {
      const ne = (cond as Doc).$ne;
      return ne === null ? doc[key] !== null && doc[key] !== undefined : compare(doc[key], ne) !== 0;
    }
    if (cond === null) return doc[key] === null || doc[key] === undefined;
    return compare(doc[key], cond) === 0;
  });
}

function applyPipeline(pipeline: Doc[], input: Doc, now: Date): Doc {
  let doc = { ...input };
  for (const stage of pipeline) {
    if ('$set' in stage) {
      const next = { ...doc };
      for (const [k, v] of Object.entries(stage.$set as Doc)) {
        const value = evaluate(v, doc, now); // every expression of one stage reads that stage's input
        if (value === REMOVE) delete next[k];
        else next[k] = value;
      }
      doc = next;
    } else if ('$unset' in stage) {
      const { [stage.$unset as string]: _gone, ...rest } = doc;
      doc = rest;
    } else throw new Error(`model: stage ${Object.keys(stage)[0]} is not modelled`);
  }
  return doc;
}

function project(doc: Doc, projection: Doc | undefined): Doc {
  if (!projection) return doc;
  const include = Object.entries(projection).filter(([, v]) => v === 1).map(([k]) => k);
  if (include.length > 0) {
    const out: Doc = projection._id === 0 ? {} : { _id: doc._id };
    for (const path of include) {
      const value = at(doc, path);
      if (value === undefined) continue;
      const keys = path.split('.');
      let target = out;
      for (const k of keys.slice(0, -1)) target = (target[k] ??= {}) as Doc;
      target[keys[keys.length - 1]] = value;
    }
    return out;
  }
  const out: Doc = Object.fromEntries(Object.entries(doc).filter(([k]) => projection[k] !== 0));
  for (const path of Object.keys(projection).filter((k) => k.includes('.') && projection[k] === 0)) {
    const [head, ...rest] = path.split('.');
    if (out[head] !== null && typeof out[head] === 'object') out[head] = project(out[head] as Doc, { [rest.join('.')]: 0 });
  }
  return out;
}

/**
 * The subset of a driver `Collection` the persister calls, answering with the
 * model above. Fences are stored as bigint and returned as BSON `Long`, as a
 * driver configured with `promoteLongs: false` would return them.
 */
class ModelCollection {
  readonly collectionName = 'model';
  readonly docs = new Map<string, Doc>();
  readonly calls: Array<{ method: string; filter: Doc; update?: Doc[]; options?: Doc }> = [];
  now = new Date('2030-01-01T00:00:00.000Z');
  /** Makes the next findOneAndUpdate fail with a duplicate key, as an upsert losing a race does. */
  raceNext = 0;

  private out(doc: Doc, projection?: Doc): Doc {
    const copy = project(doc, projection);
    if (typeof copy.fence === 'bigint') copy.fence = Long.fromBigInt(copy.fence);
    return copy;
  }

  async findOneAndUpdate(filter: Doc, update: Doc[], options: Doc): Promise<Doc | null> {
    this.calls.push({ method: 'findOneAndUpdate', filter, update, options });
    const id = filter._id as string;
    const current = this.docs.get(id);
    if (this.raceNext > 0) {
      this.raceNext--;
      throw Object.assign(new Error('E11000 duplicate key error'), { code: 11000 });
    }
    if (current && matches(filter, current, this.now)) {
      const next = applyPipeline(update, current, this.now);
      this.docs.set(id, next);
      return this.out(options.returnDocument === 'after' ? next : current, options.projection as Doc);
    }
    if (!options.upsert) return null;
    if (current) throw Object.assign(new Error(`E11000 duplicate key error dup key: { _id: "${id}" }`), { code: 11000 });
    const inserted = applyPipeline(update, { _id: id }, this.now);
    this.docs.set(id, inserted);
    return options.returnDocument === 'after' ? this.out(inserted, options.projection as Doc) : null;
  }

  async updateOne(filter: Doc, update: Doc[], options: Doc): Promise<{ matchedCount: number }> {
    this.calls.push({ method: 'updateOne', filter, update, options });
    const current = this.docs.get(filter._id as string);
    if (!current || !matches(filter, current, this.now)) return { matchedCount: 0 };
    this.docs.set(filter._id as string, applyPipeline(update, current, this.now));
    return { matchedCount: 1 };
  }

  async findOne(filter: Doc, options: Doc): Promise<Doc | null> {
    this.calls.push({ method: 'findOne', filter, options });
    const current = this.docs.get(filter._id as string);
    return current && matches(filter, current, this.now) ? this.out(current, options.projection as Doc) : null;
  }

  find(filter: Doc, options: Doc): { toArray(): Promise<Doc[]> } {
    this.calls.push({ method: 'find', filter, options });
    const found = [...this.docs.values()].filter((d) => matches(filter, d, this.now)).map((d) => this.out(d, options.projection as Doc));
    return { toArray: async () => found };
  }

  advance(ms: number): void {
    this.now = new Date(this.now.getTime() + ms);
  }
}

function modelPersister() {
  const model = new ModelCollection();
  const persister = new MongoPersister(model as unknown as Collection<Document>);
  return { model, persister };
}

describe('MongoPersister: pipeline semantics (model evaluator, not a server)', () => {
  const a = testOwner(1);
  const b = testOwner(2);
  const micros = (d: Date) => d.getTime() * 1000;

  it('first acquire inserts with the server time as fence, acquiredAt = $$NOW, expiresAt = $$NOW + ttl', async () => {
    const { model, persister } = modelPersister();
    const r = await persister.acquire({ name: 'n', token: 't1', ttlMs: 1_000, owner: a });
    expect(r).toEqual({
      acquired: true,
      lease: {
        name: 'n',
        owner: a.owner,
        hostname: a.hostname,
        pid: a.pid,
        fencingToken: micros(model.now),
        acquiredAt: model.now,
        expiresAt: new Date(model.now.getTime() + 1_000),
      },
    });
    expect(typeof (r.acquired && r.lease.fencingToken)).toBe('number');
    expect(model.calls[0]).toEqual({
      method: 'findOneAndUpdate',
      filter: acquireFilter('n', 't1'),
      update: acquirePipeline('t1', 1_000, a),
      options: {
        upsert: true,
        returnDocument: 'after',
        projection: { token: 0, 'evicted.token': 0 },
        writeConcern: { w: 'majority' },
        includeResultMetadata: false,
      },
    });
  });

  it('a live lease: another token conflicts (duplicate key → one read of the holder), the same token keeps fence and acquiredAt', async () => {
    const { model, persister } = modelPersister();
    const first = await persister.acquire({ name: 'n', token: 't1', ttlMs: 1_000, owner: a });
    model.advance(400);
    const other = await persister.acquire({ name: 'n', token: 't2', ttlMs: 1_000, owner: b });
    expect(other.acquired).toBe(false);
    if (!other.acquired && first.acquired) expect(other.holder).toEqual(first.lease);
    expect(model.calls.map((c) => c.method)).toEqual(['findOneAndUpdate', 'findOneAndUpdate', 'findOne']);
    expect(model.calls[2].filter).toEqual(liveFilter('n'));
    expect(model.calls[2].options).toEqual({ projection: { token: 0, 'evicted.token': 0, expired: 0 }, readPreference: 'primary' });
    const again = await persister.acquire({ name: 'n', token: 't1', ttlMs: 1_000, owner: a });
    expect(again.acquired && first.acquired).toBe(true);
    if (again.acquired && first.acquired) {
      expect(again.lease.fencingToken).toBe(first.lease.fencingToken);
      expect(again.lease.acquiredAt).toEqual(first.lease.acquiredAt);
      expect(again.lease.expiresAt).toEqual(new Date(model.now.getTime() + 1_000));
      expect(again.expired).toBeUndefined();
    }
  });

  it('a run-out lease is taken over with fence + 1 even when the server clock went back, and the old holder is reported expired', async () => {
    const { model, persister } = modelPersister();
    const first = await persister.acquire({ name: 'n', token: 't1', ttlMs: 1_000, owner: a });
    model.advance(1_000); // expiresAt <= $$NOW: run out
    expect(await persister.inspect('n')).toBeNull();
    expect(await persister.renew({ name: 'n', token: 't1', ttlMs: 1_000 })).toEqual({ renewed: false, holder: null });
    expect(await persister.release({ name: 'n', token: 't1' })).toBe(false);
    model.now = new Date(model.now.getTime() - 60_000); // a server clock step back must not repeat a fence…
    model.advance(61_000); // …but the lease is still run out once the clock is past it again
    const second = await persister.acquire({ name: 'n', token: 't2', ttlMs: 1_000, owner: b });
    expect(second.acquired && first.acquired).toBe(true);
    if (second.acquired && first.acquired) {
      expect(second.expired).toEqual(first.lease);
      expect(BigInt(second.lease.fencingToken)).toBe(BigInt(micros(model.now)));
      expect(BigInt(second.lease.fencingToken) > BigInt(first.lease.fencingToken)).toBe(true);
    }
    model.now = new Date(model.now.getTime() - 3_000_000); // clock far behind, lease free after a release
    if (second.acquired) expect(await persister.release({ name: 'n', token: 't2' })).toBe(true);
    const third = await persister.acquire({ name: 'n', token: 't3', ttlMs: 1_000, owner: a });
    if (third.acquired && second.acquired) {
      expect(third.lease.fencingToken).toBe(Number(second.lease.fencingToken) + 1);
      expect(third.expired).toBeUndefined();
    }
  });

  it('release keeps the document and fence; the next acquire reports nothing expired', async () => {
    const { model, persister } = modelPersister();
    const first = await persister.acquire({ name: 'n', token: 't1', ttlMs: 10_000, owner: a });
    expect(await persister.release({ name: 'n', token: 'wrong' })).toBe(false);
    expect(await persister.release({ name: 'n', token: 't1' })).toBe(true);
    const doc = model.docs.get('n') as Doc;
    expect(doc.token).toBeNull();
    expect(doc.released).toBe(true);
    expect(doc.expiresAt).toEqual(model.now);
    if (first.acquired) expect(BigInt(doc.fence as bigint)).toBe(BigInt(first.lease.fencingToken));
    expect(await persister.release({ name: 'n', token: 't1' })).toBe(false);
    expect(await persister.inspect('n')).toBeNull();
    model.advance(1);
    const second = await persister.acquire({ name: 'n', token: 't2', ttlMs: 1_000, owner: b });
    expect(second.acquired).toBe(true);
    if (second.acquired) expect(second.expired).toBeUndefined();
    expect(model.calls.find((c) => c.method === 'updateOne')?.options).toEqual({ writeConcern: { w: 'majority' } });
  });

  it('renew moves expiresAt to $$NOW + ttl only for the live holder; otherwise names the holder', async () => {
    const { model, persister } = modelPersister();
    await persister.acquire({ name: 'n', token: 't1', ttlMs: 1_000, owner: a });
    model.advance(500);
    expect(await persister.renew({ name: 'n', token: 't1', ttlMs: 2_000 })).toEqual({
      renewed: true,
      expiresAt: new Date(model.now.getTime() + 2_000),
    });
    const refused = await persister.renew({ name: 'n', token: 't2', ttlMs: 2_000 });
    expect(refused.renewed).toBe(false);
    if (!refused.renewed) expect(refused.holder?.owner).toBe(a.owner);
  });

  it('a duplicate key whose holder is gone when read is retried, not reported as a conflict', async () => {
    const { model, persister } = modelPersister();
    model.raceNext = 1;
    const r = await persister.acquire({ name: 'n', token: 't1', ttlMs: 1_000, owner: a });
    expect(r.acquired).toBe(true);
    expect(model.calls.map((c) => c.method)).toEqual(['findOneAndUpdate', 'findOne', 'findOneAndUpdate']);
    model.raceNext = 100;
    await expect(persister.acquire({ name: 'm', token: 't1', ttlMs: 1_000, owner: a })).rejects.toBeInstanceOf(PersisterError);
  });

  it('forced release: the evicted holder is told taken-over, never sees a token, and the next fence is higher', async () => {
    const { model, persister } = modelPersister();
    const first = await persister.acquire({ name: 'n', token: 't1', ttlMs: 10_000, owner: a });
    await persister.acquire({ name: 'm', token: 't9', ttlMs: 10_000, owner: b });
    expect((await persister.list()).map((l) => l.name)).toEqual(['m', 'n']);
    expect((await persister.list({ prefix: 'n' })).map((l) => l.owner)).toEqual([a.owner]);
    model.advance(100);
    const evicted = await persister.forceRelease('n');
    if (first.acquired) expect(evicted).toEqual(first.lease);
    expect(await persister.forceRelease('n')).toBeNull();
    expect(await persister.inspect('n')).toBeNull();
    const told = await persister.renew({ name: 'n', token: 't1', ttlMs: 1_000 });
    expect(told).toMatchObject({ renewed: false, holder: { name: 'n', owner: 'release --force', acquiredAt: model.now } });
    expect(JSON.stringify(told)).not.toContain('t1');
    const second = await persister.acquire({ name: 'n', token: 't2', ttlMs: 1_000, owner: b });
    expect(second.acquired && first.acquired && BigInt(second.lease.fencingToken) > BigInt(first.lease.fencingToken)).toBe(true);
    expect(second.acquired && second.expired).toBeUndefined();
    expect(JSON.stringify(model.calls.filter((c) => c.method === 'find').map((c) => c.options))).toContain('"evicted":0');
  });

  it('driver errors become PersisterError with the cause kept', async () => {
    const { model, persister } = modelPersister();
    const boom = Object.assign(new Error('connection reset'), { code: 6 });
    model.findOneAndUpdate = async () => {
      throw boom;
    };
    model.findOne = async () => {
      throw boom;
    };
    model.updateOne = async () => {
      throw boom;
    };
    for (const call of [
      () => persister.acquire({ name: 'n', token: 't', ttlMs: 1_000, owner: a }),
      () => persister.renew({ name: 'n', token: 't', ttlMs: 1_000 }),
      () => persister.release({ name: 'n', token: 't' }),
      () => persister.inspect('n'),
    ]) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PersisterError);
      expect((error as PersisterError).cause).toBe(boom);
      expect((error as PersisterError).message).toMatch(/connection reset/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 2c. Construction and a down server.
// ---------------------------------------------------------------------------------------------

describe('MongoPersister: the Coalescer keeps its outcomes beside the leases (no server)', () => {
  it('in <collection>_outcomes of the same database, polled (no subscribe), with the persister\'s write concern', async () => {
    const client = new MongoClient('mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100'); // never connected
    const persister = new MongoPersister(client.db('app'), { collection: 'locks', writeConcern: { w: 2 } });
    const { store, owned } = outcomeStoreFor(persister);
    expect(store).toBeInstanceOf(MongoOutcomeStore);
    expect(owned).toBe(true);
    expect((store as MongoOutcomeStore).collection.collectionName).toBe('locks_outcomes');
    expect((store as MongoOutcomeStore).collection.dbName).toBe('app');
    expect(store.subscribe).toBeUndefined();
    await expect(store.get('k')).rejects.toBeInstanceOf(PersisterError);
    await client.close();
  });
});

describe('MongoPersister: construction', () => {
  const client = new MongoClient('mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100'); // never connected
  const db = client.db('app');

  it('takes a Collection, or a Db with a collection name (default "singleton_leases")', () => {
    expect(new MongoPersister(db.collection('locks')).collection.collectionName).toBe('locks');
    expect(new MongoPersister(db).collection.collectionName).toBe('singleton_leases');
    expect(new MongoPersister(db, { collection: 'leases' }).collection.collectionName).toBe('leases');
    expect(new MongoPersister(db).collection.dbName).toBe('app');
    expect(new MongoPersister(db).capabilities).toEqual({ serverClock: true, notify: false, fencing: true, persistent: true, list: true });
  });

  it('rejects what is not a Collection or Db, and bad options, with TypeErrors naming them', () => {
    for (const bad of [undefined, null, 'mongodb://x', {}, { collection: () => undefined }, client]) {
      expect(() => new MongoPersister(bad as never)).toThrow(TypeError);
    }
    expect(() => new MongoPersister(null as never)).toThrow(/`collection`/);
    expect(() => new MongoPersister(db.collection('x'), { collection: 'y' } as never)).toThrow(/options\.collection/);
    expect(() => new MongoPersister(db, { collection: '' })).toThrow(/options\.collection/);
    expect(() => new MongoPersister(db, { collection: 42 as never })).toThrow(TypeError);
    expect(() => new MongoPersister(db, { writeConcern: { w: 0 } })).toThrow(/writeConcern/);
    expect(() => new MongoPersister(db, { ownsClient: 'yes' as never })).toThrow(/ownsClient/);
    expect(() => new MongoPersister(db, null as never)).toThrow(/options/);
  });

  it('rejects malformed requests before touching the store', async () => {
    const { model, persister } = modelPersister();
    await expect(persister.acquire({ name: { $ne: null } as never, token: 't', ttlMs: 1_000, owner: testOwner(1) })).rejects.toThrow(TypeError);
    await expect(persister.acquire({ name: 'n', token: { $gt: '' } as never, ttlMs: 1_000, owner: testOwner(1) })).rejects.toThrow(TypeError);
    await expect(persister.acquire({ name: 'n', token: 't', ttlMs: 0, owner: testOwner(1) })).rejects.toThrow(/ttlMs/);
    await expect(persister.acquire({ name: 'n', token: 't', ttlMs: 1_000, owner: null as never })).rejects.toThrow(/owner/);
    await expect(persister.renew({ name: 'n', token: '', ttlMs: 1_000 })).rejects.toThrow(/token/);
    await expect(persister.release({ name: '', token: 't' })).rejects.toThrow(/name/);
    await expect(persister.inspect(42 as never)).rejects.toThrow(/name/);
    expect(model.calls).toHaveLength(0);
  });

  it('close() leaves a client it does not own alone', async () => {
    const { persister } = modelPersister();
    await expect(persister.close()).resolves.toBeUndefined();
  });

  afterAll(() => client.close());
});

describe('MongoPersister: a down server', () => {
  it('rejects every operation with a PersisterError within serverSelectionTimeoutMS, and close() closes the owned client', async () => {
    const port = await freePort(); // nothing listens there
    const client = new MongoClient(`mongodb://127.0.0.1:${port}/`, { serverSelectionTimeoutMS: 500 });
    let topologyClosed = false;
    client.on('topologyClosed', () => {
      topologyClosed = true;
    });
    const persister = new MongoPersister(client.db('app'), { ownsClient: true });
    const started = Date.now();
    const attempts = [
      persister.acquire({ name: 'down', token: newToken(), ttlMs: 1_000, owner: testOwner(1) }),
      persister.renew({ name: 'down', token: newToken(), ttlMs: 1_000 }),
      persister.release({ name: 'down', token: newToken() }),
      persister.inspect('down'),
    ];
    for (const attempt of attempts) {
      const error = await attempt.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PersisterError);
      expect((error as PersisterError).code).toBe('SINGLETON_PERSISTER');
      expect((error as PersisterError).cause).toBeInstanceOf(Error);
    }
    expect(Date.now() - started).toBeLessThan(3_000);
    await persister.close();
    await persister.close(); // idempotent
    expect(topologyClosed).toBe(true);
  });
});
