/**
 * `npm run bench` (full, a few minutes) or `npm run bench -- --quick` (about a minute):
 * starts a throwaway redis-server on loopback, runs every scenario of
 * bench/scenarios/ against the same server, prints ONE table and writes
 * bench/results/latest.json. Installs nothing; leaves no redis-server or child
 * process behind on any exit path (normal end, error, SIGINT/SIGTERM/SIGHUP;
 * and on SIGKILL of this process a watchdog stops redis-server and the
 * fixtures exit when their IPC channel closes).
 *
 * Options: `--quick`; `--only=throughput,handover,…` to run some scenarios (ids: throughput, contention, handover, crash, scale, postgres, keepalive, scripts);
 * `--out=PATH` for the JSON file.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import Redis from 'ioredis';
import ts from 'typescript';
import { type RedisServer, startRedisServer } from '../spec/setup/redisServer';
import { LIB_ENV } from './contenders';
import { type BenchPostgres, startBenchPostgres } from './postgres';
import { renderTable, type Row } from './stats';

/** What every scenario gets. */
export interface BenchContext {
  quick: boolean;
  redisUrl: string;
  /** The PostgreSQL of the PostgreSQL scenario (bench/postgres.ts), when there is one. */
  postgresUrl?: string;
  /** Why there is none. */
  postgresSkipped?: string;
  /** A new connection, closed when the run ends (scenarios may close it earlier). */
  redis(): Redis;
  /** `INFO <section>` as key → value. */
  info(section: string): Promise<Record<string, string>>;
  /** Spawns a bench/fixtures script as a child with an IPC channel; killed at the latest when the run ends. */
  fixture(file: string, args: string[], execArgv?: string[]): ChildProcess;
  /** Progress line on stderr (the table goes to stdout). */
  progress(message: string): void;
}

/** One scenario module. */
export interface Scenario {
  id: string;
  title: string;
  run(ctx: BenchContext): Promise<Row[]>;
}

const BENCH_DIR = __dirname;
const REPO_ROOT = resolve(BENCH_DIR, '..');

const children = new Set<ChildProcess>();
const connections = new Set<Redis>();
let server: RedisServer | undefined;
let watchdog: ChildProcess | undefined;
let postgres: BenchPostgres | undefined;

/**
 * A shell that waits for EOF on a pipe from us, then stops redis-server: the
 * pipe closes however this process ends, SIGKILL included.
 */
function startWatchdog(pid: number): ChildProcess {
  const dog = spawn('sh', ['-c', `read _; kill -9 ${pid} 2>/dev/null`], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  dog.unref();
  (dog.stdin as unknown as { unref?: () => void }).unref?.();
  return dog;
}

/** Synchronous last resort: kill whatever is still running. Safe to call twice. */
function killEverything(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
  for (const c of connections) c.disconnect();
  connections.clear();
  if (server && server.process.exitCode === null && server.process.signalCode === null) server.process.kill('SIGKILL');
  // redis-server is gone: disarm the watchdog so it can never kill a reused pid.
  if (watchdog && watchdog.exitCode === null) watchdog.kill('SIGKILL');
  postgres?.killNow();
  postgres = undefined;
}

async function shutdown(): Promise<void> {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
  for (const c of connections) c.disconnect();
  connections.clear();
  if (server) await server.stop();
  if (watchdog && watchdog.exitCode === null) watchdog.kill('SIGKILL');
  await postgres?.stop();
  postgres = undefined;
}

/**
 * Transpiles lib/ to CommonJS in bench/results/lib (git-ignored), with the
 * compiler options of the build, so the benchmark runs the JavaScript users
 * run rather than tsx's on-the-fly output (esbuild's keepNames wraps every
 * function it defines in a `__name` call). No type check: `npm run typecheck` does that.
 */
function compileLibrary(): string {
  const src = join(REPO_ROOT, 'lib');
  const out = join(BENCH_DIR, 'results', 'lib');
  rmSync(out, { recursive: true, force: true });
  const compilerOptions: ts.CompilerOptions = {
    module: ts.ModuleKind.CommonJS,
    target: ts.ScriptTarget.ES2022,
    esModuleInterop: true,
    sourceMap: false,
  };
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const file = join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), { compilerOptions, fileName: file });
        const target = join(out, file.slice(src.length + 1).replace(/\.ts$/, '.js'));
        mkdirSync(resolve(target, '..'), { recursive: true });
        writeFileSync(target, outputText);
      }
    }
  };
  walk(src);
  return out;
}

