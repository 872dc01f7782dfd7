// Exports: which export a file handle belongs to (knfsd and NFS-Ganesha handles, configured prefixes), the
// per-export client policy the NLM layer consults, and the export tables of the NFS servers themselves
// (knfsd's etab, Ganesha's EXPORT blocks).
export * from './knfsd';
export * from './ganesha';
export * from './table';
export * from './etab';
export * from './ganesha-conf';
export * from './merge';
