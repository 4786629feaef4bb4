/**
 * What an idle machine adds to a round trip: one `EVAL` that publishes on a channel a
 * second connection listens to, sent back to back and after 2 ms of idleness (as after a
 * 1 ms critical section), on a throwaway redis-server. Prints the median time until the
 * reply and until the pub/sub message arrives.
 *
 *   npx tsx bench/micro/wakeup.ts
 */
import Redis from 'ioredis';
import { startRedisServer } from '../../spec/setup/redisServer';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const server = await startRedisServer();
  const sender = new Redis(server.url);
  const listener = new Redis(server.url);
  try {
    await listener.subscribe('wakeup');
    let heard: (at: number) => void = () => undefined;
    listener.on('message', () => heard(performance.now()));
    for (const idleMs of [0, 2]) {
      const replies: number[] = [];
      const messages: number[] = [];
      for (let i = 0; i < 400; i++) {
        const message = new Promise<number>((resolve) => (heard = resolve));
        const sentAt = performance.now();
        await sender.eval("redis.call('PUBLISH', 'wakeup', '') return 1", 0);
        replies.push(performance.now() - sentAt);
        messages.push((await message) - sentAt);
        if (idleMs > 0) await sleep(idleMs);
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)].toFixed(3);
      console.log(`${idleMs === 0 ? 'back to back' : `after ${idleMs} ms idle`}: reply ${median(replies)} ms, message ${median(messages)} ms (medians)`);
    }
  } finally {
    sender.disconnect();
    listener.disconnect();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