function parseArgs(argv: string[]): { quick: boolean; source: boolean; only?: Set<string>; out: string } {
  let quick = false;
  let source = false;
  let only: Set<string> | undefined;
  let out = join(BENCH_DIR, 'results', 'latest.json');
  for (const arg of argv) {
    if (arg === '--quick') quick = true;
    else if (arg === '--source') source = true;
    else if (arg.startsWith('--only=')) only = new Set(arg.slice(7).split(','));
    else if (arg.startsWith('--out=')) out = resolve(arg.slice(6));
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: npm run bench [-- --quick] [--only=throughput,contention,handover,crash,scale,postgres,keepalive,scripts] [--out=FILE] [--source]\n' +
          '  --source: run lib/ through tsx instead of the transpiled JavaScript (slower: esbuild keepNames)\n');
      process.exit(0);
    } else {
      process.stderr.write(`bench: unknown argument ${arg} (see --help)\n`);
      process.exit(64);
    }
  }
  return { quick, source, only, out };
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  if (!args.source) process.env[LIB_ENV] = compileLibrary();
  const { default: throughput } = await import('./scenarios/throughput');
  const { default: contention } = await import('./scenarios/contention');
  const { default: handover } = await import('./scenarios/handover');
  const { default: crash } = await import('./scenarios/crash');
  const { default: scale } = await import('./scenarios/scale');
  const { default: postgresScenario } = await import('./scenarios/postgres');
  const { default: keepAlive } = await import('./scenarios/keepAlive');
  const { default: scripts } = await import('./scenarios/scripts');
  const all: Scenario[] = [throughput, contention, handover, crash, scale, postgresScenario, keepAlive, scripts];
  const unknown = [...(args.only ?? [])].filter((id) => !all.some((s) => s.id === id));
  if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(', ')} in --only (known: ${all.map((s) => s.id).join(', ')})`);
  const scenarios = all.filter((s) => !args.only || args.only.has(s.id));

  server = await startRedisServer();
  watchdog = startWatchdog(server.process.pid as number);
  const admin = new Redis(server.url);
  connections.add(admin);
  const redisVersion = parseInfo(await admin.info('server')).redis_version;
  if (scenarios.some((s) => s.id === 'postgres')) postgres = await startBenchPostgres();

  const ctx: BenchContext = {
    quick: args.quick,
    redisUrl: server.url,
    postgresUrl: postgres?.url,
    postgresSkipped: postgres?.skipped,
    redis: () => {
      const c = new Redis((server as RedisServer).url);
      connections.add(c);
      c.once('end', () => connections.delete(c));
      return c;
    },
    info: async (section) => parseInfo(await admin.info(section)),
    fixture: (file, fixtureArgs, execArgv = []) => {
      const child = spawn(process.execPath, [...execArgv, '--import', 'tsx', join(BENCH_DIR, 'fixtures', file), ...fixtureArgs], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    progress: (message) => process.stderr.write(`bench: ${message}\n`),
  };

  const machine = {
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    redis: redisVersion,
    postgres: postgres?.url ? postgres.source : `skipped: ${postgres?.skipped ?? 'not run'}`,
    command: `npm run bench${args.quick || args.source ? ' --' : ''}${args.quick ? ' --quick' : ''}${args.source ? ' --source' : ''}`,
    library: args.source ? 'lib/ through tsx' : 'lib/ transpiled to CommonJS (as dist/)',
  };
  ctx.progress(`redis-server ${redisVersion} on ${server.url}; ${machine.nproc} CPUs; node ${machine.node}; ${args.quick ? 'quick' : 'full'} run`);
  if (postgres) ctx.progress(postgres.url ? `PostgreSQL (${postgres.source}) for scenario 6` : `no PostgreSQL: ${postgres.skipped}`);

  const rows: Row[] = [];
  for (const scenario of scenarios) {
    const t0 = Date.now();
    ctx.progress(`${scenario.title}…`);
    await admin.flushall();
    rows.push(...(await scenario.run(ctx)));
    ctx.progress(`${scenario.title} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }

  const seconds = (Date.now() - started) / 1000;
  process.stdout.write(
    `\nsingleton-process benchmarks — ${machine.command}; ${machine.nproc} CPUs (${machine.cpu}), node ${machine.node}, redis ${machine.redis}; ${seconds.toFixed(0)} s\n\n`,
  );
  process.stdout.write(`${renderTable(rows)}\n`);
  mkdirSync(resolve(args.out, '..'), { recursive: true });
  writeFileSync(
    args.out,
    `${JSON.stringify({ date: new Date().toISOString(), quick: args.quick, seconds, machine, rows }, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v), 2)}\n`,
  );
  process.stdout.write(`\nwritten: ${args.out}\n`);
}

if (require.main === module) {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`bench: ${signal}, stopping\n`);
      killEverything();
      process.kill(process.pid, signal);
    });
  }
  process.once('exit', killEverything);
  main()
    .then(shutdown)
    .then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
        killEverything();
        process.exit(1);
      },
    );
}
