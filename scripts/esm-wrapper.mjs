// Writes dist/esm/index.mjs: an ES module that re-exports the CommonJS build's
// named exports, so `import { Singleton } from 'singleton-process'` and
// `require('singleton-process')` share one copy of the code (no dual-package hazard).
// Beside it, dist/esm/index.d.mts types that ES module with ESM declarations (an ESM
// entry typed by the CJS `.d.ts` "masquerades as CJS" under moduleResolution node16 /
// nodenext): it re-exports the CJS declarations, so both entries share one set of types,
// as they share one copy of the code.
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const api = require('../dist/cjs/index.js');
const names = Object.keys(api).filter((n) => n !== 'default' && n !== '__esModule').sort();
mkdirSync(new URL('../dist/esm/', import.meta.url), { recursive: true });
const body = [
  "import api from '../cjs/index.js';",
  ...names.map((n) => `export const ${n} = api.${n};`),
  '',
].join('\n');
writeFileSync(new URL('../dist/esm/index.mjs', import.meta.url), body);
writeFileSync(
  new URL('../dist/esm/index.d.mts', import.meta.url),
  "// The types of index.mjs: the CommonJS build's declarations, re-exported as an ES module.\nexport * from '../cjs/index.js';\n",
);
console.log(`dist/esm/index.mjs: ${names.length} named exports (typed by dist/esm/index.d.mts)`);
