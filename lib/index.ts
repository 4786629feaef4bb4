/**
 * singleton-process: exactly one instance of a process, or of a piece of work,
 * across many processes and hosts. Named exports only.
 */
import './polyfills';

export { Singleton, describeHolder } from './Singleton';
export type { AcquireOptions, NodeCallback, RunOptions, RunResult, WaitOptions } from './Singleton';
export { Lease } from './Lease';
export { standby } from './standby';
export type { StandbyOptions } from './standby';
export { DEFAULTS } from './options';
export type { SingletonOptions } from './options';
export { STATES, TRANSITIONS } from './states';
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
export { DIAGNOSTICS_CHANNEL } from './diagnostics';
export type { DiagnosticsEvent, DiagnosticsEventName } from './diagnostics';
export { LockLostError, PersisterError, SingletonError } from './errors';
export type { LeaseEndReason, LostReason, SingletonErrorCode } from './errors';

export type {
  AcquireRequest,
  AcquireResult,
  ListOptions,
  LockInfo,
  OwnerInfo,
  Persister,
  PersisterCapabilities,
  ReleaseRequest,
  RenewRequest,
  RenewResult,
  WatchEnd,
  WatchTurn,
} from './persisters/Persister';
export { MemoryPersister } from './persisters/MemoryPersister';
export { RedisPersister } from './persisters/RedisPersister';
export type { RedisPersisterOptions } from './persisters/RedisPersister';
export { FilePersister } from './persisters/FilePersister';
export type { FilePersisterOptions } from './persisters/FilePersister';
export { MongoPersister } from './persisters/MongoPersister';
export type { MongoPersisterOptions } from './persisters/MongoPersister';
export { PostgresPersister } from './persisters/PostgresPersister';
export type { PostgresPersisterOptions } from './persisters/PostgresPersister';
export type { PgQueryable, PgResult } from './persisters/postgres/connection';
export type { TableName } from './persisters/postgres/identifiers';
export type {
  FileThreadDescriptor,
  ModuleThreadDescriptor,
  MongoThreadDescriptor,
  RedisClusterThreadDescriptor,
  RedisThreadDescriptor,
  ThreadDescriptor,
  ThreadDescriptorBase,
  UrlThreadDescriptor,
} from './keepAlive/descriptor';
export { fromCallbackPersister } from './persisters/fromCallbackPersister';
export type { CallbackPersister, CallbackPersisterOptions } from './persisters/fromCallbackPersister';
export { persisterFromUrl, PERSISTER_URL_SCHEMES } from './persisters/fromUrl';
export { persisters } from './persisters/seedPersisters';
export type { SeedPersisterConstructor } from './persisters/seedPersisters';
export type { OwnedPersister, PersisterFromUrlOptions } from './persisters/fromUrl';

export { Coalescer, COALESCER_DEFAULTS } from './Coalescer';
export type { CoalesceOptions, CoalescerOptions } from './Coalescer';
export { CoalescedError } from './coalescer/outcome';
export type { AnyFunction, Jsonified, JsonItem, SerializedError } from './coalescer/outcome';
export type { OutcomeStore } from './coalescer/OutcomeStore';
export { RedisOutcomeStore } from './coalescer/RedisOutcomeStore';
export type { RedisOutcomeStoreOptions } from './coalescer/RedisOutcomeStore';
export { FileOutcomeStore } from './coalescer/FileOutcomeStore';
export { MemoryOutcomeStore } from './coalescer/MemoryOutcomeStore';
