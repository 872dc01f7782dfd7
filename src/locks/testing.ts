// The lock table's test seam: invariant checks for tests and benchmarks, kept out of the part's
// surface (index.ts) so that nothing in the daemon depends on them.
export { checkIndexes } from './table';
