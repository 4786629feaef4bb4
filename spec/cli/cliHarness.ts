/**
 * Runs the real `singleton-run` (lib/cli/main.ts through `node --import tsx`)
 * as a child process, collects what it prints, and reads what the test
 * commands (spec/fixtures/cli/) log, with bounded waits only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The repository root. */
export const ROOT = resolve(__dirname, '..', '..');
/** The CLI entry point. */
export const MAIN = join(ROOT, 'lib', 'cli', 'main.ts');
/** The node arguments that run the CLI from source. */
export const FROM_SOURCE: readonly string[] = ['--import', 'tsx', MAIN];
/** The node COMMAND fixture (see its header for flags). */
export const CHILD = join(ROOT, 'spec', 'fixtures', 'cli', 'child.js');
/** The shell COMMAND fixture with a background grandchild. */
export const TREE = join(ROOT, 'spec', 'fixtures', 'cli', 'tree.sh');

/** How a CLI run ended. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** `Date.now()` when the test saw it end. */
  at: number;
}

const running = new Set<CliProcess>();

/** One running `singleton-run`. */
export class CliProcess {
  readonly process: ChildProcess;
  stdout = '';
  stderr = '';
  readonly startedAt = Date.now();
  result: CliResult | undefined;
  private readonly ended: Promise<CliResult>;

  /** `entry`: the node arguments naming the CLI (from source by default; a built `main.js` works too). */
  constructor(args: readonly string[], env: Record<string, string | undefined> = {}, entry: readonly string[] = FROM_SOURCE) {
    this.process = spawn(process.execPath, [...entry, ...args], {
      cwd: ROOT,
      env: { ...process.env, SINGLETON_RUN_DEBUG_HANDLES: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process.stdout?.setEncoding('utf8').on('data', (s: string) => (this.stdout += s));
    this.process.stderr?.setEncoding('utf8').on('data', (s: string) => (this.stderr += s));
    running.add(this);
    this.ended = new Promise((resolveEnd) => {
      this.process.once('close', (code, signal) => {
        running.delete(this);
        this.result = { code, signal, stdout: this.stdout, stderr: this.stderr, at: Date.now() };
        resolveEnd(this.result);
      });
    });
  }

  /** The CLI's pid (the holder pid other instances see). */
  get pid(): number {
    return this.process.pid ?? -1;
  }

  /** Resolves how it ended; rejects (with its output) if it still runs after `timeoutMs`. */
  wait(timeoutMs = 20_000): Promise<CliResult> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`singleton-run still running after ${timeoutMs} ms\nstdout: ${this.stdout}\nstderr: ${this.stderr}`)),
        timeoutMs,
      );
    });
    return Promise.race([this.ended, timeout]).finally(() => clearTimeout(timer));
  }

  /** Sends `signal` to the CLI process (not its command's group). */
  kill(signal: NodeJS.Signals): void {
    if (!this.result) this.process.kill(signal);
  }
}

/** Starts `singleton-run ARGS` (from source, or from `entry`: see {@link CliProcess}). */
export function startCli(args: readonly string[], env?: Record<string, string | undefined>, entry?: readonly string[]): CliProcess {
  return new CliProcess(args, env, entry);
}

/** Runs `singleton-run ARGS` to the end (bounded). */
export function runCli(args: readonly string[], env?: Record<string, string | undefined>, timeoutMs?: number): Promise<CliResult> {
  return startCli(args, env).wait(timeoutMs);
}

/** SIGKILLs every CLI still running and waits for it: for `afterEach`. */
export async function killAllCli(): Promise<void> {
  await Promise.all(
    [...running].map((cli) => {
      cli.kill('SIGKILL');
      return cli.wait(10_000).catch(() => undefined);
    }),
  );
}

/**
 * Polls `predicate` every `intervalMs` until it holds; rejects naming `what`
 * after `timeoutMs`. Resolves the `Date.now()` at which it first held.
 */
export async function until(
  predicate: () => boolean | Promise<boolean>,
  what: string,
  { timeoutMs = 15_000, intervalMs = 20 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return Date.now();
    if (Date.now() > deadline) throw new Error(`${what}: not so within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** One line child.js logged. */
export interface ChildEvent {
  event: 'start' | 'signal' | 'end';
  t: number;
  pid: number;
  code?: number;
  signal?: string;
  env?: { SINGLETON_NAME?: string; SINGLETON_FENCING_TOKEN?: string };
}

/** Every event child.js logged to `file` so far (none when it does not exist). */
export function childEvents(file: string): ChildEvent[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as ChildEvent);
}

/** Waits until child.js logged `event` to `file` (the `nth` one, from 1) and returns it. */
export async function waitForChildEvent(file: string, event: ChildEvent['event'], nth = 1, timeoutMs = 15_000): Promise<ChildEvent> {
  let found: ChildEvent | undefined;
  await until(
    () => {
      found = childEvents(file).filter((e) => e.event === event)[nth - 1];
      return found !== undefined;
    },
    `child event "${event}" #${nth} in ${file}`,
    { timeoutMs },
  );
  return found as ChildEvent;
}

/** The "<pid> <grandchild pid>" tree.sh wrote, once it has. */
export async function treePids(file: string): Promise<{ child: number; grandchild: number }> {
  await until(() => existsSync(file), `tree.sh pid file ${file}`);
  const [child, grandchild] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
  return { child, grandchild };
}

/**
 * Whether `pid` is gone: no such process, or a zombie (where nothing reaps
 * orphans, a dead grandchild stays a zombie; it runs no code any more).
 */
export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/** Kills `pid` and its process group, ignoring what is gone already (cleanup after a failed test). */
export function killTree(pid: number): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** The non-empty lines of `text`. */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '');
}

/** A store the CLI tests run against. */
export interface CliStore {
  /** The `--store` URL. */
  url: string;
  /** Called once the test is over. */
  cleanup(): void;
}

/** A file store in a directory of its own (removed by its `cleanup`). */
export function fileStore(): CliStore {
  const dir = mkdtempSync(join(tmpdir(), 'singleton-run-spec-'));
  return { url: pathToFileURL(join(dir, 'locks')).href, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The stores the CLI tests run against, for `describe.each`: a file store in its own directory, and the global setup's Redis. */
export const CLI_STORES: Array<[string, () => CliStore]> = [
  ['file', fileStore],
  ['redis', () => ({ url: process.env.REDIS_URL as string, cleanup: () => undefined })],
];
