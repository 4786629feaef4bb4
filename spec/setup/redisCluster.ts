import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { freePort, stopProcess } from './redisServer';

const run = promisify(execFile);

/** A throwaway 3-master Redis Cluster on loopback: no persistence, stopped by the test that started it. */
export interface RedisCluster {
  nodes: Array<{ host: string; port: number }>;
  stop(): Promise<void>;
}

/** Starts three cluster-enabled redis-servers on free ports, joins them, and waits until the cluster is ok. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'singleton-cluster-'));
  const ports = [await freePort(), await freePort(), await freePort()];
  // The cluster bus defaults to port + 10000, which is out of range for ephemeral ports above
  // 55535: give every node a free bus port of its own.
  const busPorts = [await freePort(), await freePort(), await freePort()];
  const children: ChildProcess[] = ports.map((port, i) =>
    spawn(
      'redis-server',
      ['--port', String(port), '--cluster-port', String(busPorts[i]), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
        '--cluster-node-timeout', '2000', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    ),
  );
  const stop = async () => {
    await Promise.all(children.map(stopProcess));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => {
      for (const port of ports) await ping(port);
      return true;
    }, 10_000, 'cluster nodes to listen');
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 20_000,
    });
    await waitFor(async () => {
      for (const port of ports) if (!(await clusterOk(port))) return false;
      return true;
    }, 20_000, 'cluster_state:ok on every node');
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes: ports.map((port) => ({ host: '127.0.0.1', port })), stop };
}

async function ping(port: number): Promise<void> {
  const c = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.ping();
  } finally {
    c.disconnect();
  }
}

async function clusterOk(port: number): Promise<boolean> {
  const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => undefined);
  try {
    return /cluster_state:ok/.test(String(await c.cluster('INFO')));
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`Redis Cluster: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
