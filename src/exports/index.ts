// Exports: which export a file handle belongs to (knfsd handles, configured prefixes) and the
// per-export client policy the NLM layer consults.
export * from './knfsd';
export * from './table';
