/**
 * The PostgreSQL the benchmark's PostgreSQL scenario runs against: `POSTGRES_URL` when
 * set, else a throwaway server started the way the tests start theirs
 * (spec/setup/postgresServer.ts: initdb + pg_ctl on a free loopback port, as the
 * postgres user under root). Where neither is possible the scenario is skipped with the
 * reason printed. A throwaway server is stopped on every exit path; if the benchmark is
 * SIGKILLed, a watchdog shell stops it and removes its directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { postgresUnavailableReason, type PostgresServer, startPostgresServer } from '../spec/setup/postgresServer';

/** The benchmark's PostgreSQL, or why there is none. */
export interface BenchPostgres {
  /** The connection URL, when there is a server. */
  url?: string;
  /** Why the PostgreSQL scenario cannot run, when there is none. */
  skipped?: string;
  /** Where it came from, for the progress line. */
  source?: 'POSTGRES_URL' | 'throwaway server';
  /** Stops a throwaway server (no-op otherwise). */
  stop(): Promise<void>;
  /** Synchronous last resort: SIGKILLs a throwaway server and removes its directory. */
  killNow(): void;
}

const NOTHING = { stop: async () => undefined, killNow: () => undefined };

/** The postmaster's pid, from its pid file. */
function postmasterPid(server: PostgresServer): number | undefined {
  try {
    const pid = Number(readFileSync(join(server.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** A shell that, once our end of its stdin closes (however we die), kills the postmaster and removes its directory. */
function watchdog(pid: number, dir: string): ChildProcess {
  const dog = spawn('sh', ['-c', `read _; kill -9 ${pid} 2>/dev/null; sleep 1; rm -rf '${dir}'`], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  dog.unref();
  (dog.stdin as unknown as { unref?: () => void }).unref?.();
  return dog;
}

/** `POSTGRES_URL`, a throwaway server, or the reason there is neither. */
export async function startBenchPostgres(): Promise<BenchPostgres> {
  if (process.env.POSTGRES_URL) return { url: process.env.POSTGRES_URL, source: 'POSTGRES_URL', ...NOTHING };
  const reason = postgresUnavailableReason();
  if (reason) return { skipped: reason, ...NOTHING };
  let server: PostgresServer;
  try {
    server = await startPostgresServer();
  } catch (error) {
    return { skipped: `the throwaway PostgreSQL did not start (${String(error).split('\n')[0]})`, ...NOTHING };
  }
  const pid = postmasterPid(server);
  const dog = pid ? watchdog(pid, server.dir) : undefined;
  const disarm = () => {
    if (dog && dog.exitCode === null) dog.kill('SIGKILL');
  };
  return {
    url: server.url,
    source: 'throwaway server',
    stop: async () => {
      await server.stop();
      disarm();
    },
    killNow: () => {
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      rmSync(server.dir, { recursive: true, force: true });
      disarm();
    },
  };
}
