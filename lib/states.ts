/**
 * The lifecycle of a `Singleton`, as one table. `Singleton.setState` is the only
 * place that changes state, and it refuses any move this table does not list.
 *
 * ```
 * idle ─► locking ─► locked ─► releasing ─► released
 *            │  ▲       │                      │
 *            ▼  │       ▼                      │
 *         conflict     lost ───► locking ◄─────┘
 * ```
 * `idle` is also where an attempt that failed on a store error lands; `releasing → locked`
 * is a release the store did not confirm (the lease is kept, so `release()` can be retried).
 */
export type State = 'idle' | 'locking' | 'locked' | 'conflict' | 'releasing' | 'released' | 'lost';

/** Every allowed move, from → to. */
export const TRANSITIONS: Readonly<Record<State, readonly State[]>> = Object.freeze({
  idle: ['locking'],
  locking: ['locked', 'conflict', 'idle'],
  locked: ['releasing', 'lost'],
  conflict: ['locking', 'idle'],
  releasing: ['released', 'locked'],
  released: ['locking'],
  lost: ['locking', 'idle'],
});

/** Whether `from → to` is a move the lifecycle allows. */
export function canTransition(from: State, to: State): boolean {
  return TRANSITIONS[from].includes(to);
}

/** All states, in lifecycle order. */
export const STATES: readonly State[] = Object.freeze(Object.keys(TRANSITIONS) as State[]);
