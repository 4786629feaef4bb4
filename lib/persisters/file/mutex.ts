/**
 * A short-lived cross-process mutex per lock name, guarding the read-modify-write of
 * that name's record.
 *
 * Taking it is one atomic, create-if-absent system call: `symlink(content, <key>.mutex)`
 * (the link's target is its content, so it is complete the instant it exists; this is
 * how Emacs locks files), or `open(O_CREAT | O_EXCL)` where symlinks are refused
 * (Windows without developer mode, some network filesystems). The content names the
 * holder process, a timestamp and a random nonce.
 *
 * The section run under it is synchronous: the mutex is never held across an `await`,
 * so it lives for microseconds, and it is left behind only if its holder dies inside
 * that window. Such a stale mutex is broken at once when its holder is known dead (see
 * liveness.ts), or after {@link MUTEX_STALE_MS} whatever it holds (a stopped process, a
 * writer on another host, garbage). Breaking renames it to a unique name first, so of
 * many processes breaking the same mutex exactly one moves it; the breaker then checks
 * that what it moved is what it judged. A holder checks, just before it commits, that
 * its mutex is still in place, and otherwise abandons its write and starts over.
 */
import { lstatSync, readFileSync, readdirSync, readlinkSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { PersisterError } from '../../errors';
import { asIdentity, isDead, selfIdentity } from './liveness';
import type { LockPaths } from './names';
import { TEMP_SUFFIX } from './names';
import { errorCode, fileError } from './errors';

/** A mutex older than this is broken even if its holder seems alive (a stopped process, another host). */
export const MUTEX_STALE_MS = 5_000;
/** Longest wait for a mutex before an operation fails with a `PersisterError`. Longer than the stale bound. */
export const MUTEX_WAIT_MS = 10_000;

/** Thrown inside a section when its mutex was broken under it: the operation starts over. */
class MutexLostError extends Error {}

/** What a section may do while it holds the mutex. */
export interface MutexGuard {
  /** Throws (and the operation starts over) unless this mutex is still ours. Call it right before committing. */
  assertHeld(): void;
}

/** Parsed mutex content. */
interface MutexContent {
  identity: ReturnType<typeof asIdentity>;
  at: number | undefined;
}

function parseContent(text: string): MutexContent {
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    return { identity: asIdentity(value), at: typeof value.at === 'number' ? value.at : undefined };
  } catch {
    return { identity: undefined, at: undefined };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => (ms <= 0 ? setImmediate(resolve) : setTimeout(resolve, ms)));
}

/** The mutexes of one directory. */
export class FileMutex {
  private useSymlink = process.platform !== 'win32';

  constructor(
    private readonly dir: string,
    /** Creates the directory again when it vanished (a tmp cleaner, a test wiping it). */
    private readonly ensureDir: () => void,
  ) {}

