import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ThreadDescriptor } from '../keepAlive/descriptor';
import { checkInteger, expected } from '../validate';
import { byName, checkForceReleaseName, checkListOptions } from './adminSupport';
import { evictedRecord, evictionOf, readAllRecords } from './file/admin';
import { fileError } from './file/errors';
import { identityOf, sameProcess, selfIdentity } from './file/liveness';
import { FileMutex } from './file/mutex';
import { lockPaths, type LockPaths } from './file/names';
import { hashToken, isHeld, readRecord, toLockInfo, writeRecord, type LeaseRecord } from './file/state';
import { ReleaseWatcher } from './file/watcher';
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

/** Options of {@link FilePersister}. */
export interface FilePersisterOptions {
  /**
   * The directory holding the lock files; created (mode 0o700, with its parents) on first
   * use. Every process that should contend for the same locks must use the same directory.
   * A directory on tmpfs (Linux's /tmp on many systems) forgets its locks, and its fence
   * counters, at reboot; fencing tokens still increase, because they are seeded from the clock.
   * @default path.join(os.tmpdir(), 'singleton-process')
   */
  dir?: string;
  /**
   * How often `watch()` re-reads the watched records, behind `fs.watch` (which most local
   * filesystems deliver at once) and instead of it where it delivers nothing (NFS, some
   * container mounts). This also bounds how late a watcher learns that a holder was killed.
   * @default 250
   */
  pollIntervalMs?: number;
}

/** Defaults of {@link FilePersisterOptions}. */
export const FILE_PERSISTER_DEFAULTS = Object.freeze({
  /** Computed when the persister is made, from `os.tmpdir()`. */
  get dir(): string {
    return join(tmpdir(), 'singleton-process');
  },
  /** Poll period of `watch()` behind `fs.watch`, in ms. */
  pollIntervalMs: 250,
});

/**
 * The embedded default store: leases in a local directory, shared by every process on
 * one host, no server needed.
 *
 * Each lock name has one record file, `<slug>.<hash>.lock` (the name is encoded, never
 * used as a path), replaced atomically (temporary file + `rename`) on every change and
 * kept on release so the fencing counter survives. A read-modify-write of a record runs
 * under a per-name mutex file created with one exclusive-create system call, and runs
 * synchronously, so the mutex lives for microseconds. A lease is stale when it expired
 * or when its holder process is gone, so a `kill -9`ed holder is taken over at once.
 *
 * One host only: on a directory shared between hosts (NFS) expiry would compare
 * different hosts' clocks and a dead holder on another host is noticed only at expiry.
 * Records are not fsync'ed (a crash of the host ends every holder anyway; the fence is
 * seeded from the clock). Acquire, renew and release take well under a millisecond on
 * tmpfs and about 0.7 ms on ext4; a lock held by someone else is reported without the mutex.
 *
 * @example
 * ```ts
 * const singleton = new Singleton('nightly-report', new FilePersister());
 * ```
 */
export class FilePersister implements Persister {
  /**
   * - `serverClock: true`: one host, one clock. Every contender reads the same host clock
   *   that decides expiry, so there is no skew between "client" and "store".
   * - `notify: true`: `fs.watch` where it works, polling every `pollIntervalMs` behind it.
   * - `fencing: true`: the counter lives in the record, kept on release, and is never below
   *   the clock in microseconds.
   * - `persistent: true`: leases outlive the processes that wrote them (not a reboot of a
   *   tmpfs directory; after a reboot every old holder is dead anyway).
   * - `list: true`: `list()` reads every record in the directory; `forceRelease()` is offered.
   */
  readonly capabilities: PersisterCapabilities = Object.freeze({
    serverClock: true,
    notify: true,
    fencing: true,
    persistent: true,
    list: true,
  });

  /** The absolute path of the directory holding the lock files. */
  readonly dir: string;

  private readonly pollIntervalMs: number;
  private readonly mutex: FileMutex;
  private readonly watcher: ReleaseWatcher;
  private dirReady = false;

