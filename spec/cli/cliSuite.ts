/**
 * What every test of a CLI suite gets afresh, and what is cleaned up after it: a lock name
 * of its own, a directory for its commands' logs, a list of pids to kill should the test
 * fail half-way (and every CLI still running, SIGKILLed); with a store, the store and a
 * persister on it. Registers its `beforeEach` / `afterEach` in the `describe` that calls it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LockInfo, Persister } from '../../lib/persisters/Persister';
import { persisterFromUrl } from '../../lib/persisters/fromUrl';
import { type CliProcess, type CliResult, type CliStore, killAllCli, killTree, runCli, startCli } from './cliHarness';

/** One test's name, directory and pids (see {@link cliTestSpace}). */
export interface CliTestSpace {
  /** The lock name of this test. */
  readonly name: string;
  /** A directory of this test's own, removed after it. */
  readonly dir: string;
  /** Pids the test started outside the CLI's reach (a command's tree): killed after it. */
  readonly pidsToKill: number[];
  /** A log file in {@link dir} for a command labelled `label`. */
  log(label: string): string;
}

/** {@link CliTestSpace} with a store (see {@link cliStoreSpace}). */
export interface CliStoreSpace extends CliTestSpace {
  /** This test's store. */
  readonly store: CliStore;
  /** A persister on it (as another host would see the lock). */
  readonly persister: Persister;
  /** Runs `singleton-run --name NAME --store URL ...extra -- ...command` to its end. */
  run(extra: string[], command: string[], env?: Record<string, string>): Promise<CliResult>;
  /** Starts `singleton-run --name NAME --store URL ...extra -- ...command`. */
  start(extra: string[], command: string[], env?: Record<string, string>): CliProcess;
  /** The lease of {@link name} as the store has it (null when free). */
  holder(): Promise<LockInfo | null>;
}

let seq = 0;

/** A fresh name (starting with `prefix`) and directory for each test of the calling `describe`. */
export function cliTestSpace(prefix: string): CliTestSpace {
  let name = '';
  let dir = '';
  const pidsToKill: number[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), `singleton-${prefix}-`));
    name = `${prefix}-${process.pid}-${Date.now().toString(36)}-${(seq += 1)}`;
  });
  afterEach(async () => {
    await killAllCli();
    for (const pid of pidsToKill.splice(0)) killTree(pid);
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get name() {
      return name;
    },
    get dir() {
      return dir;
    },
    pidsToKill,
    log: (label) => join(dir, `${label}.log`),
  };
}

/** {@link cliTestSpace} and a store made by `makeStore` for each test, with a persister on it. */
export function cliStoreSpace(prefix: string, makeStore: () => CliStore): CliStoreSpace {
  const space = cliTestSpace(prefix);
  let store: CliStore | undefined;
  let persister: Persister | undefined;
  beforeEach(async () => {
    store = makeStore();
    persister = await persisterFromUrl(store.url);
  });
  afterEach(async () => {
    await persister?.close?.();
    store?.cleanup();
    persister = store = undefined;
  });
  const made = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`the ${what} exists only while a test runs`);
    return value;
  };
  const args = (extra: string[], command: string[]) => ['--name', space.name, '--store', made(store, 'store').url, ...extra, '--', ...command];
  return {
    get name() {
      return space.name;
    },
    get dir() {
      return space.dir;
    },
    pidsToKill: space.pidsToKill,
    log: space.log,
    get store() {
      return made(store, 'store');
    },
    get persister() {
      return made(persister, 'persister');
    },
    run: (extra, command, env) => runCli(args(extra, command), env),
    start: (extra, command, env) => startCli(args(extra, command), env),
    holder: () => made(persister, 'persister').inspect(space.name),
  };
}