  /**
   * Runs `section` synchronously while holding the mutex of `paths`; retries with a short
   * backoff while another process holds it, and fails after {@link MUTEX_WAIT_MS}.
   */
  async run<T>(paths: LockPaths, section: (guard: MutexGuard) => T): Promise<T> {
    const deadline = performance.now() + MUTEX_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0 && performance.now() > deadline) throw this.timeoutError(paths.mutex);
      const content = JSON.stringify({ ...selfIdentity(), at: Date.now(), n: randomBytes(8).toString('hex') });
      if (this.tryCreate(paths.mutex, content)) {
        try {
          return section({
            assertHeld: () => {
              if (this.readOrNull(paths.mutex) !== content) throw new MutexLostError();
            },
          });
        } catch (error) {
          if (!(error instanceof MutexLostError)) throw error;
        } finally {
          this.removeOwn(paths.mutex, content);
        }
        continue; // our mutex was broken under us and nothing was written: start over
      }
      if (this.breakIfStale(paths)) continue;
      // Holders keep it for microseconds: yield first, then back off (with jitter) up to ~8 ms.
      await sleep(attempt < 2 ? 0 : Math.random() * Math.min(2 ** (attempt - 2), 8));
    }
  }

  /** Creates the mutex; false when it already exists. */
  private tryCreate(path: string, content: string): boolean {
    for (let tries = 0; ; tries++) {
      try {
        if (this.useSymlink) symlinkSync(content, path);
        else writeFileSync(path, content, { flag: 'wx' });
        return true;
      } catch (error) {
        const code = errorCode(error);
        if (code === 'EEXIST') return false;
        if (code === 'ENOENT' && tries === 0) {
          this.ensureDir();
          continue;
        }
        if (this.useSymlink && (code === 'EPERM' || code === 'ENOSYS' || code === 'ENOTSUP' || code === 'EOPNOTSUPP')) {
          this.useSymlink = false; // this filesystem refuses symlinks: use O_EXCL files from now on
          continue;
        }
        throw fileError('creating the mutex', path, this.dir, error);
      }
    }
  }

  /** The mutex content: a symlink's target, or a plain file's text. Throws ENOENT when absent. */
  private read(path: string): string {
    try {
      return readlinkSync(path, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'EINVAL') return readFileSync(path, 'utf8'); // not a symlink: O_EXCL file
      throw error;
    }
  }

  private readOrNull(path: string): string | null {
    try {
      return this.read(path);
    } catch {
      return null;
    }
  }

  /** Removes the mutex only if it is still ours. */
  private removeOwn(path: string, content: string): void {
    try {
      if (this.read(path) === content) unlinkSync(path);
    } catch {
      // Gone already, or unremovable: either way no longer ours to clean; a left-over is broken as stale.
    }
  }

  /** Breaks the mutex if its holder is dead or it is too old. True when the caller should retry at once. */
  private breakIfStale(paths: LockPaths): boolean {
    let judged: string;
    let mtimeMs: number;
    try {
      judged = this.read(paths.mutex);
      mtimeMs = lstatSync(paths.mutex).mtimeMs;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return true; // released meanwhile
      throw fileError('reading the mutex', paths.mutex, this.dir, error);
    }
    const { identity, at } = parseContent(judged);
    const ageMs = Math.abs(Date.now() - (at ?? mtimeMs)); // a timestamp far in the future is as stale as one far past
    const dead = identity !== undefined && isDead(identity);
    if (!dead && ageMs <= MUTEX_STALE_MS) return false;
    const aside = `${paths.mutex}.${randomBytes(8).toString('hex')}.broken`;
    try {
      renameSync(paths.mutex, aside); // of many breakers, exactly one moves it
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return true; // someone else broke or released it
      throw fileError('breaking the stale mutex', paths.mutex, this.dir, error);
    }
    const moved = this.readOrNull(aside);
    try {
      unlinkSync(aside);
    } catch {
      // a left-over *.broken file is harmless
    }
    // If what we moved is not what we judged, a live holder lost its mutex; its commit check
    // (assertHeld) fails and it starts over, so nothing is written under a broken mutex.
    if (moved === judged && dead && identity) this.removeTempFiles(paths.key, identity.pid);
    return true;
  }

  /** Deletes the temporary files a dead process left for `key`. */
  private removeTempFiles(key: string, pid: number): void {
    const prefix = `${key}.${pid}.`;
    try {
      for (const file of readdirSync(this.dir)) {
        if (file.startsWith(prefix) && file.endsWith(TEMP_SUFFIX)) unlinkSync(join(this.dir, file));
      }
    } catch {
      // best effort: a left-over temp file does not affect correctness
    }
  }

  private timeoutError(path: string): PersisterError {
    const { identity, at } = parseContent(this.readOrNull(path) ?? '');
    const who = identity ? ` (held by pid ${identity.pid} on ${identity.host}${at ? ` since ${new Date(at).toISOString()}` : ''})` : '';
    return new PersisterError(
      `FilePersister: the mutex ${path} stayed taken for ${MUTEX_WAIT_MS} ms${who}. If that process is stuck, stop it or delete the file; the operation can be retried.`,
    );
  }
}
