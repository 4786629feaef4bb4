/**
 * The package as users get it: the built output (made by `npm install`'s prepare
 * step, or `npm run build`) imported by name from ESM and from CommonJS, with no
 * driver loaded at import, and the `singleton-run` bin.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  bin: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional: boolean }>;
  engines: { node: string };
};

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
}

describe('the published package', () => {
  beforeAll(() => {
    if (!existsSync(join(ROOT, 'dist', 'cjs', 'index.js')) || !existsSync(join(ROOT, 'dist', 'esm', 'index.mjs'))) {
      throw new Error('dist/ is missing: run `npm run build` (npm install runs it through `prepare`).');
    }
  });

  it('CommonJS require and ESM import give the same named exports, and load no driver', () => {
    const cjs = JSON.parse(
      node([
        '-e',
        `const m = require('${pkg.name}');
         const drivers = Object.keys(require.cache).filter((k) => /node_modules[\\\\/](ioredis|mongodb|pg|pg-pool)[\\\\/]/.test(k));
         console.log(JSON.stringify({ names: Object.keys(m).sort(), drivers }));`,
      ]),
    ) as { names: string[]; drivers: string[] };
    const esm = JSON.parse(
      node(['--input-type=module', '-e', `import * as m from '${pkg.name}'; console.log(JSON.stringify(Object.keys(m).sort()));`]),
    ) as string[];
    expect(cjs.drivers).toEqual([]);
    expect(esm).toEqual(cjs.names.filter((n) => n !== 'default'));
    for (const name of ['Singleton', 'standby', 'Coalescer', 'RedisPersister', 'MongoPersister', 'PostgresPersister', 'FilePersister', 'MemoryPersister', 'persisterFromUrl', 'fromCallbackPersister', 'SingletonError', 'PersisterError', 'LockLostError']) {
      expect(esm).toContain(name);
    }
    expect(esm).not.toContain('default');
  });

  it('declares the drivers as optional peers and Node ≥ 20', () => {
    expect(pkg.peerDependenciesMeta.ioredis.optional).toBe(true);
    expect(pkg.peerDependenciesMeta.mongodb.optional).toBe(true);
    expect(pkg.peerDependenciesMeta.pg.optional).toBe(true);
    expect(pkg.engines.node).toBe('>=20');
  });

  it('ships singleton-run as an executable script that answers --version', () => {
    const bin = join(ROOT, pkg.bin['singleton-run']);
    expect(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node')).toBe(true);
    expect(node([bin, '--version']).trim()).toBe(pkg.version);
  });
});
