import { PersisterError } from '../../lib/errors';
import { MemoryPersister } from '../../lib/persisters/MemoryPersister';
import type {
  AcquireRequest,
  AcquireResult,
  LockInfo,
  Persister,
  ReleaseRequest,
  RenewRequest,
  RenewResult,
} from '../../lib/persisters/Persister';

/**
 * A real MemoryPersister behind a switchboard, for state-machine tests: the
 * store can be taken down (every call rejects with a PersisterError), made to
 * hang, or made to answer a renewal as if someone else now held the lease.
 * It is our own Persister implementation, not a mock of a driver.
 */
export class ControllablePersister implements Persister {
  readonly inner = new MemoryPersister();
  readonly capabilities = { ...this.inner.capabilities, list: false }; // it offers no list() / forceRelease()
  /** Every call rejects while true. */
  down = false;
  /** Renewals never answer while true. */
  hangRenewals = false;
  /** While set, acquires wait for it before reaching the store (a slow store). */
  acquireGate: Promise<void> | undefined;
  /** When set, the next renewals answer "not yours, held by this". */
  stolenBy: LockInfo | null | undefined;
  /** Counts of calls made, by method. */
  readonly calls = { acquire: 0, renew: 0, release: 0, inspect: 0 };

  private check(what: string): void {
    if (this.down) throw new PersisterError(`${what} failed: store down (test)`);
  }

  async acquire(r: AcquireRequest): Promise<AcquireResult> {
    this.calls.acquire += 1;
    if (this.acquireGate) await this.acquireGate;
    this.check('acquire');
    return this.inner.acquire(r);
  }

  async renew(r: RenewRequest): Promise<RenewResult> {
    this.calls.renew += 1;
    if (this.hangRenewals) return new Promise<RenewResult>(() => undefined);
    this.check('renew');
    if (this.stolenBy !== undefined) return { renewed: false, holder: this.stolenBy };
    return this.inner.renew(r);
  }

  async release(r: ReleaseRequest): Promise<boolean> {
    this.calls.release += 1;
    this.check('release');
    return this.inner.release(r);
  }

  async inspect(name: string): Promise<LockInfo | null> {
    this.calls.inspect += 1;
    this.check('inspect');
    return this.inner.inspect(name);
  }

  watch(name: string, onRelease: () => void): Promise<() => Promise<void>> {
    return this.inner.watch(name, onRelease);
  }
}

/** A logger that records every line, so tests can assert what was logged. */
export function recordingLogger(): { lines: Array<{ level: string; obj: object; msg?: string }>; logger: import('../../lib/logger').Logger } {
  const lines: Array<{ level: string; obj: object; msg?: string }> = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}
