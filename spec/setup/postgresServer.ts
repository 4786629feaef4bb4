/**
 * A throwaway PostgreSQL for the tests and the benchmarks: `initdb` into a temporary
 * directory, `pg_ctl start` on a free loopback port, `pg_ctl stop` and the directory
 * removed at the end. PostgreSQL refuses to run as root, so when this process is root
 * the server runs as the `postgres` user (`runuser -u postgres --`) in a directory it owns.
 * Every step is bounded in time.
 */
import { execFile } from 'node:child_process';
import { accessSync, chownSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from './redisServer';

/** A running throwaway server. */
export interface PostgresServer {
  /** Loopback port it listens on. */
  port: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication on loopback). */
  url: string;
  /** Its data directory (also its socket directory). */
  dir: string;
  /** Stops the server (`pg_ctl stop -m immediate`); the data directory stays for {@link start}. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data directory after {@link kill}. */
  start(): Promise<void>;
  /** Stops the server and removes its data directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Where Debian's packages put the server binaries when they are not on PATH. */
const DEBIAN_ROOT = '/usr/lib/postgresql';

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The directory holding `initdb` and `pg_ctl`: on PATH, else the newest /usr/lib/postgresql/N/bin; undefined if none. */
export function postgresBinDir(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && executable(join(dir, 'initdb')) && executable(join(dir, 'pg_ctl'))) return dir;
  }
  if (!existsSync(DEBIAN_ROOT)) return undefined;
  const versions = readdirSync(DEBIAN_ROOT)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const dir = join(DEBIAN_ROOT, version, 'bin');
    if (executable(join(dir, 'initdb')) && executable(join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

/** Why no throwaway server can be started here, or undefined when one can. */
export function postgresUnavailableReason(): string | undefined {
  if (!postgresBinDir()) {
    return 'the PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql, or set POSTGRES_URL';
  }
  if (process.getuid?.() === 0 && !existsSync('/usr/sbin/runuser') && !existsSync('/sbin/runuser') && !existsSync('/usr/bin/runuser')) {
    return 'running as root without runuser, so PostgreSQL cannot be started as the postgres user: set POSTGRES_URL';
  }
  return undefined;
}

function run(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs, encoding: 'utf8', killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `id -u/-g postgres`, when this process is root and the user exists. */
async function postgresUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres'], 5_000), run('id', ['-g', 'postgres'], 5_000)]).catch(() => {
    throw new Error('Running as root, PostgreSQL must run as the "postgres" user, which does not exist. Install postgresql, or set POSTGRES_URL.');
  });
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

/**
 * Starts a throwaway PostgreSQL on a free 127.0.0.1 port; resolves once it accepts
 * connections (pg_ctl -w). Tuned for tests (no fsync): never for real data.
 */
export async function startPostgresServer(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(postgresUnavailableReason());
  const user = await postgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'singleton-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const as = (command: string, args: string[]): [string, string[]] =>
    user ? ['runuser', ['-u', 'postgres', '--', join(bin, command), ...args]] : [join(bin, command), args];
  const port = await freePort();
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    '-c listen_addresses=127.0.0.1',
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c max_connections=200',
  ].join(' ');
  const start = async () => {
    await run(...as('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']), 70_000).catch((error: Error) => {
      throw new Error(`${error.message}\n${readLog(dir)}`);
    });
  };
  let stopped = false;
  const kill = async () => {
    await run(...as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '30', 'stop']), 40_000).catch(() => undefined);
  };
  try {
    await run(...as('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']), 120_000);
    await start();
  } catch (error) {
    await kill();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dir,
    kill,
    start,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'server.log'), 'utf8').slice(-2_000);
  } catch {
    return '';
  }
}
