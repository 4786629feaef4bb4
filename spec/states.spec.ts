import fc from 'fast-check';
import type { SingletonEventName } from '../lib/events';
import { Singleton } from '../lib/Singleton';
import { canTransition, STATES, type State, TRANSITIONS } from '../lib/states';
import { ControllablePersister, recordingLogger } from './helpers/ControllablePersister';

const STATE_EVENTS: SingletonEventName[] = ['locking', 'locked', 'conflict', 'releasing', 'released', 'lost'];

describe('the transition table', () => {
  it('names every state, and every target is a state', () => {
    expect([...STATES].sort()).toEqual(['conflict', 'idle', 'locked', 'locking', 'lost', 'released', 'releasing']);
    for (const targets of Object.values(TRANSITIONS)) for (const t of targets) expect(STATES).toContain(t);
  });

  it('keeps the lifecycle of DESIGN.md', () => {
    expect(canTransition('idle', 'locking')).toBe(true);
    expect(canTransition('locking', 'locked')).toBe(true);
    expect(canTransition('locking', 'conflict')).toBe(true);
    expect(canTransition('conflict', 'locking')).toBe(true);
    expect(canTransition('locked', 'releasing')).toBe(true);
    expect(canTransition('releasing', 'released')).toBe(true);
    expect(canTransition('locked', 'lost')).toBe(true);
    expect(canTransition('released', 'locking')).toBe(true);
    expect(canTransition('lost', 'locking')).toBe(true);
    expect(canTransition('idle', 'locked')).toBe(false);
    expect(canTransition('conflict', 'locked')).toBe(false);
    expect(canTransition('released', 'locked')).toBe(false);
    expect(canTransition('lost', 'locked')).toBe(false);
  });
});

type Command =
  | { kind: 'lock'; who: number }
  | { kind: 'release'; who: number }
  | { kind: 'stall'; ms: number } // the store stops answering renewals: the holder must give up in time
  | { kind: 'advance'; ms: number };

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ kind: fc.constant('lock' as const), who: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ kind: fc.constant('release' as const), who: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ kind: fc.constant('stall' as const), ms: fc.integer({ min: 50, max: 700 }) }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 400 }) }),
);

describe('random lock / release / stall / time sequences (fast-check)', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('never two holders, only table moves, fencing tokens strictly increase, nothing left behind', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 25 }), async (commands) => {
        const p = new ControllablePersister();
        const ttlMs = 300;
        const instances = [0, 1, 2].map(
          (i) => new Singleton('prop', p, { owner: `I${i}`, ttlMs, logger: recordingLogger().logger, onLost: 'emit', handleSignals: false, handleErrors: false }),
        );
        const observed: State[] = instances.map(() => 'idle');
        const fences: number[] = [];
        const violations: string[] = [];
        instances.forEach((s, i) => {
          for (const event of STATE_EVENTS) {
            s.on(event, () => {
              const to = event as State;
              // `idle` is silent: an errored attempt returns there and the next event is `locking`.
              const from = observed[i] === 'locking' && to === 'locking' ? 'idle' : observed[i];
              if (!canTransition(from, to) && !(from === 'idle' && to === 'locking')) violations.push(`${i}: ${from} → ${to}`);
              observed[i] = to;
            });
          }
          s.on('locked', (e) => fences.push(Number(e.fencingToken)));
          s.on('error', () => undefined);
        });
        const holdersNow = () => instances.filter((s) => s.state === 'locked').length;
        for (const c of commands) {
          if (c.kind === 'lock') {
            const got = await instances[c.who].lock().catch(() => false);
            if (got) expect(instances[c.who].state).toBe('locked');
          } else if (c.kind === 'release') {
            await instances[c.who].release().catch(() => undefined);
            expect(instances[c.who].state).not.toBe('locked');
          } else if (c.kind === 'stall') {
            p.hangRenewals = true;
            p.down = true;
            await jest.advanceTimersByTimeAsync(c.ms);
            p.hangRenewals = false;
            p.down = false;
          } else {
            await jest.advanceTimersByTimeAsync(c.ms);
          }
          expect(holdersNow()).toBeLessThanOrEqual(1);
          // The one who believes it holds the lock really holds it in the store.
          const holder = instances.find((s) => s.state === 'locked');
          if (holder) expect((await p.inner.inspect('prop'))?.fencingToken).toBe(holder.fencingToken);
        }
        for (const s of instances) await s.release().catch(() => undefined);
        expect(violations).toEqual([]);
        for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
        // The keeper drops its (unref'd) timer at its first tick with nothing held: within a renew interval.
        await jest.advanceTimersByTimeAsync(ttlMs);
        expect(jest.getTimerCount()).toBe(0);
      }),
      { numRuns: 150 },
    );
  });
});