  /** @throws TypeError (or RangeError) naming the bad option. */
  constructor(options: FilePersisterOptions = {}) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new TypeError(expected('options', 'an object like { dir }', options));
    }
    const { dir, pollIntervalMs } = options;
    if (dir !== undefined && (typeof dir !== 'string' || dir.length === 0 || dir.includes('\0'))) {
      throw new TypeError(expected('dir', 'a non-empty directory path (string)', dir));
    }
    this.dir = resolve(dir ?? FILE_PERSISTER_DEFAULTS.dir);
    this.pollIntervalMs =
      pollIntervalMs === undefined ? FILE_PERSISTER_DEFAULTS.pollIntervalMs : checkInteger('pollIntervalMs', pollIntervalMs, 5, 60_000);
    this.mutex = new FileMutex(this.dir, () => this.ensureDir(true));
    this.watcher = new ReleaseWatcher(this.dir, this.pollIntervalMs);
  }

  /** Take the lease if it is free, expired or its holder process is gone; otherwise report the holder. */
  async acquire({ name, token, ttlMs, owner }: AcquireRequest): Promise<AcquireResult> {
    const paths = lockPaths(this.dir, name);
    const tokenHash = hashToken(token);
    // Lock-free fast path: a record read whole that shows another live holder is a valid answer.
    const seen = this.read(paths, name);
    if (seen && isHeld(seen, Date.now()) && seen.tokenHash !== tokenHash) return { acquired: false, holder: toLockInfo(seen) };
    this.ensureDir();
    return this.mutex.run(paths, (guard): AcquireResult => {
      const now = Date.now();
      const current = this.read(paths, name);
      if (current && isHeld(current, now)) {
        if (current.tokenHash !== tokenHash) return { acquired: false, holder: toLockInfo(current) };
        const extended: LeaseRecord = { ...current, expiresAt: now + ttlMs };
        writeRecord(paths, extended, this.dir, guard);
        return { acquired: true, lease: toLockInfo(extended) };
      }
      const next: LeaseRecord = {
        v: 1,
        name,
        tokenHash,
        owner: owner.owner,
        hostname: owner.hostname,
        pid: owner.pid,
        fence: Math.max((current?.fence ?? 0) + 1, now * 1000),
        acquiredAt: now,
        expiresAt: now + ttlMs,
        released: false,
        holder: selfIdentity(),
        evicted: current?.evicted, // so a lease evicted earlier still learns why, whoever holds the lock since
      };
      writeRecord(paths, next, this.dir, guard);
      const lease = toLockInfo(next);
      // Taking over a lease nobody released (it ran out, or its process died) reports it.
      if (current && current.tokenHash !== null && !current.released) return { acquired: true, lease, expired: toLockInfo(current) };
      return { acquired: true, lease };
    });
  }

  /** Extend the lease, only with the holder's token. */
  async renew({ name, token, ttlMs }: RenewRequest): Promise<RenewResult> {
    const paths = lockPaths(this.dir, name);
    const tokenHash = hashToken(token);
    const refusal = (record: LeaseRecord | null, now: number): RenewResult | undefined => {
      if (!record || !isHeld(record, now)) return { renewed: false, holder: evictionOf(record, tokenHash) };
      if (record.tokenHash !== tokenHash) return { renewed: false, holder: toLockInfo(record) };
      return undefined;
    };
    const early = refusal(this.read(paths, name), Date.now());
    if (early) return early;
    return this.mutex.run(paths, (guard): RenewResult => {
      const now = Date.now();
      const current = this.read(paths, name);
      const refused = refusal(current, now);
      if (refused || !current) return refused ?? { renewed: false, holder: null };
      const renewed: LeaseRecord = { ...current, expiresAt: now + ttlMs };
      writeRecord(paths, renewed, this.dir, guard);
      return { renewed: true, expiresAt: new Date(renewed.expiresAt) };
    });
  }

  /** Renews each lease in turn; a slot holds that lease's result or its own error. */
  async renewMany(requests: readonly RenewRequest[]): Promise<Array<RenewResult | Error>> {
    const results: Array<RenewResult | Error> = [];
    for (const request of requests) {
      try {
        results.push(await this.renew(request));
      } catch (error) {
        results.push(error instanceof Error ? error : new Error(String(error)));
      }
    }
    return results;
  }

  /** Release the lease, only with the holder's token. The record stays (token cleared) so the fence survives. */
  async release({ name, token }: ReleaseRequest): Promise<boolean> {
    const paths = lockPaths(this.dir, name);
    const tokenHash = hashToken(token);
    const ours = (record: LeaseRecord | null, now: number): record is LeaseRecord =>
      record !== null && isHeld(record, now) && record.tokenHash === tokenHash;
    if (!ours(this.read(paths, name), Date.now())) return false;
    return this.mutex.run(paths, (guard) => {
      const now = Date.now();
      const current = this.read(paths, name);
      if (!ours(current, now)) return false;
      writeRecord(paths, { ...current, tokenHash: null, released: true, expiresAt: now }, this.dir, guard);
      return true;
    });
  }

  /**
   * Keeps the lease of `name` held by this process while process `pid` runs too: its death
   * no longer frees the lease at once while `pid` lives (expiry still does). Resolves false
   * when this process holds no lease of `name`, or `pid` is not running.
   * @internal singleton-run guards its lease with its supervisor, which outlives it (a
   * `kill -9`) until the command's processes are gone: no second run starts beside them.
   */
  async guardLease(name: string, pid: number): Promise<boolean> {
    const paths = lockPaths(this.dir, name);
    const me = selfIdentity();
    const mine = (record: LeaseRecord | null, now: number): record is LeaseRecord =>
      record !== null && isHeld(record, now) && sameProcess(record.holder, me);
    const guard = identityOf(pid);
    if (!guard || !mine(this.read(paths, name), Date.now())) return false;
    return this.mutex.run(paths, (mutex) => {
      const current = this.read(paths, name);
      if (!mine(current, Date.now())) return false;
      writeRecord(paths, { ...current, guard }, this.dir, mutex);
      return true;
    });
  }

  /** The current holder, or null when the lock is free, expired, or its holder process is gone. Never the token. */
  async inspect(name: string): Promise<LockInfo | null> {
    const record = this.read(lockPaths(this.dir, name), name);
    return record && isHeld(record, Date.now()) ? toLockInfo(record) : null;
  }

  /** Every lease held now (unexpired, its holder process alive), sorted by name; only names starting with `options.prefix`. */
  async list(options?: ListOptions): Promise<LockInfo[]> {
    const prefix = checkListOptions(options);
    const now = Date.now();
    return byName(readAllRecords(this.dir).filter((r) => r.name.startsWith(prefix) && isHeld(r, now)).map(toLockInfo));
  }

  /**
   * Ends the lease of `name` whoever holds it (the operator's last resort): the record stays,
   * with its fence, and notes the evicted lease, whose next renewal is refused naming the
   * eviction (`taken-over`). Watchers are woken. Resolves the evicted holder, or `null` when
   * nothing was held.
   */
  async forceRelease(name: string): Promise<LockInfo | null> {
    checkForceReleaseName(name);
    const paths = lockPaths(this.dir, name);
    const seen = this.read(paths, name);
    if (!seen || !isHeld(seen, Date.now())) return null;
    return this.mutex.run(paths, (guard) => {
      const now = Date.now();
      const current = this.read(paths, name);
      if (!current || !isHeld(current, now)) return null;
      writeRecord(paths, evictedRecord(current, now), this.dir, guard);
      return toLockInfo(current);
    });
  }

  /**
   * Calls `onRelease` each time the lease of `name` is released, from this process or
   * any other, and each time its holder process is found dead; within milliseconds where
   * `fs.watch` works, within `pollIntervalMs` otherwise. Resolves the unsubscribe function.
   */
  async watch(name: string, onRelease: () => void): Promise<() => Promise<void>> {
    const paths = lockPaths(this.dir, name);
    this.ensureDir();
    const unsubscribe = this.watcher.add(paths.stateFile, () => this.read(paths, name), onRelease);
    return async () => unsubscribe();
  }

  /** How the keep-alive thread (`keepAlive: 'thread'`) reaches this store: the same directory. */
  threadDescriptor(): ThreadDescriptor {
    return { kind: 'file', dir: this.dir };
  }

  /** Stops every watcher. The persister holds no other resources; leases stay in the directory. */
  async close(): Promise<void> {
    this.watcher.stop();
  }

  private read(paths: LockPaths, name: string): LeaseRecord | null {
    return readRecord(paths, name, this.dir);
  }

  /** Creates the directory once (again when `force`: it vanished under us). */
  private ensureDir(force = false): void {
    if (this.dirReady && !force) return;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw fileError('creating the lock directory', this.dir, this.dir, error);
    }
    this.dirReady = true;
  }
}
