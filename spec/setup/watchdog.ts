/**
 * A last resort for the servers the global setup starts: if Jest itself dies without its
 * teardown (SIGKILL, a crash, a worker's `process.exit` taking the run down), a tiny shell
 * process, whose stdin is a pipe only Jest holds, sees that pipe close and stops them.
 * The teardown disarms it first, so it never acts on a pid the system may have reused.
 */
import { spawn } from 'node:child_process';

/** A shell command that undoes what the setup started; run once, only if Jest dies first. */
export function startWatchdog(cleanup: string): { disarm(): void } {
  const dog = spawn('sh', ['-c', `read _; ${cleanup}`], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  dog.unref();
  (dog.stdin as unknown as { unref?: () => void }).unref?.();
  return {
    disarm() {
      if (dog.exitCode === null && dog.signalCode === null) dog.kill('SIGKILL');
    },
  };
}

/** `sh` quoting for one word. */
export function shellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
