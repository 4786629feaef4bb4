import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PersisterError } from '../errors';
import { errorCode, fileError } from '../persisters/file/errors';
import { fileKey } from '../persisters/file/names';
import type { OutcomeStore } from './OutcomeStore';

/** What `<key>.outcome` holds. */
interface OutcomeFile {
  v: 1;
  /** The coalescing key (checked on read: the file name is a hash of it). */
  key: string;
  /** When the outcome stops being readable (ms since the epoch, host clock: one host). */
  expiresAt: number;
  /** The outcome envelope, as text. */
  outcome: string;
}

/**
 * Outcomes beside a `FilePersister`'s lock files: `<slug>.<hash>.outcome` next to
 * `<slug>.<hash>.lock`, replaced whole (temporary file, then `rename`) so a reader sees
 * the old outcome or the new one, never a mix. No notifications: waiters poll, and wake
 * on the lease's release through the persister's own `watch`. An expired file is ignored
 * and removed by {@link sweep} (under the key's lease) or replaced by the next run.
 */
export class FileOutcomeStore implements OutcomeStore {
  /** Shown in messages and logs. */
  readonly kind = 'file';
  /** The directory, the same as the persister's. */
  readonly dir: string;

  /** @param dir the `FilePersister`'s directory (`persister.dir`). */
  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  /** Replaces the outcome file of `key` atomically; it reads as absent after `ttlMs`. */
  async put(key: string, outcome: string, ttlMs: number): Promise<void> {
    const path = this.path(key);
    const record: OutcomeFile = { v: 1, key, expiresAt: Date.now() + ttlMs, outcome };
    const temp = join(this.dir, `${fileKey(key)}.outcome.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await writeFile(temp, JSON.stringify(record), { flag: 'wx', mode: 0o600 });
      await rename(temp, path);
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw fileError('writing the outcome file', path, this.dir, error);
    }
  }

  /** The unexpired outcome of `key`, or `null`. */
  async get(key: string): Promise<string | null> {
    const record = await this.read(key);
    return record && record.expiresAt > Date.now() ? record.outcome : null;
  }

  /** Deletes the outcome file of `key` if it expired. Call it only while holding the key's lease. */
  async sweep(key: string): Promise<void> {
    const record = await this.read(key);
    if (!record || record.expiresAt > Date.now()) return;
    try {
      await unlink(this.path(key));
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw fileError('removing the outcome file', this.path(key), this.dir, error);
    }
  }

  private path(key: string): string {
    return join(this.dir, `${fileKey(key)}.outcome`);
  }

  private async read(key: string): Promise<OutcomeFile | null> {
    const path = this.path(key);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return null;
      throw fileError('reading the outcome file', path, this.dir, error);
    }
    let record: OutcomeFile;
    try {
      record = JSON.parse(text) as OutcomeFile;
    } catch {
      return null; // torn by a crash mid-write (rename makes that unlikely): as good as absent
    }
    if (record === null || typeof record !== 'object' || record.v !== 1 || typeof record.outcome !== 'string') return null;
    if (record.key !== key) {
      throw new PersisterError(
        `FilePersister: ${path} holds the outcome of "${String(record.key)}", not "${key}" (a hash collision or a foreign file). Remove the file or use another directory.`,
      );
    }
    return typeof record.expiresAt === 'number' ? record : null;
  }
}
