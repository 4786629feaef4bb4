/**
 * A Redis that evicts keys under memory pressure can evict a live lease: the
 * lock then looks free, and a second instance acquires it while the first
 * still runs. Only `noeviction` is safe: the `volatile-*` policies evict
 * exactly the keys with a TTL, which every lease has; `allkeys-*` evict any key.
 * This checks the policy once and logs one warning when it is not `noeviction`.
 */
import type { Logger } from '../../logger';

/** The slice of an ioredis `Redis` (or a Cluster node) the check uses. */
export interface ConfigClient {
  readonly isCluster?: boolean;
  config(subcommand: 'GET', parameter: string): Promise<unknown>;
  nodes?(role: 'master'): ConfigClient[];
  readonly options?: { host?: string; port?: number };
}

/** The one policy under which Redis never evicts a lease. */
export const SAFE_EVICTION_POLICY = 'noeviction';

async function policyOf(client: ConfigClient): Promise<string | undefined> {
  const reply = await client.config('GET', 'maxmemory-policy');
  // CONFIG GET answers [name, value] (RESP2) or { name: value } (RESP3).
  if (Array.isArray(reply)) return reply[1] === undefined ? undefined : String(reply[1]);
  if (reply && typeof reply === 'object') return String((reply as Record<string, unknown>)['maxmemory-policy']);
  return undefined;
}

/**
 * Reads `maxmemory-policy` (on every master of a Cluster) and warns once per
 * policy that can evict leases. A server that refuses CONFIG (managed Redis
 * services often do) is noted at debug level only. Never rejects.
 */
export async function warnIfLeasesCanBeEvicted(client: ConfigClient, logger: Logger): Promise<void> {
  const servers = client.isCluster && typeof client.nodes === 'function' ? client.nodes('master') : [client];
  const unsafe = new Map<string, string[]>();
  await Promise.all(
    servers.map(async (server) => {
      const where = server.options?.host !== undefined ? `${server.options.host}:${server.options.port ?? 6379}` : 'redis';
      try {
        const policy = await policyOf(server);
        if (policy !== undefined && policy !== SAFE_EVICTION_POLICY) unsafe.set(policy, [...(unsafe.get(policy) ?? []), where]);
      } catch (err) {
        logger.debug({ err, server: where }, `could not read maxmemory-policy from Redis (CONFIG refused?): the eviction check is skipped`);
      }
    }),
  );
  for (const [policy, where] of unsafe) {
    logger.warn(
      { maxmemoryPolicy: policy, servers: where },
      `Redis maxmemory-policy is "${policy}": under memory pressure Redis may evict a live lease, and another instance ` +
        `would then take the lock while its holder still runs. Set maxmemory-policy to noeviction on the Redis that ` +
        `holds the locks (CONFIG SET maxmemory-policy noeviction, and in redis.conf), or keep the locks on a Redis of their own.`,
    );
  }
}
