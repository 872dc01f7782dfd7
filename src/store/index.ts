// The cluster store: per server address, a key/value journal every node follows (see types.ts).
// One adapter so far: the shared state directory (directory.ts).
export type { BarrierResult, ClusterStore, JournalChange, JournalFault, JournalRecord } from './types';
export { JournalFormatError } from './codec';
export { DirectoryStore, type DirectoryStoreOptions, type StoreCounters } from './directory';
