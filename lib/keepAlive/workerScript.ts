/**
 * Starts the keep-alive worker from wherever the library runs: the compiled
 * `worker.js` beside this module (dist/cjs, which the ESM entry re-exports, or any
 * other compiled copy), or, when the library runs from its TypeScript sources (the
 * repository's tests under ts-jest or tsx), `worker.ts` through tsx's CommonJS hook.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { KeepAliveWorkerData } from './protocol';

/**
 * A new keep-alive worker. Unref it after attaching its listeners (a `message` listener
 * added later refs it again), so it never keeps the process alive. It does not
 * inherit the process's `execArgv` (`--import` / `--require` hooks such as a TypeScript
 * loader or an APM agent): it runs only this library's code, and starts faster without them.
 */
export function startKeepAliveWorker(workerData: KeepAliveWorkerData): Worker {
  const compiled = join(__dirname, 'worker.js');
  let worker: Worker;
  if (existsSync(compiled)) {
    worker = new Worker(compiled, { workerData, execArgv: [] });
  } else {
    const source = join(__dirname, 'worker.ts');
    let tsx: string;
    try {
      tsx = require.resolve('tsx/cjs/api');
    } catch {
      throw new Error(`singleton-process: the keep-alive worker is missing (${compiled}); rebuild the package (npm run build)`);
    }
    const code = `require(${JSON.stringify(tsx)}).register();\nrequire(${JSON.stringify(source)});\n`;
    worker = new Worker(code, { eval: true, workerData, execArgv: [] });
  }
  return worker;
}
