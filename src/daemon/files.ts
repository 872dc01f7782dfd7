// Real-file locking for the daemon: the files part over the native addon, its descriptor budget
// and the export set it serves. Without the addon, exports can only keep locks in memory, and
// an export that asks for its files is refused at start and on reload, saying why.
import { addonStatus } from '../addon';
import { nofileLimit, raiseNofileLimit } from '../addon/files';
import { callerOn, type ExportsTable } from '../exports';
import { ExportError, ExportedFiles, type ExportSpec } from '../files';
import { nativeFileSyscalls } from '../files/native';
import { NlmProc } from '../nlm';
import type { CallContext } from '../rpc';
import type { Config } from './config';

/** Descriptors kept for everything else: sockets (1,024 connections per RPC server), logs, the wait pool's dups. */
const RESERVED_FDS = 4096;

/** The NLM procedures for which Linux's lockd opens the file as the caller (nlm_lookup_file) to lock or test. */
const OPENING = new Set<number>([NlmProc.TEST, NlmProc.LOCK, NlmProc.TEST_MSG, NlmProc.LOCK_MSG, NlmProc.NM_LOCK, NlmProc.SHARE]);

/**
 * Whether the request's caller may lock the file its handle names (`write`: for an exclusive
 * lock): checked on an export locked on its files, as the AUTH_SYS identity after the export's
 * squash options (ExportedFiles.access).
 */
export function mayLock(files: ExportedFiles | undefined, exports: ExportsTable, exportId: string | undefined, fh: Buffer, ctx: CallContext, write: boolean): boolean {
  const entry = exportId === undefined ? undefined : exports.get(exportId);
  if (!files || !entry || entry.fileLocks === false || !OPENING.has(ctx.proc)) return true;
  const caller = callerOn(entry, 'uid' in ctx.cred ? ctx.cred : undefined);
  return caller === undefined || files.access(fh, caller, write) === undefined;
}

export const exportSpecs = (cfg: Config): ExportSpec[] => cfg.exports.map((e) => ({ path: e.path, fileLocks: e.fileLocks }));

/** The descriptor budget: the configured one, else what RLIMIT_NOFILE leaves after the reserve. */
export function fileBudget(cfg: Config, limit: number): number {
  if (cfg.maxOpenFiles !== null) return cfg.maxOpenFiles;
  if (!Number.isFinite(limit)) return 1 << 20;
  return limit > 2 * RESERVED_FDS ? limit - RESERVED_FDS : Math.max(16, Math.floor(limit / 2));
}

/** The budget a reload sets: the new file's maxOpenFiles, or (the key removed) what a fresh start gives. */
export const reloadedBudget = (next: Config): number => fileBudget(next, nofileLimit().soft);

export interface DaemonFiles {
  /** undefined when the addon is missing: every export keeps its locks in memory. */
  files: ExportedFiles | undefined;
  unavailable: string | null;
  maxOpen: number;
}

/** Raises RLIMIT_NOFILE, then opens the exports locked on their files. Throws ExportError naming a bad export. */
export function openDaemonFiles(cfg: Config, exportsTable: () => ExportsTable, log: ExportedFilesLog): DaemonFiles {
  checkHandleFormats(cfg);
  const addon = addonStatus();
  const wanted = exportSpecs(cfg).filter((e) => e.fileLocks);
  if (!addon.available) {
    const unavailable = `locking on the real files needs the native addon: ${addon.reason}`;
    if (wanted.length) throw new ExportError(wanted[0]!.path, `${unavailable} (or set fileLocks: false)`);
    return { files: undefined, unavailable, maxOpen: 0 };
  }
  let limit: number;
  try {
    limit = raiseNofileLimit().soft;
  } catch {
    limit = nofileLimit().soft;
  }
  const maxOpen = fileBudget(cfg, limit);
  const files = new ExportedFiles({ sys: nativeFileSyscalls, kernelHandle: (fh) => exportsTable().kernelHandle(fh), maxOpen, log });
  files.setExports(exportSpecs(cfg));
  return { files, unavailable: null, maxOpen };
}

/**
 * An export locked on its files must be one whose handles lockdrop can turn into files: knfsd
 * handles (found by fsid, uuid or dev) or NFS-Ganesha FSAL_VFS handles (by ganeshaExportId).
 * Handles matched only by fhPrefix are of a format with no decoder.
 */
export function checkHandleFormats(cfg: Config): void {
  for (const e of cfg.exports) {
    if (!e.fileLocks) continue;
    if (e.fsid !== undefined || e.uuid !== undefined || e.dev !== undefined || e.ganeshaExportId !== undefined) continue;
    throw new ExportError(e.path, e.fhPrefix?.length
      ? 'its handles are matched by fhPrefix only, a format lockdrop cannot turn into files: give fsid, uuid, dev or ganeshaExportId, or set fileLocks: false'
      : 'no fsid, uuid, dev or ganeshaExportId: no handle can name its files (or set fileLocks: false)');
  }
}

type ExportedFilesLog = { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };

/**
 * Exports whose locks a reload must drop: removed ones, and ones whose fileLocks changed (their
 * locks were on the files and now would not be, or the other way round).
 */
export function exportsLeaving(prev: Config, next: Config): string[] {
  const now = new Map(next.exports.map((e) => [e.path, e.fileLocks]));
  return prev.exports.filter((e) => now.get(e.path) !== e.fileLocks).map((e) => e.path);
}
