/**
 * Command-line options for the examples: node's `parseArgs`, with a mistake said in one
 * line and the usage (exit 64, as `singleton-run` does), not a stack trace.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** The option values `parseArgs` gives for `options`. */
export type ExampleValues<O extends NonNullable<ParseArgsConfig['options']>> = ReturnType<typeof parseArgs<{ options: O }>>['values'];

/** `parseArgs({ options })`, or exit 64 with `program: <what is wrong>` and `usage`. */
export function exampleArgs<O extends NonNullable<ParseArgsConfig['options']>>(program: string, usage: string, options: O): ExampleValues<O> {
  try {
    return parseArgs({ options }).values;
  } catch (error) {
    process.stderr.write(`${program}: ${(error as Error).message}\n${usage}\n`);
    process.exit(64);
  }
}

/** `value` of `--flag` as a whole number of milliseconds, or exit 64 naming it. */
export function wholeMs(program: string, flag: string, value: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(ms)) {
    process.stderr.write(`${program}: --${flag} must be a whole number of milliseconds, got ${JSON.stringify(value)}\n`);
    process.exit(64);
  }
  return ms;
}
