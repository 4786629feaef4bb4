export { MemoryPersister } from './persisters/MemoryPersister';
export type {
  AcquireRequest,
  AcquireResult,
  LockInfo,
  OwnerInfo,
  Persister,
  PersisterCapabilities,
  ReleaseRequest,
  RenewRequest,
  RenewResult,
} from './persisters/Persister';
export { LockLostError, PersisterError, SingletonError } from './errors';
export type { LostReason, SingletonErrorCode } from './errors';
export { Singleton, describeHolder } from './Singleton';
export type { RunOptions, RunResult, WaitOptions } from './Singleton';
export { standby } from './standby';
export type { StandbyOptions } from './standby';
export type { SingletonOptions } from './options';
export type { State } from './states';
export type {
  ConflictEvent,
  EventBase,
  ExpiredEvent,
  LockedEvent,
  LostEvent,
  RenewedEvent,
  SingletonEventName,
  SingletonEvents,
} from './events';
export type { Logger } from './logger';
