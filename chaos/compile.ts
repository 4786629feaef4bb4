/**
 * Transpiles lib/ and the worker's files to CommonJS under chaos/.build/
 * (git-ignored), keeping the repository's layout, so the workers start as
 * plain `node` processes: eight tsx start-ups at once take tens of seconds on
 * a small machine, and a respawned worker must be back within a lease. No type
 * check here: `npm run typecheck` covers chaos/.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(__dirname, '..');
/** Where the transpiled tree goes. */
export const BUILD_DIR = join(__dirname, '.build');

function transpile(file: string): void {
  const compilerOptions: ts.CompilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
  const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), { compilerOptions, fileName: file });
  const target = join(BUILD_DIR, relative(ROOT, file).replace(/\.ts$/, '.js'));
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, outputText);
}

function walk(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = join(dir, entry.name);
    if (entry.isDirectory()) walk(file);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) transpile(file);
  }
}

/** Builds the worker and the library; resolves the path of the worker's script. */
export function buildWorker(): string {
  rmSync(BUILD_DIR, { recursive: true, force: true });
  walk(join(ROOT, 'lib'));
  transpile(join(__dirname, 'worker.ts'));
  transpile(join(__dirname, 'history.ts'));
  return join(BUILD_DIR, 'chaos', 'worker.js');
}
