/**
 * How long `setTimeout(1)` lasts when the event loop is woken in the middle of it. libuv keeps
 * its loop clock in whole milliseconds: a timer set at 12.3 ms is due at 13 ms by that clock;
 * a wake-up at 12.6 ms reads 12 ms and waits a whole millisecond again (the timer lasts about
 * 1.4 ms), one at 13.1 ms finds it due (it lasts 0.8 ms). A worker thread posts a message back
 * 0.3, 0.6 or 0.9 ms after the timer is set (or never); prints the timer's p10 / p50 / p90.
 * This is what scenario 2's `setTimeout(1)` section measures besides the lock.
 *
 *   npx tsx bench/micro/timerWake.ts
 */
import { Worker } from 'node:worker_threads';

const WORKER = `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (afterMs) => {
  const until = performance.timeOrigin + performance.now() + afterMs;
  while (performance.timeOrigin + performance.now() < until);
  parentPort.postMessage(0);
});`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const waker = new Worker(WORKER, { eval: true });
  waker.on('message', () => undefined);
  try {
    for (const wakeAfterMs of [undefined, 0.3, 0.6, 0.9]) {
      const lasted: number[] = [];
      for (let i = 0; i < 300; i++) {
        await sleep(3); // idle first, as a waiter's process is
        const start = performance.now();
        if (wakeAfterMs !== undefined) waker.postMessage(wakeAfterMs);
        await sleep(1);
        lasted.push(performance.now() - start);
      }
      lasted.sort((a, b) => a - b);
      const at = (q: number) => lasted[Math.floor(q * lasted.length)].toFixed(2);
      console.log(`woken ${wakeAfterMs === undefined ? 'never' : `after ${wakeAfterMs} ms`}: setTimeout(1) lasted p10 ${at(0.1)} / p50 ${at(0.5)} / p90 ${at(0.9)} ms`);
    }
  } finally {
    await waker.terminate();
  }
}

void main();
