/**
 * The seed's persister namespace, so singleton-process v1 code runs as its README wrote it:
 *
 * ```js
 * const persister = new singletonProcess.persisters.MongoDb('mongodb://host/db');
 * const singleton = new singletonProcess.Singleton('name', persister);
 * ```
 */
import { toPersisterError } from '../errors';
import { expected } from '../validate';
import { persisterFromUrl, type OwnedPersister, type PersisterFromUrlOptions } from './fromUrl';
import type {
  AcquireRequest,
  AcquireResult,
  ListOptions,
  LockInfo,
  Persister,
  PersisterCapabilities,
  ReleaseRequest,
  RenewRequest,
  RenewResult,
} from './Persister';

/**
 * A persister made synchronously from a URL whose driver is imported, and whose store is
 * connected, on first use (the seed's constructors were synchronous; ours load drivers
 * lazily). A driver or connection failure rejects that operation with a `PersisterError`.
 */
class LazyPersister implements Persister, OwnedPersister {
  readonly capabilities: PersisterCapabilities;
  private made: Promise<OwnedPersister> | undefined;

  constructor(
    private readonly make: () => Promise<OwnedPersister>,
    capabilities: PersisterCapabilities,
    private readonly what: string,
  ) {
    this.capabilities = Object.freeze({ ...capabilities });
  }

  private inner(): Promise<OwnedPersister> {
    this.made ??= this.make().catch((err: unknown) => {
      this.made = undefined; // a later call tries again
      throw toPersisterError(`Opening ${this.what}`, err);
    });
    return this.made;
  }

  async acquire(r: AcquireRequest): Promise<AcquireResult> {
    return (await this.inner()).acquire(r);
  }
  async renew(r: RenewRequest): Promise<RenewResult> {
    return (await this.inner()).renew(r);
  }
  async release(r: ReleaseRequest): Promise<boolean> {
    return (await this.inner()).release(r);
  }
  async inspect(name: string): Promise<LockInfo | null> {
    return (await this.inner()).inspect(name);
  }
  async list(options?: ListOptions): Promise<LockInfo[]> {
    const inner = await this.inner();
    if (!inner.list) throw new TypeError(`${this.what} cannot list locks`);
    return inner.list(options);
  }
  async forceRelease(name: string): Promise<LockInfo | null> {
    const inner = await this.inner();
    if (!inner.forceRelease) throw new TypeError(`${this.what} cannot force a release`);
    return inner.forceRelease(name);
  }
  async close(): Promise<void> {
    const made = this.made;
    this.made = undefined;
    if (made) await (await made.catch(() => undefined))?.close();
  }
}

/**
 * The seed's `new persisters.MongoDb(url)`: a `MongoPersister` on the database the URL names
 * (collection `singleton_leases` unless `?collection=` says otherwise), connected on first use.
 * It owns its client: `close()` closes it. Works with or without `new`.
 * @param url a `mongodb://` or `mongodb+srv://` URL.
 * @param options as {@link persisterFromUrl}'s.
 */
function MongoDb(url: string, options: PersisterFromUrlOptions = {}): OwnedPersister {
  if (typeof url !== 'string' || !/^mongodb(\+srv)?:\/\//.test(url)) {
    throw new TypeError(expected('url', 'a MongoDB URL starting with mongodb:// or mongodb+srv://', url));
  }
  const capabilities = { serverClock: true, notify: false, fencing: true, persistent: true, list: true };
  return new LazyPersister(() => persisterFromUrl(url, options), capabilities, 'the MongoDB persister');
}

/**
 * The seed's persister namespace: `new persisters.MongoDb(url)` as singleton-process v1's
 * README wrote it. New code uses `MongoPersister` or `persisterFromUrl`.
 */
export const persisters: Readonly<{
  /** `new persisters.MongoDb(url)`: a `MongoPersister` on the database the URL names, connected on first use. */
  MongoDb: SeedPersisterConstructor;
}> = Object.freeze({
  MongoDb: MongoDb as SeedPersisterConstructor,
});

/** A seed persister factory, callable with or without `new`. */
export interface SeedPersisterConstructor {
  new (url: string, options?: PersisterFromUrlOptions): OwnedPersister;
  (url: string, options?: PersisterFromUrlOptions): OwnedPersister;
}
