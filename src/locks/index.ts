// The lock table: POSIX byte-range locks, shares, blocked queues, grace, and the per-address,
// per-host and per-export indexes that failover drops by.
export * from './types';
export { LockTable } from './table';
export type { LockTableOptions, LockFilter, LockTableStats } from './table';
export { GraceTable } from './grace';
export { OFFSET_MAX } from './range';
/** Whether a handle's bytes are a file key's (the handle as latin1, as the table keys files). */
export { sameBytes } from './records';
export * from './journal-entry';
export { JournalIndex } from './journal-index';
export type { IndexedEntry, IndexUpdate, JournalRecord } from './journal-index';
