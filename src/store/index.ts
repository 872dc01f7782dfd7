// The cluster store: per server address, a key/value journal every node follows (see types.ts).
// Two adapters: the shared state directory (directory.ts) and etcd (etcd.ts).
export type { BarrierResult, ClusterStore, JournalChange, JournalFault, JournalRecord, StoreHealth } from './types';
export { JournalFormatError } from './codec';
export { DirectoryStore, type DirectoryStoreOptions, type StoreCounters } from './directory';
export { EtcdStore, HeldError, type EtcdStoreOptions, type EtcdTls } from './etcd';
