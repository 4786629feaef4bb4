/**
 * The description of an ioredis client for the keep-alive thread: enough to open a
 * second connection to the same Redis (standalone, Sentinel or Cluster, with TLS and
 * credentials) from another thread.
 */
import { cloneable, type ThreadDescriptor } from './descriptor';

interface DescribableClient {
  readonly isCluster?: boolean;
  readonly options?: unknown;
  readonly startupNodes?: unknown;
}

/**
 * ioredis' own defaults (functions among them), so that leaving those out is not
 * reported. Read from ioredis' modules where they are found; else every function is reported.
 */
function ioredisDefaults(module: 'redis/RedisOptions' | 'cluster/ClusterOptions', name: string): Record<string, unknown> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return ((require(`ioredis/built/${module}`) as Record<string, unknown>)[name] ?? {}) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** `options` made cloneable; functions that are ioredis' own defaults are left out silently. */
function cloneOptions(options: unknown, defaults: Record<string, unknown>, dropped: string[], path = ''): Record<string, unknown> {
  const source = (options ?? {}) as Record<string, unknown>;
  const withoutDefaults: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(source)) {
    // ioredis fills these in itself: its default functions, and the connector class it picked.
    if (typeof value === 'function' && (defaults[key] === value || key === 'Connector')) continue;
    withoutDefaults[key] = value;
  }
  return (cloneable(withoutDefaults, path, dropped) ?? {}) as Record<string, unknown>;
}

/**
 * A {@link ThreadDescriptor} of an ioredis `Redis` or `Cluster` client.
 * @param client the client a `RedisPersister` runs on.
 */
export function redisThreadDescriptor(
  client: unknown,
  persister: { keyPrefix: string; operationTimeoutMs: number },
): ThreadDescriptor {
  const c = client as DescribableClient;
  const dropped: string[] = [];
  if (c.isCluster) {
    const options = cloneOptions({ ...(c.options as object), redisOptions: undefined }, ioredisDefaults('cluster/ClusterOptions', 'DEFAULT_CLUSTER_OPTIONS'), dropped);
    const redisOptions = (c.options as { redisOptions?: unknown } | undefined)?.redisOptions;
    if (redisOptions) options.redisOptions = cloneOptions(redisOptions, {}, dropped, 'redisOptions');
    const startupNodes = cloneable(c.startupNodes ?? [], 'startupNodes', dropped) as unknown[];
    return { kind: 'redis-cluster', startupNodes, options, ...persister, ...(dropped.length ? { dropped } : {}) };
  }
  const options = cloneOptions(c.options, ioredisDefaults('redis/RedisOptions', 'DEFAULT_REDIS_OPTIONS'), dropped);
  return { kind: 'redis', options, ...persister, ...(dropped.length ? { dropped } : {}) };
}
