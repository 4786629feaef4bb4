import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_TTL_MS } from '../options';
import { PERSISTER_URL_SCHEMES } from '../persisters/fromUrl';
import { checkName } from '../validate';
import { ExitCode } from './exitCodes';

/** The program name, as messages show it. */
export const PROGRAM = 'singleton-run';

/**
 * Bad usage: flags, values or arguments `singleton-run` cannot accept. The CLI
 * prints the message and a pointer to `--help` on stderr, then exits 64.
 */
export class UsageError extends Error {
  /** Always {@link ExitCode.USAGE} (64). */
  readonly exitCode = ExitCode.USAGE;

  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** What `singleton-run … -- COMMAND` was asked to do, after checks and defaults. */
export interface RunArgs {
  kind: 'run';
  /** The lock name. */
  name: string;
  /** The store URL (`--store`, else `$SINGLETON_STORE`); `undefined` means the file store in the OS temp dir. */
  store: string | undefined;
  /** Wait for the lock instead of exiting on conflict (`--wait`; implied by `--wait-timeout`). */
  wait: boolean;
  /** Longest wait, ms (`--wait-timeout`); `undefined` waits for ever. */
  waitTimeoutMs: number | undefined;
  /** Lease length, ms (`--ttl`); `undefined` keeps the library default (15000). */
  ttlMs: number | undefined;
  /** Where the lease is renewed (`--keep-alive loop|thread`); `undefined` keeps the library default ('loop'). */
  keepAlive?: 'loop' | 'thread';
  /** Exit code on conflict or wait timeout (`--conflict-exit-code`). @default 75 */
  conflictExitCode: number;
  /** Grace between SIGTERM and SIGKILL when the lock is lost (`--kill-after`). @default 10000 */
  killAfterMs: number;
  /** The command to run, found on `PATH` (no shell). */
  command: string;
  /** Its arguments, passed as they are. */
  args: string[];
}

/** What `singleton-run status` was asked to do. */
export interface StatusArgs {
  kind: 'status';
  /** The lock name. */
  name: string;
  /** The store URL, as for {@link RunArgs.store}. */
  store: string | undefined;
  /** Print one JSON object instead of text. */
  json: boolean;
}

/** What `singleton-run list` was asked to do. */
export interface ListArgs {
  kind: 'list';
  /** The store URL, as for {@link RunArgs.store}. */
  store: string | undefined;
  /** Only lock names starting with this (`--prefix`); '' lists every lock. */
  prefix: string;
  /** Print one JSON array instead of a table. */
  json: boolean;
}

/** What `singleton-run release --force` was asked to do. */
export interface ForceReleaseArgs {
  kind: 'release';
  /** The lock name. */
  name: string;
  /** The store URL, as for {@link RunArgs.store}. */
  store: string | undefined;
}

/** A parsed command line: one of the commands, or a request for help or the version. */
export type CliArgs = RunArgs | StatusArgs | ListArgs | ForceReleaseArgs | { kind: 'help' } | { kind: 'version' };

/** Default of `--conflict-exit-code`. */
export const DEFAULT_CONFLICT_EXIT_CODE = ExitCode.CONFLICT;
/** Default of `--kill-after`, ms. */
export const DEFAULT_KILL_AFTER_MS = 10_000;

/** Longest duration a Node timer can wait (about 24.8 days); longer ones would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const STORE_EXAMPLES = 'redis://host:6379, rediss://, mongodb://host/db, mongodb+srv://, postgres://host/db, postgresql://, or file:///dir';

/** The text of `singleton-run --help`. */
export const HELP = `Usage:
  ${PROGRAM} --name NAME [options] [--] COMMAND [ARGS...]
  ${PROGRAM} status --name NAME [--store URL] [--json]
  ${PROGRAM} list [--store URL] [--prefix P] [--json]
  ${PROGRAM} release --force --name NAME [--store URL]

Runs COMMAND only while holding the cluster-wide lock NAME, so that one
instance runs at a time across every process and host sharing the store.
COMMAND is run without a shell, in its own process group (from a terminal:
in singleton-run's, so it keeps the terminal), with SINGLETON_NAME and
SINGLETON_FENCING_TOKEN in its environment; it is ended within a second if
singleton-run dies, even by SIGKILL.

Options:
  --name NAME                 lock name (required)
  --store URL                 redis://, rediss://, mongodb://, mongodb+srv://,
                              postgres://, postgresql:// or file: URL;
                              default $SINGLETON_STORE, else a file store in
                              the OS temp directory (one host, no server)
  --wait                      wait for the lock instead of exiting on conflict
  --wait-timeout MS           give up waiting after MS ms (implies --wait)
  --ttl MS                    lease length in ms (default 15000, at least 100);
                              a crashed holder's lock frees up after at most
                              this long
  --keep-alive loop|thread    renew the lease from the event loop (default) or
                              from a worker thread on its own store connection
  --conflict-exit-code N      exit code when the lock is held elsewhere or the
                              wait timed out (default 75)
  --kill-after MS             when the lock is lost, SIGKILL the command this
                              long after SIGTERM (default 10000)
  -h, --help                  show this help
  --version                   show the version

status prints who holds NAME (owner, host, pid, fencing token, acquired,
expires in) or that it is free; --json prints one JSON object.

list prints every lock held in the store, one line each (name, owner, host,
pid, fencing token, acquired, expires in); --prefix P keeps the names that
start with P; --json prints one JSON array.

release --force frees NAME whoever holds it: the operator's last resort for a
wedged holder. It prints (stdout) and logs (stderr, JSON) one audit line naming
the holder it evicted. That holder learns at its next renewal (lost,
taken-over); the next holder's fencing token is still higher.

Exit codes:
  the command's own code    the command ran (128+n if it died of signal n)
  64                        bad usage
  69                        the store is unreachable
  70                        the lock was lost while the command ran (it was stopped)
  75                        the lock is held elsewhere, or --wait-timeout ran out
  126, 127                  the command could not be executed / was not found
  130, 143, 129             SIGINT, SIGTERM, SIGHUP received before the command started

Environment:
  SINGLETON_STORE             default store URL
  SINGLETON_LOG_LEVEL         library log level on stderr (default: error)
`;

type OptionSpec = { type: 'string' | 'boolean'; short?: string };

const RUN_OPTIONS = {
  name: { type: 'string' },
  store: { type: 'string' },
  wait: { type: 'boolean' },
  'wait-timeout': { type: 'string' },
  ttl: { type: 'string' },
  'keep-alive': { type: 'string' },
  'conflict-exit-code': { type: 'string' },
  'kill-after': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const satisfies Record<string, OptionSpec>;

const LIST_OPTIONS = {
  store: { type: 'string' },
  prefix: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Record<string, OptionSpec>;

const RELEASE_OPTIONS = {
  name: { type: 'string' },
  store: { type: 'string' },
  force: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Record<string, OptionSpec>;

const STATUS_OPTIONS = {
  name: { type: 'string' },
  store: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Record<string, OptionSpec>;

/**
 * Parses `singleton-run`'s arguments (without `node` and the script).
 * Options end at `--` or at the first argument that is not an option; the rest
 * is the command and its arguments, passed on untouched.
 *
 * @param env where `SINGLETON_STORE` is read from.
 * @throws UsageError for anything `singleton-run` cannot accept.
 */
export function parseCli(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): CliArgs {
  if (argv[0] === 'status') return parseStatus(argv.slice(1), env);
  if (argv[0] === 'list') return parseList(argv.slice(1), env);
  if (argv[0] === 'release') return parseForceRelease(argv.slice(1), env);
  const { head, command } = splitCommand(argv, RUN_OPTIONS);
  if (wantsHelp(head)) return { kind: 'help' };
  const values = parseOptions(head, RUN_OPTIONS);
  if (values.version) return { kind: 'version' };
  const name = checkNameFlag(values.name);
  if (command.length === 0) throw new UsageError('missing the command to run: put it after the options, e.g. `-- COMMAND ARGS`');
  if (command[0] === '') throw new UsageError('the command to run is an empty string');
  const waitTimeoutMs = numberFlag('wait-timeout', values['wait-timeout'], 0, MAX_TIMER_MS);
  return {
    kind: 'run',
    name,
    store: storeUrl(values.store, env),
    wait: values.wait === true || waitTimeoutMs !== undefined,
    waitTimeoutMs,
    ttlMs: numberFlag('ttl', values.ttl, MIN_CLI_TTL_MS, MAX_TTL_MS),
    ...keepAliveFlag(values['keep-alive']),
    conflictExitCode: numberFlag('conflict-exit-code', values['conflict-exit-code'], 0, 255) ?? DEFAULT_CONFLICT_EXIT_CODE,
    killAfterMs: numberFlag('kill-after', values['kill-after'], 0, MAX_TIMER_MS) ?? DEFAULT_KILL_AFTER_MS,
    command: command[0],
    args: command.slice(1),
  };
}

function parseStatus(argv: readonly string[], env: NodeJS.ProcessEnv): StatusArgs | { kind: 'help' } {
  if (wantsHelp(argv)) return { kind: 'help' };
  const values = parseOptions(argv, STATUS_OPTIONS);
  return { kind: 'status', name: checkNameFlag(values.name), store: storeUrl(values.store, env), json: values.json === true };
}

function parseList(argv: readonly string[], env: NodeJS.ProcessEnv): ListArgs | { kind: 'help' } {
  if (wantsHelp(argv)) return { kind: 'help' };
  const values = parseOptions(argv, LIST_OPTIONS);
  return { kind: 'list', store: storeUrl(values.store, env), prefix: values.prefix ?? '', json: values.json === true };
}

function parseForceRelease(argv: readonly string[], env: NodeJS.ProcessEnv): ForceReleaseArgs | { kind: 'help' } {
  if (wantsHelp(argv)) return { kind: 'help' };
  const values = parseOptions(argv, RELEASE_OPTIONS);
  if (values.force !== true) {
    throw new UsageError('release frees a lock whoever holds it: add --force to confirm (a holder releases its own lock by exiting)');
  }
  return { kind: 'release', name: checkNameFlag(values.name), store: storeUrl(values.store, env) };
}

/**
 * Splits at `--` or at the first argument that is neither an option nor an
 * option's value, so `singleton-run --name x ls -la` runs `ls -la`.
 */
function splitCommand(argv: readonly string[], options: Record<string, OptionSpec>): { head: string[]; command: string[] } {
  const head: string[] = [];
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i];
    if (arg === '--') return { head, command: argv.slice(i + 1) };
    if (!arg.startsWith('-') || arg === '-') break;
    // `--flag value` consumes the next argument too; `--flag=value`, booleans and short flags do not.
    const takesNext = arg.startsWith('--') && !arg.includes('=') && options[arg.slice(2)]?.type === 'string';
    const next = argv[i + 1];
    if (takesNext && next !== undefined && /^-\d/.test(next)) {
      // A negative number is a value (reported as out of range), not an option.
      head.push(`${arg}=${next}`);
      i += 2;
    } else if (takesNext) {
      head.push(...argv.slice(i, i + 2));
      i += 2;
    } else {
      head.push(arg);
      i += 1;
    }
  }
  return { head, command: argv.slice(Math.min(i, argv.length)) };
}

function wantsHelp(head: readonly string[]): boolean {
  return head.some((a) => a === '--help' || a === '-h');
}

function parseOptions<O extends Record<string, OptionSpec>>(args: readonly string[], options: O) {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(usageMessage(err));
  }
}

/** Turns `util.parseArgs`' wordy errors into one short line. */
function usageMessage(err: unknown): string {
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  const option = /'(-[^' ]+)/.exec(message)?.[1];
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option '${option ?? message}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/argument missing|ambiguous/.test(message)) return `option '${option}' needs a value`;
      return `option '${option}' does not take a value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${/'([^']*)'/.exec(message)?.[0] ?? ''}`.trim();
    default:
      return message.split('\n')[0];
  }
}

