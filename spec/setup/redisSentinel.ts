import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { freePort, startRedisServer, stopProcess, type RedisServer } from './redisServer';

/** The name the sentinels monitor. */
export const SENTINEL_MASTER_NAME = 'singleton-primary';

/** One primary, one replica and three sentinels on loopback, started by a test and stopped by it. */
export interface RedisSentinelSetup {
  /** Sentinel addresses, as ioredis's `sentinels` option takes them. */
  sentinels: Array<{ host: string; port: number }>;
  /** Port of the server that is primary now, as the sentinels say. */
  primaryPort(): Promise<number>;
  /** `SENTINEL FAILOVER`, then waits (bounded) until the sentinels name the other server and it is a writable primary. */
  failover(timeoutMs?: number): Promise<{ from: number; to: number }>;
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`Redis Sentinel setup: ${what} did not happen within ${timeoutMs} ms${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function startSentinel(port: number, primaryPort: number, dir: string): ChildProcess {
  // Sentinel rewrites its configuration file, so each one gets its own in the temporary directory.
  const conf = join(dir, `sentinel-${port}.conf`);
  writeFileSync(
    conf,
    [
      `port ${port}`,
      `bind ${HOST}`,
      `dir ${dir}`,
      `sentinel monitor ${SENTINEL_MASTER_NAME} ${HOST} ${primaryPort} 2`,
      `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} 1000`,
      `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 10000`,
      `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
      '',
    ].join('\n'),
  );
  // `redis-server --sentinel` is what the redis-sentinel binary runs; Debian's redis-server package has it.
  return spawn('redis-server', [conf, '--sentinel', '--loglevel', 'warning'], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/**
 * Starts a primary, a replica of it and three sentinels (quorum 2) on free loopback ports,
 * and resolves once the replica is in sync and every sentinel knows the replica and the
 * other two sentinels, so `SENTINEL FAILOVER` can proceed. Bounded by `timeoutMs`; on failure
 * everything started is stopped.
 */
export async function startRedisSentinel(timeoutMs = 30_000): Promise<RedisSentinelSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'singleton-sentinel-'));
  const servers: RedisServer[] = [];
  const sentinelProcesses: ChildProcess[] = [];
  const admins: Redis[] = [];
  const admin = (port: number) => {
    const client = new Redis(port, HOST, { retryStrategy: () => 50, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    admins.push(client);
    return client;
  };
  const stop = async () => {
    for (const client of admins) client.disconnect();
    await Promise.all([...sentinelProcesses.map((p) => stopProcess(p)), ...servers.map((s) => s.stop())]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // A replica writes the snapshot it receives (after a failover, so does the old primary) into its
    // directory: the temporary one, not the directory the tests run from. (`dir` cannot be set later.)
    const primary = await startRedisServer(undefined, ['--dir', dir]);
    servers.push(primary);
    const replica = await startRedisServer(undefined, ['--dir', dir]);
    servers.push(replica);
    const replicaAdmin = admin(replica.port);
    await replicaAdmin.replicaof(HOST, primary.port);
    await until('the replica syncing with the primary', timeoutMs, async () =>
      (await replicaAdmin.info('replication')).includes('master_link_status:up') ? true : undefined,
    );

    const ports = [await freePort(), await freePort(), await freePort()];
    for (const port of ports) sentinelProcesses.push(startSentinel(port, primary.port, dir));
    const sentinelAdmins = ports.map(admin);
    await until('every sentinel knowing the replica and the two other sentinels', timeoutMs, async () => {
      for (const s of sentinelAdmins) {
        const replicas = (await s.call('SENTINEL', 'REPLICAS', SENTINEL_MASTER_NAME)) as unknown[];
        const peers = (await s.call('SENTINEL', 'SENTINELS', SENTINEL_MASTER_NAME)) as unknown[];
        if (replicas.length < 1 || peers.length < 2) return undefined;
      }
      return true;
    });

    const primaryPort = async () => {
      const [, port] = (await sentinelAdmins[0].call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME)) as [string, string];
      return Number(port);
    };
    return {
      sentinels: ports.map((port) => ({ host: HOST, port })),
      primaryPort,
      async failover(failoverTimeoutMs = 30_000) {
        const from = await primaryPort();
        const to = servers.map((s) => s.port).find((p) => p !== from) as number;
        const next = admin(to);
        // Right after an earlier failover the demoted server is not yet a "good" replica to the
        // sentinels (its link and INFO must be fresh): NOGOODSLAVE then, so ask again, bounded.
        await until(`a replica the sentinels can promote (port ${to})`, failoverTimeoutMs, async () => {
          try {
            await sentinelAdmins[0].call('SENTINEL', 'FAILOVER', SENTINEL_MASTER_NAME);
            return true;
          } catch (error) {
            if (error instanceof Error && /NOGOODSLAVE/.test(error.message)) return undefined;
            throw error;
          }
        });
        await until(`the failover from port ${from} to port ${to}`, failoverTimeoutMs, async () => {
          for (const s of sentinelAdmins) {
            const [, port] = (await s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME)) as [string, string];
            if (port !== String(to)) return undefined;
          }
          return (await next.info('replication')).includes('role:master') ? true : undefined;
        });
        return { from, to };
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
