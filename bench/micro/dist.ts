/**
 * The built library (`dist/`), as users run it, for the micro-benchmarks: run
 * `npm run build` first.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type * as Library from '../../lib/index';

export function distLibrary(): typeof Library {
  const entry = join(__dirname, '..', '..', 'dist', 'cjs', 'index.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` first`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(entry) as typeof Library;
}