function checkNameFlag(name: string | undefined): string {
  if (name === undefined) throw new UsageError('missing --name NAME (the lock name)');
  try {
    return checkName(name, '--name');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** A whole number of ms (or an exit code) written in decimal digits, within bounds. */
/**
 * The shortest `--ttl`, ms. The library takes leases down to 20 ms, but singleton-run's own
 * event loop is busy for tens of milliseconds while it starts the command: a shorter lease
 * would be counted lost before its first renewal.
 */
export const MIN_CLI_TTL_MS = 100;

function numberFlag(flag: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `a whole number >= ${min}` : `a whole number from ${min} to ${max}`;
    throw new UsageError(`invalid --${flag} ${JSON.stringify(value)}: expected ${range}`);
  }
  return n;
}

/** `--keep-alive loop|thread`, as a `RunArgs` field (absent when not given). */
function keepAliveFlag(value: string | undefined): { keepAlive?: 'loop' | 'thread' } {
  if (value === undefined) return {};
  if (value !== 'loop' && value !== 'thread') throw new UsageError(`invalid --keep-alive ${JSON.stringify(value)}: expected loop or thread`);
  return { keepAlive: value };
}

/** `--store`, else `$SINGLETON_STORE`, else `undefined` (the file store); checks the scheme. */
function storeUrl(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const url = flag ?? (env.SINGLETON_STORE ? env.SINGLETON_STORE : undefined);
  if (url === undefined) return undefined;
  const source = flag !== undefined ? '--store' : '$SINGLETON_STORE';
  // Only the scheme here: a MongoDB URL may list several hosts, which `new URL` cannot parse.
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url.trim())?.[1].toLowerCase();
  if (scheme === undefined || !(PERSISTER_URL_SCHEMES as readonly string[]).includes(`${scheme}:`)) {
    const why = scheme === undefined ? 'not a URL' : `unsupported scheme '${scheme}:'`;
    throw new UsageError(redactSecret(`invalid ${source} ${JSON.stringify(url)}: ${why} (use ${STORE_EXAMPLES})`, url));
  }
  return url;
}

/**
 * `text` with the password of `url` (`scheme://user:password@…`, with or without
 * the slashes) replaced by `***` wherever it appears, so no message repeats it.
 */
export function redactSecret(text: string, url: string | undefined): string {
  const password = url && /^[a-z][a-z0-9+.-]*:\/*[^/?#@:]*:([^/?#@]+)@/i.exec(url.trim())?.[1];
  return password ? text.split(`:${password}@`).join(':***@') : text;
}

/**
 * The package version, read at run time from the nearest `package.json` named
 * `singleton-process` above this file (works from `lib/cli` and `dist/cjs/cli`).
 */
export function readVersion(): string {
  let dir = __dirname;
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'singleton-process' && pkg.version) return pkg.version;
      } catch {
        // not ours or unreadable: keep looking upwards
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}
