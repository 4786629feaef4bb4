/** File-system failures of the file store, turned into {@link PersisterError}s that say what to do. */
import { PersisterError } from '../../errors';

/** What to do about an `fs` error code, for the user reading the message. */
function advice(code: string | undefined, dir: string): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `This process (uid ${process.getuid?.() ?? '?'}) may not write there: fix the permissions of ${dir}, or choose a directory it owns with new FilePersister({ dir }) (CLI: --store file:///some/dir or SINGLETON_STORE).`;
    case 'EROFS':
      return `${dir} is on a read-only filesystem: choose a writable directory with new FilePersister({ dir }).`;
    case 'ENOSPC':
    case 'EDQUOT':
      return `The filesystem of ${dir} is full (or over quota): free some space; the operation can be retried.`;
    case 'ENOTDIR':
    case 'EEXIST':
      return `${dir}, or one of its parents, exists but is not a directory: remove it or choose another directory.`;
    case 'EMFILE':
    case 'ENFILE':
      return 'The process or system ran out of file descriptors: raise the limit (ulimit -n); the operation can be retried.';
    case 'ENAMETOOLONG':
      return `The directory path ${dir} is too long: choose a shorter one.`;
    default:
      return `Check that ${dir} is a writable local directory; the operation can be retried.`;
  }
}

/** Wraps an `fs` error: which operation, on which path, the OS error, and what to do. */
export function fileError(what: string, path: string, dir: string, cause: unknown): PersisterError {
  if (cause instanceof PersisterError) return cause;
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new PersisterError(`FilePersister: ${what} ${path} failed: ${detail}. ${advice(code, dir)}`, { cause });
}

/** The `code` of an `fs` error, if it has one. */
export function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}
