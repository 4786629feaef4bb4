/**
 * The types as users' compilers resolve them: the package is packed as `npm publish`
 * would pack it (from the built dist/), and are-the-types-wrong checks that every
 * module resolution finds declarations of the right module kind — node10, node16
 * from CommonJS and from ESM, and bundler — with no problem at all (an ESM entry
 * typed by CommonJS declarations is "Masquerading as CJS").
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const ROOT = join(__dirname, '..');

interface AttwResolution {
  resolutionKind: string;
  resolution?: { fileName: string; isTypeScript: boolean };
}
interface AttwReport {
  analysis: {
    problems: unknown[];
    entrypoints: Record<string, { resolutions: Record<string, AttwResolution> }>;
  };
  problems?: unknown;
}

/** The attw executable of the installed @arethetypeswrong/cli. */
function attwBin(): string {
  const manifest = require.resolve('@arethetypeswrong/cli/package.json');
  const { bin } = JSON.parse(readFileSync(manifest, 'utf8')) as { bin: string | Record<string, string> };
  return join(dirname(manifest), typeof bin === 'string' ? bin : bin.attw);
}

describe('the published types (are-the-types-wrong)', () => {
  let report: AttwReport;
  let work: string;

  beforeAll(() => {
    if (!existsSync(join(ROOT, 'dist', 'esm', 'index.d.mts'))) {
      throw new Error('dist/ is missing or stale: run `npm run build` (npm install runs it through `prepare`).');
    }
    work = mkdtempSync(join(tmpdir(), 'singleton-attw-'));
    // Packed from the built dist/ as it is (no `prepare` rebuild), exactly the files `npm publish` would ship.
    execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', work], { cwd: ROOT, timeout: 60_000 });
    const tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz')) as string);
    // attw exits 1 when it finds a problem; the JSON report is printed either way.
    let out: string;
    try {
      out = execFileSync(process.execPath, [attwBin(), tarball, '--format', 'json'], { encoding: 'utf8', timeout: 60_000 });
    } catch (err) {
      out = String((err as { stdout?: unknown }).stdout ?? '');
    }
    report = JSON.parse(out) as AttwReport;
  }, 120_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('reports no problem', () => {
    expect(report.analysis.problems).toEqual([]);
  });

  it('types require() with the CommonJS declarations and import with the ESM ones, in every resolution mode', () => {
    const resolved = Object.fromEntries(
      Object.entries(report.analysis.entrypoints['.'].resolutions).map(([kind, r]) => [kind, r.resolution?.fileName]),
    );
    expect(resolved).toEqual({
      node10: '/node_modules/singleton-process/dist/cjs/index.d.ts',
      'node16-cjs': '/node_modules/singleton-process/dist/cjs/index.d.ts',
      'node16-esm': '/node_modules/singleton-process/dist/esm/index.d.mts',
      bundler: '/node_modules/singleton-process/dist/esm/index.d.mts',
    });
  });
});
