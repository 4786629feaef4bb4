import { Deadlines } from '../../lib/persisters/deadlines';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('Deadlines (one timer for every operation timeout of a persister)', () => {
  it('times out exactly the operations not cleared, oldest first, no sooner than the timeout', async () => {
    const deadlines = new Deadlines(60);
    const fired: Array<{ id: string; afterMs: number }> = [];
    const start = performance.now();
    const track = (id: string) => deadlines.start(() => fired.push({ id, afterMs: performance.now() - start }));
    const a = track('a');
    track('b');
    await sleep(20);
    track('c');
    const d = track('d');
    deadlines.clear(a);
    deadlines.clear(d);
    deadlines.clear(d); // twice: harmless
    expect(deadlines.pending).toBe(2);
    await sleep(200);
    expect(fired.map((f) => f.id)).toEqual(['b', 'c']);
    expect(fired[0].afterMs).toBeGreaterThanOrEqual(59);
    expect(fired[1].afterMs).toBeGreaterThanOrEqual(20 + 59);
    expect(deadlines.pending).toBe(0);
  });

  it('leaves no timer once nothing is pending, and keeps the process free to exit (unref)', async () => {
    // Its own timer, not the process's count of timers (other suites' timers come and go in this worker).
    const deadlines = new Deadlines(30);
    expect(deadlines.timerState).toEqual({ armed: false, keepsProcessAlive: false });
    const op = deadlines.start(() => {
      throw new Error('must not time out');
    });
    expect(deadlines.timerState).toEqual({ armed: true, keepsProcessAlive: false });
    deadlines.clear(op);
    await sleep(100);
    expect(deadlines.timerState).toEqual({ armed: false, keepsProcessAlive: false });
  });
});
