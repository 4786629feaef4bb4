/**
 * Release notifications for the file store: `fs.watch` on the directory where the
 * platform offers it (inotify, FSEvents, ReadDirectoryChangesW), with polling behind it
 * every `pollIntervalMs` (default 250 ms) for filesystems that deliver no events (NFS,
 * some container mounts) or events that were coalesced away.
 *
 * A subscriber is called once per lease that became free by a release, and also once
 * per lease whose holder process was found dead (a `kill -9`): both mean "try now".
 * A lease that merely ran out is not reported: a waiter knows its expiry already.
 */
import { watch, type FSWatcher } from 'node:fs';
import { holderGone, type LeaseRecord } from './state';

interface Subscription {
  stateFile: string;
  read: () => LeaseRecord | null;
  onRelease: () => void;
  /** The signature of the last free state reported (or seen at subscription). */
  reported: string | null;
}

/** A signature of the record when it is free by release or by its holder's death (and its guard's), else null. */
function freeSignature(record: LeaseRecord | null): string | null {
  if (!record) return null;
  if (record.released) return `${record.fence}:released`;
  if (record.tokenHash !== null && holderGone(record)) return `${record.fence}:dead`;
  return null;
}

/** The watchers of one directory: one `fs.watch` and one poll timer, shared by all subscriptions. */
export class ReleaseWatcher {
  private readonly subs = new Set<Subscription>();
  private fsWatcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dir: string,
    private readonly pollIntervalMs: number,
  ) {}

  /** Calls `onRelease` on each release of the record `read` returns; returns the unsubscribe function. */
  add(stateFile: string, read: () => LeaseRecord | null, onRelease: () => void): () => void {
    const sub: Subscription = { stateFile, read, onRelease, reported: null };
    sub.reported = freeSignature(read()); // a lock free already at subscription is not news
    this.subs.add(sub);
    this.start();
    return () => {
      this.subs.delete(sub);
      if (this.subs.size === 0) this.stop();
    };
  }

  /** Stops everything (used by `close()`). */
  stop(): void {
    this.subs.clear();
    this.fsWatcher?.close();
    this.fsWatcher = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private start(): void {
    if (!this.timer) {
      this.timer = setInterval(() => this.checkAll(null), this.pollIntervalMs);
      this.timer.unref();
    }
    if (!this.fsWatcher) {
      try {
        // persistent: false — a watcher alone never keeps the process alive.
        this.fsWatcher = watch(this.dir, { persistent: false }, (_event, filename) => this.checkAll(filename ?? null));
        this.fsWatcher.on('error', () => {
          // The platform stopped delivering (directory removed, watch limit reached): polling carries on.
          this.fsWatcher?.close();
          this.fsWatcher = undefined;
        });
      } catch {
        // fs.watch is unsupported here (or out of inotify watches): polling alone delivers.
        this.fsWatcher = undefined;
      }
    }
  }

  private checkAll(filename: string | Buffer | null): void {
    const name = filename === null ? null : String(filename);
    for (const sub of [...this.subs]) {
      if (name === null || name === sub.stateFile) this.check(sub);
    }
  }

  private check(sub: Subscription): void {
    let signature: string | null;
    try {
      signature = freeSignature(sub.read());
    } catch {
      return; // unreadable right now: the next event or poll tries again
    }
    if (signature === null || signature === sub.reported || !this.subs.has(sub)) return;
    sub.reported = signature;
    try {
      sub.onRelease();
    } catch (error) {
      // A throwing listener must not stop the others; surface it as an uncaught error, as an event listener's would be.
      process.nextTick(() => {
        throw error;
      });
    }
  }
}
