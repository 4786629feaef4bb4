import { check } from '../../chaos/checker';
import type { Entry, RunEvent, Step } from '../../chaos/history';

// The chaos checker judges the library; these hand-written histories judge the checker.

let clock = 0;
const at = (pid: number, step: Step, t = (clock += 10)): Entry => ({ t, slot: pid % 10, pid, ...step });

function section(pid: number, op: string, fence: number, writes: Array<'unfenced' | 'fenced'> = ['unfenced', 'fenced']): Entry[] {
  return [
    at(pid, { type: 'invoke', op }),
    at(pid, { type: 'acquired', op, fence: String(fence) }),
    ...writes.flatMap((reg) => [at(pid, { type: 'write', op, reg }), at(pid, { type: 'write-ack', op, reg })]),
    at(pid, { type: 'section-end', op }),
    at(pid, { type: 'done', op }),
  ];
}

const phase = (name: string, start: number, end: number): RunEvent => ({ type: 'phase', name, start, end });

beforeEach(() => {
  clock = 0;
});

describe('chaos checker', () => {
  it('passes sequential sections whose writes all landed', () => {
    const entries = [...section(1, 'a', 100), ...section(2, 'b', 200)];
    const report = check(entries, [phase('none', 0, 1_000)], { unfenced: ['a', 'b'], fenced: ['a', 'b'] });
    expect(report.failures).toEqual([]);
    expect(report.totals).toMatchObject({ acquisitions: 2, overlaps: 0, lostUnfenced: 0, lostFenced: 0 });
  });

  it('counts an overlap, an untold stale holder and the update it overwrote', () => {
    // A acquires and reads; B acquires (A's lease is gone), writes, ends; A wakes and overwrites B's write.
    const entries: Entry[] = [
      at(1, { type: 'acquired', op: 'a', fence: '100' }),
      at(1, { type: 'read', op: 'a', reg: 'unfenced', ids: 0 }),
      ...section(2, 'b', 200, ['unfenced']),
      at(1, { type: 'write', op: 'a', reg: 'unfenced' }),
      at(1, { type: 'write-ack', op: 'a', reg: 'unfenced' }),
      at(1, { type: 'section-end', op: 'a' }),
    ];
    const report = check(entries, [phase('pause', 0, 1_000)], { unfenced: ['a'], fenced: [] });
    expect(report.rows[0]).toMatchObject({ nemesis: 'pause', acquisitions: 2, overlaps: 1, staleHolders: 1, staleTold: 0, lostUnfenced: 1 });
    expect(report.failures).toEqual([]); // unfenced losses are reported, not failed: fencing is what must hold
  });

  it('fails on a lost fenced update and on fenced writes out of fence order', () => {
    const entries = [...section(1, 'a', 100), ...section(2, 'b', 200)];
    const report = check(entries, [phase('none', 0, 1_000)], { unfenced: ['a', 'b'], fenced: ['b', 'a'] });
    expect(report.fencedOrderViolations).toBe(1);
    expect(check(entries, [], { unfenced: ['a', 'b'], fenced: ['a'] }).failures.join('\n')).toMatch(/1 acknowledged fenced write/);
    expect(report.failures.join('\n')).toMatch(/landed after a higher fence/);
  });

  it('fails on a crash of a process holding nothing, and names it', () => {
    const entries = [...section(1, 'a', 100), at(2, { type: 'invoke', op: 'x' })];
    const exit: RunEvent = { type: 'exit', slot: 2, pid: 2, code: 1, signal: null, expected: false, t: 500 };
    const report = check(entries, [exit], { unfenced: ['a'], fenced: ['a'] });
    expect(report.failures).toEqual(['worker 2 (pid 2) crashed (exit code 1) while holding nothing']);
  });

  it('counts a told holder and an unhandled rejection', () => {
    const entries: Entry[] = [
      at(1, { type: 'acquired', op: 'a', fence: '100' }),
      ...section(2, 'b', 200),
      at(1, { type: 'abort', op: 'a', reason: 'expired' }),
      at(1, { type: 'skip-write', op: 'a' }),
      at(1, { type: 'section-end', op: 'a' }),
      at(3, { type: 'unhandled', error: 'TypeError: boom' }),
    ];
    const report = check(entries, [], { unfenced: ['b'], fenced: ['b'] });
    expect(report.totals).toMatchObject({ staleHolders: 1, staleTold: 1, lostUnfenced: 0 });
    expect(report.failures).toEqual(['unhandled rejection or exception in pid 3: TypeError: boom']);
  });
});
