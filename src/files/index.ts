// The edge to the exported filesystems: export roots, handle → open file (open_by_handle_at),
// one open file description per (owner, file), OFD locks applied, tested, waited for and
// released, and the descriptor budget. The lock table decides; this part carries it out.
export { ExportedFiles, ExportError, type ExportSpec, type ExportedFilesOptions, type FilesStats } from './exported-files';
export { LOCK_READ, LOCK_UNLOCK, LOCK_WRITE, type FileSyscalls, type FlockPos, type LockType } from './syscalls';
