/**
 * Lock names become file names through an encoding, never as paths: a name like
 * `../../etc/x` or `a/b` must not leave the directory, 200-character (and multi-byte)
 * names must fit the usual 255-byte file-name limit, and names differing only in case
 * must not collide on case-insensitive filesystems (macOS, Windows).
 *
 * A file key is a short readable slug of the name (letters, digits, `_`, `-`; anything
 * else becomes `_`) followed by the first 128 bits of the SHA-256 of the UTF-8 name in
 * lower-case hex. The hash alone decides identity; the slug only helps a human running
 * `ls`. The full name is also stored inside the file and checked on every read.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';

/** The longest readable part of a file key, in characters. */
const SLUG_LENGTH = 40;

/** The file key of a lock name: `<slug>.<32 hex digits>`, at most 73 ASCII characters. */
export function fileKey(name: string): string {
  const hash = createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 32);
  let slug = name.slice(0, SLUG_LENGTH).replace(/[^A-Za-z0-9_-]/g, '_');
  if (slug.startsWith('-')) slug = `_${slug.slice(1)}`; // no file names that look like command-line flags
  return `${slug}.${hash}`;
}

/** Where the files of one lock name live. */
export interface LockPaths {
  /** The file key (see {@link fileKey}). */
  key: string;
  /** The lease record: `<key>.lock`, replaced atomically on every change, kept on release. */
  state: string;
  /** The short-lived mutex guarding a read-modify-write of the record: `<key>.mutex`. */
  mutex: string;
  /** File name (not path) of the record, as `fs.watch` reports it. */
  stateFile: string;
}

/** Paths of the files of lock `name` inside `dir`. */
export function lockPaths(dir: string, name: string): LockPaths {
  const key = fileKey(name);
  return { key, state: join(dir, `${key}.lock`), mutex: join(dir, `${key}.mutex`), stateFile: `${key}.lock` };
}

/** The suffix of temporary files: `<key>.<pid>.<random>.tmp`. */
export const TEMP_SUFFIX = '.tmp';
