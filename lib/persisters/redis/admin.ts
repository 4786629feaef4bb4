/**
 * The operator's side of {@link RedisPersister}: `list()` (SCAN over the key prefix, on
 * every master of a Cluster), `forceRelease()`, and the explanation of a renewal refused
 * because of a forced release. The persister keeps only thin methods that call this.
 */
import type { Cluster, Redis } from 'ioredis';
import { byName, checkForceReleaseName, checkListOptions, evictionHolder, operatorIdentity } from '../adminSupport';
import type { ListOptions, LockInfo, RenewRequest, RenewResult } from '../Persister';
import { EVICTION_SCRIPT, FORCE_RELEASE_SCRIPT } from './adminScripts';
import { evictionKey, type LockKeys } from './keys';
import { holderFromRecord, isHolderReply } from './record';
import { type ScriptClient, unexpectedReply } from './script';

/** Keys asked of Redis per SCAN call. */
const SCAN_COUNT = 1_000;
/** Leases inspected at once while listing. */
const INSPECT_CONCURRENCY = 64;

/** What the admin needs from its persister (its private helpers, passed in by the persister). */
export interface RedisAdminHost {
  /** The ioredis client, `Redis` or `Cluster`. */
  readonly client: Redis | Cluster;
  /** The persister's key prefix. */
  readonly keyPrefix: string;
  /** The keys of a lock name. */
  keys(name: string): LockKeys;
  /** Bounds `op` by the operation timeout; failures are `PersisterError`s. */
  timed<T>(what: string, op: () => Promise<T>): Promise<T>;
  /** The holder of a lock, or null. */
  inspect(name: string): Promise<LockInfo | null>;
}

/** Escapes the glob characters of Redis `MATCH` patterns. */
function globEscape(text: string): string {
  return text.replace(/[\\*?[\]]/g, (c) => `\\${c}`);
}

/** `list()`, `forceRelease()` and the eviction check of one {@link RedisPersister}. */
export class RedisAdmin {
  private readonly scripts: ScriptClient;

  constructor(private readonly host: RedisAdminHost) {
    this.scripts = host.client as unknown as ScriptClient;
  }

  /**
   * Every lease held now, sorted by name: SCAN for lease keys (`<prefix>{<name>}`; the
   * `:fence` records and any other key under the prefix end otherwise) on the client, or
   * on every master of a Cluster, then the holder of each, read as `inspect()` does.
   */
  async list(options?: ListOptions): Promise<LockInfo[]> {
    const prefix = checkListOptions(options);
    const start = `${this.host.keyPrefix}{`;
    // A name starting with '}' is keyed with a \u0001 before it (see RedisPersister.leaseKey).
    const namePattern = prefix.startsWith('}') ? `\u0001${globEscape(prefix)}*` : `${globEscape(prefix)}*`;
    const pattern = `${globEscape(start)}${namePattern}`;
    const names = new Set<string>();
    for (const node of await this.masters()) {
      for (const key of await this.scan(node, pattern)) {
        if (!key.startsWith(start) || !key.endsWith('}') || key.length < start.length + 2) continue;
        let name = key.slice(start.length, -1);
        if (name.startsWith('\u0001}')) name = name.slice(1);
        if (name.startsWith(prefix)) names.add(name);
      }
    }
    const found: LockInfo[] = [];
    const queue = [...names];
    const worker = async (): Promise<void> => {
      for (let name = queue.pop(); name !== undefined; name = queue.pop()) {
        const holder = await this.host.inspect(name);
        if (holder) found.push(holder); // gone meanwhile (released, expired): not listed
      }
    };
    await Promise.all(Array.from({ length: Math.min(INSPECT_CONCURRENCY, queue.length) }, worker));
    return byName(found);
  }

  /** Ends the lease of `name` whoever holds it, keeping the fence; resolves the evicted holder or null. */
  async forceRelease(name: string): Promise<LockInfo | null> {
    checkForceReleaseName(name);
    const what = `Force-releasing lock "${name}"`;
    const { hostname, pid } = operatorIdentity();
    const lock = this.host.keys(name);
    const reply = await this.host.timed(what, () =>
      FORCE_RELEASE_SCRIPT.call(this.scripts, [lock.lease, lock.record, evictionKey(lock.lease)], [hostname, pid]),
    );
    if (reply === 0) return null;
    if (!isHolderReply(reply)) throw unexpectedReply(what, this.host.keyPrefix, reply);
    return holderFromRecord(name, reply[0], reply[1]);
  }

  /**
   * `result` of renewing `request`, with the eviction named when a forced release ended
   * that lease and nobody holds the lock now: `{ renewed: false, holder }` (so the holder
   * is `lost` with reason `taken-over`, not `expired`). One more round trip, and only on
   * that refusal.
   */
  async explain(request: RenewRequest, result: RenewResult): Promise<RenewResult> {
    if (result.renewed || result.holder !== null) return result;
    const what = `Renewing lock "${request.name}"`;
    const note = evictionKey(this.host.keys(request.name).lease);
    const reply = await this.host.timed(what, () => EVICTION_SCRIPT.call(this.scripts, [note], [request.token]));
    if (reply === 0) return result;
    const fields = typeof reply === 'string' ? reply.split('\n') : [];
    if (fields.length < 4) throw unexpectedReply(what, this.host.keyPrefix, reply);
    const [at, fence, pid, ...host] = fields;
    return {
      renewed: false,
      holder: evictionHolder(request.name, { at: Number(at), hostname: host.join('\n'), pid: Number(pid), fence: Number(fence) }),
    };
  }

  /** {@link explain} for each slot of a `renewMany()` answer; a slot whose check fails keeps its error. */
  async explainAll(requests: readonly RenewRequest[], results: Array<RenewResult | Error>): Promise<Array<RenewResult | Error>> {
    const unexplained = (r: RenewResult | Error) => !(r instanceof Error) && !r.renewed && r.holder === null;
    if (!results.some(unexplained)) return results; // the common case: thousands renewed, nothing to look up
    return Promise.all(
      results.map((r, i) => (r instanceof Error || r.renewed || r.holder !== null ? r : this.explain(requests[i], r).catch((e: Error) => e))),
    );
  }

  /** The client itself, or every master of a Cluster (once it knows them: a first command connects it). */
  private async masters(): Promise<Redis[]> {
    const client = this.host.client;
    if (!(client as { isCluster?: boolean }).isCluster) return [client as Redis];
    const cluster = client as Cluster;
    if (cluster.nodes('master').length === 0) await this.host.timed('Listing locks (connecting to the Cluster)', () => cluster.ping());
    return cluster.nodes('master');
  }

  private async scan(node: Redis, pattern: string): Promise<string[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.host.timed(`Listing locks (SCAN on ${describeNode(node)})`, () =>
        node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT),
      );
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    return keys;
  }
}

function describeNode(node: Redis): string {
  const { host, port } = node.options;
  return host !== undefined && port !== undefined ? `${host}:${port}` : 'Redis';
}
