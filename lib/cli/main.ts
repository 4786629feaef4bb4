#!/usr/bin/env node
/**
 * The `singleton-run` executable: parses the command line, runs the command
 * (or `status`, `list`, `release --force`), and exits with the code they resolve (see `exitCodes.ts`).
 */
import { HELP, parseCli, PROGRAM, readVersion, UsageError } from './args';
import { ExitCode } from './exitCodes';
import { forceRelease } from './forceRelease';
import { listLocks } from './list';
import { oneLine, runCommand, say } from './runCommand';
import { status } from './status';

/**
 * Everything singleton-run opened is closed by the time the exit code is known,
 * so the process normally ends on its own at once. A store driver may still
 * hold a timer for a moment (a reconnection backoff, say); a cron job should
 * not wait for it, so exit this long after the end at the latest.
 */
const FORCED_EXIT_AFTER_MS = 200;

async function cli(argv: readonly string[]): Promise<number> {
  try {
    const parsed = parseCli(argv);
    switch (parsed.kind) {
      case 'help':
        process.stdout.write(HELP);
        return ExitCode.OK;
      case 'version':
        process.stdout.write(`${readVersion()}\n`);
        return ExitCode.OK;
      case 'status':
        return await status(parsed);
      case 'list':
        return await listLocks(parsed);
      case 'release':
        return await forceRelease(parsed);
      case 'run':
        return await runCommand(parsed);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      say(err.message);
      process.stderr.write(`Try '${PROGRAM} --help'.\n`);
      return ExitCode.USAGE;
    }
    say(`internal error: ${oneLine(err)}`);
    return ExitCode.SOFTWARE;
  }
}

// A reader that went away (`singleton-run status | head -0`) is not an error worth a stack trace.
process.stdout.on('error', () => undefined);

void cli(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  setTimeout(() => {
    // SINGLETON_RUN_DEBUG_HANDLES=1 names what was still open (the tests use it to find leaks).
    if (process.env.SINGLETON_RUN_DEBUG_HANDLES) say(`open handles at exit: ${process.getActiveResourcesInfo().join(', ')}`);
    process.exit(code);
  }, FORCED_EXIT_AFTER_MS).unref();
});
