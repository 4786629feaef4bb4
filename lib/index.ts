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
