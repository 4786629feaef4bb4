#!/usr/bin/env node
// Measures how long a command outlives `singleton-run` killed with SIGKILL (file store, 10 runs).
// Usage: npm run build && node scripts/measure-cli-sigkill.js [dist/cjs/cli/main.js] [--ignore-sigterm]
// Prints min / median / max ms from the SIGKILL to the command's death (gone or a zombie).
'use strict';
const { spawn } = require('node:child_process');
const { existsSync, mkdtempSync, readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const main = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? join(__dirname, '..', 'dist', 'cjs', 'cli', 'main.js');
const ignoreTerm = process.argv.includes('--ignore-sigterm');

function gone(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

async function once() {
  const dir = mkdtempSync(join(tmpdir(), 'measure-sigkill-'));
  const pidFile = join(dir, 'pid');
  const script = `${ignoreTerm ? "trap '' TERM; " : ''}echo $$ > ${pidFile}; while :; do sleep 0.05; done`;
  const cli = spawn(process.execPath, [main, '--name', 'measure', '--store', `file://${dir}`, '--', 'sh', '-c', script], { stdio: 'ignore' });
  while (!existsSync(pidFile) || !readFileSync(pidFile, 'utf8').trim()) await tick();
  const pid = Number(readFileSync(pidFile, 'utf8'));
  const start = process.hrtime.bigint();
  cli.kill('SIGKILL');
  while (!gone(pid)) await tick();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  rmSync(dir, { recursive: true, force: true });
  return ms;
}

(async () => {
  const times = [];
  for (let i = 0; i < 10; i += 1) times.push(await once());
  times.sort((a, b) => a - b);
  const f = (ms) => `${ms.toFixed(1)} ms`;
  console.log(`${ignoreTerm ? 'command ignores SIGTERM' : 'command'}: min ${f(times[0])}, median ${f(times[5])}, max ${f(times[9])}`);
})();
