/**
 * A throwaway PgBouncer in **transaction** pooling mode in front of a PostgreSQL, for the
 * test that the PostgreSQL store keeps no session state: every client transaction may run
 * on another server connection. Like PostgreSQL, PgBouncer refuses to run as root, so it
 * runs as the `postgres` user (runuser) when this process is root.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { freePort, stopProcess } from './redisServer';

/** A running PgBouncer. */
export interface PgBouncer {
  /** A URL through PgBouncer to the same database. */
  url: string;
  stop(): Promise<void>;
}

/** The pgbouncer binary, or undefined when it is not installed. */
export function pgBouncerBinary(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  return dirs.map((d) => join(d, 'pgbouncer')).find((p) => existsSync(p));
}

function waitForPort(port: number, deadline: number, child: ChildProcess, log: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`pgbouncer exited with ${child.exitCode}\n${log()}`));
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`pgbouncer did not listen on port ${port} in time\n${log()}`));
        else setTimeout(attempt, 20);
      });
    };
    attempt();
  });
}

/**
 * Starts PgBouncer (transaction mode, `serverConnections` server connections) in front of
 * the PostgreSQL at `postgresUrl`; resolves once it listens.
 */
export async function startPgBouncer(postgresUrl: string, serverConnections = 2): Promise<PgBouncer> {
  const binary = pgBouncerBinary();
  if (!binary) throw new Error('pgbouncer is not installed (apt-get install pgbouncer)');
  const target = new URL(postgresUrl);
  const database = decodeURIComponent(target.pathname.slice(1)) || 'postgres';
  const user = decodeURIComponent(target.username) || 'postgres';
  const password = decodeURIComponent(target.password);
  const dir = mkdtempSync(join(tmpdir(), 'singleton-pgbouncer-'));
  const root = process.getuid?.() === 0;
  const port = await freePort();
  const ini = join(dir, 'pgbouncer.ini');
  const server = [`host=${target.hostname}`, `port=${target.port || 5432}`, `dbname=${database}`, `user=${user}`, password ? `password=${password}` : '']
    .filter(Boolean)
    .join(' ');
  writeFileSync(
    ini,
    [
      '[databases]',
      `${database} = ${server}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = any',
      'pool_mode = transaction',
      `default_pool_size = ${serverConnections}`,
      'max_client_conn = 200',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      'ignore_startup_parameters = extra_float_digits,options',
      '',
    ].join('\n'),
  );
  if (root) {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, id('-u'), id('-g'));
    chownSync(ini, id('-u'), id('-g'));
  }
  const [command, args] = root ? ['runuser', ['-u', 'postgres', '--', binary, ini]] : [binary, [ini]];
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const stop = async () => {
    await stopProcess(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, Date.now() + 10_000, child, () => stderr);
  } catch (error) {
    await stop();
    throw error;
  }
  const auth = target.username ? `${target.username}${target.password ? `:${target.password}` : ''}@` : '';
  return { url: `postgres://${auth}127.0.0.1:${port}/${encodeURIComponent(database)}`, stop };
}
