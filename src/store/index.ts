// The cluster store: per server address, a key/value journal every node follows (see types.ts).
export type { BarrierResult, ClusterStore, JournalChange, JournalFault, JournalRecord } from './types';
export { JournalFormatError } from './codec';
