// Exports: which export a file handle belongs to (knfsd and NFS-Ganesha handles, configured prefixes) and the
// per-export client policy the NLM layer consults.
export * from './knfsd';
export * from './ganesha';
export * from './table';
