// The exports table: which export a file handle belongs to, and who may lock through it.
// A handle maps to an export by an explicit byte prefix (any server's handle format), for Linux
// knfsd handles by the fsid inside it (fsid= number, filesystem uuid, or device numbers), for
// NFS-Ganesha handles by the Export_Id inside it. It also names the kernel file handle inside a
// knfsd or Ganesha FSAL_VFS handle, for open_by_handle_at(); it makes no system call itself.
import { networkSet } from '../net';
import {
  FSID_DEV,
  FSID_ENCODE_DEV,
  FSID_MAJOR_MINOR,
  FSID_NUM,
  FSID_UUID16,
  FSID_UUID16_INUM,
  FSID_UUID4_INUM,
  FSID_UUID8,
  FileHandleError,
  foldUuid,
  parseKnfsdHandle,
  uuidBytes,
  type ByteOrder,
} from './knfsd';
import { GANESHA_FH_HEADER, isGaneshaHandle, parseGaneshaHandle, type GaneshaFsid } from './ganesha';

/** MAX_HANDLE_SZ: the longest f_handle open_by_handle_at() takes. */
const MAX_HANDLE_SZ = 128;
/** knfsd's fh_fileid_type for the export root itself (the handle carries no file id). */
export const FILEID_ROOT = 0;

export interface ExportEntry {
  /** The exported path; also the export's id in the lock table and the admin commands. */
  path: string;
  /** exports(5) fsid=N: matched against FSID_NUM handles. */
  fsid?: number;
  /** The filesystem (or exports(5) uuid=) uuid: matched against FSID_UUID4_INUM/8/16/16_INUM handles. */
  uuid?: string;
  /** "major:minor" of the exported filesystem: matched against FSID_DEV/MAJOR_MINOR/ENCODE_DEV handles. */
  dev?: string;
  /** Inode of the export root, to tell apart two exports of one device (dev, uuid4 and uuid16+inode handles carry it). */
  rootIno?: number;
  /**
   * The path is its filesystem's root: knfsd names it by uuid handles without an inode
   * (uuid16, uuid8); false: by those with one only. Unset with rootIno: both, the ones without
   * an inode only while no other export of the uuid claims them.
   */
  fsRoot?: boolean;
  /** NFS-Ganesha's Export_Id of this export: matched against Ganesha handles (first byte 0x43). */
  ganeshaExportId?: number;
  /** Hex prefixes of handles of other formats that belong to this export. */
  fhPrefix?: string[];
  /** Client networks allowed (addresses or CIDRs); empty: every client. */
  clients: string[];
  /** Require a privileged source port (< 1024), as exports(5) "secure". */
  secure: boolean;
  /**
   * Lock on the real files (default): every NLM lock is an OFD lock on the file the handle
   * names. false keeps locks in lockdrop's memory only: safe only when nothing else locks them.
   */
  fileLocks?: boolean;
  /** exports(5) root_squash (default true): a client's uid 0 acts as anonuid on the files. */
  rootSquash?: boolean;
  /** exports(5) all_squash: every client acts as anonuid / anongid. */
  allSquash?: boolean;
  /** exports(5) anonuid / anongid (default 65534). */
  anonuid?: number;
  anongid?: number;
  /** exports(5) insecure_locks / no_auth_nlm: locks need no access to the file. */
  noAuthNlm?: boolean;
}

/** Whom a lock request acts as on an export's files: what its access is checked as. */
export interface Caller {
  uid: number;
  gid: number;
  gids: readonly number[];
}

/**
 * Whom a request with this AUTH_SYS identity (undefined: another flavour, the anonymous user as
 * knfsd maps AUTH_NULL) acts as on the export's files, squash options applied; undefined when
 * the export checks no access for locks (noAuthNlm).
 */
export function callerOn(entry: ExportEntry, id: Caller | undefined): Caller | undefined {
  if (entry.noAuthNlm) return undefined;
  const anon = { uid: entry.anonuid ?? 65534, gid: entry.anongid ?? 65534, gids: [] };
  if (!id || entry.allSquash) return anon;
  if (entry.rootSquash === false) return id;
  // As knfsd's nfsd_setuser: uid 0, gid 0 and group 0 each become the anonymous one.
  const squash = (n: number, to: number) => (n === 0 ? to : n);
  return { uid: squash(id.uid, anon.uid), gid: squash(id.gid, anon.gid), gids: id.gids.map((g) => squash(g, anon.gid)) };
}

export interface ExportsOptions {
  /** Byte order of the host-order words in knfsd handles (the NFS server's CPU). */
  byteOrder: ByteOrder;
  /** What to do with a handle that maps to no export while exports are configured. */
  unknownHandles: 'allow' | 'deny';
}

export type ExportDecision =
  | { allowed: true; exportId: string | undefined }
  | { allowed: false; exportId: string | undefined; reason: 'network' | 'insecure-port' | 'unknown-handle' };

/**
 * The kernel file handle inside an NFS handle, for open_by_handle_at() on the export's
 * filesystem; `root` for a knfsd FILEID_ROOT handle (the export root itself, no file id); or why
 * there is none. Ganesha handles also carry their fsid: the filesystem Ganesha made the handle
 * on, for the caller to compare with the export root's.
 */
export type KernelHandleResult =
  | { exportId: string; type: number; handle: Buffer; fsid?: GaneshaFsid }
  | { exportId: string; root: true }
  | { exportId: string | undefined; error: string };

interface Compiled {
  entry: ExportEntry;
  allows: ((address: string) => boolean) | undefined;
}

export class ExportsTable {
  private readonly byPath = new Map<string, Compiled>();
  /** knfsd fsid keys ("num:1", "uuid16:…", "dev:8:1", "dev:8:1:2") → export path. */
  private readonly byKey = new Map<string, string>();
  private readonly prefixes: { prefix: Buffer; path: string }[] = [];
  /** Some export locks real files: a handle of none of them names no file (knfsd: nfserr_stale). */
  private readonly locksFiles: boolean;

  constructor(entries: readonly ExportEntry[], readonly options: ExportsOptions = { byteOrder: 'little', unknownHandles: 'allow' }) {
    /** Keys an export may have if no other claims them (undefined: claimed twice). */
    const soft = new Map<string, string | undefined>();
    this.locksFiles = entries.some((e) => e.fileLocks !== false);
    for (const entry of entries) {
      if (this.byPath.has(entry.path)) throw new Error(`export ${entry.path} listed twice`);
      this.byPath.set(entry.path, { entry, allows: entry.clients.length ? networkSet(entry.clients) : undefined });
      const key = (k: string) => {
        const other = this.byKey.get(k);
        if (other !== undefined) throw new Error(`exports ${other} and ${entry.path} share the handle key ${k}`);
        this.byKey.set(k, entry.path);
      };
      if (entry.fsid !== undefined) key(`num:${entry.fsid}`);
      if (entry.uuid !== undefined) {
        const u = uuidBytes(entry.uuid);
        const { uuid8, uuid4 } = foldUuid(u);
        const hex = u.toString('hex');
        const ino = entry.rootIno;
        if (ino === undefined) key(`uuid4:${uuid4}`);
        else {
          key(`uuid16:${hex}:${ino}`);
          key(`uuid4:${uuid4}:${ino}`);
        }
        if (ino === undefined || entry.fsRoot === true) {
          key(`uuid16:${hex}`);
          key(`uuid8:${uuid8}`);
        } else if (entry.fsRoot === undefined) {
          for (const k of [`uuid16:${hex}`, `uuid8:${uuid8}`]) soft.set(k, soft.has(k) ? undefined : entry.path);
        }
      }
      if (entry.ganeshaExportId !== undefined) key(`ganesha:${entry.ganeshaExportId}`);
      if (entry.dev !== undefined) key(entry.rootIno === undefined ? `dev:${entry.dev}` : `dev:${entry.dev}:${entry.rootIno}`);
      for (const p of entry.fhPrefix ?? []) this.prefixes.push({ prefix: Buffer.from(p, 'hex'), path: entry.path });
    }
    for (const [k, path] of soft) if (path !== undefined && !this.byKey.has(k)) this.byKey.set(k, path);
  }

  get size(): number {
    return this.byPath.size;
  }

  list(): ExportEntry[] {
    return [...this.byPath.values()].map((c) => c.entry);
  }

  get(path: string): ExportEntry | undefined {
    return this.byPath.get(path)?.entry;
  }

  /** The export configured with fsid=N (for `drop --fsid N`). */
  byFsid(fsid: number): string | undefined {
    return this.byKey.get(`num:${fsid}`);
  }

  /** The export a file handle belongs to, or undefined. Never throws. */
  exportOf(fh: Buffer): string | undefined {
    for (const { prefix, path } of this.prefixes) if (fh.length >= prefix.length && fh.subarray(0, prefix.length).equals(prefix)) return path;
    if (this.byKey.size === 0) return undefined;
    if (isGaneshaHandle(fh)) return fh.length >= GANESHA_FH_HEADER ? this.byKey.get(`ganesha:${fh.readUInt16BE(2)}`) : undefined;
    try {
      const { fsid } = parseKnfsdHandle(fh, this.options.byteOrder);
      const k = this.byKey;
      switch (fsid.type) {
        case FSID_NUM:
          return k.get(`num:${fsid.fsid}`);
        case FSID_DEV:
        case FSID_MAJOR_MINOR:
        case FSID_ENCODE_DEV:
          return k.get(`dev:${fsid.major}:${fsid.minor}:${fsid.ino}`) ?? k.get(`dev:${fsid.major}:${fsid.minor}`);
        case FSID_UUID4_INUM:
          return k.get(`uuid4:${fsid.uuid4}:${fsid.ino}`) ?? k.get(`uuid4:${fsid.uuid4}`);
        case FSID_UUID8:
          return k.get(`uuid8:${fsid.uuid8}`);
        case FSID_UUID16:
          return k.get(`uuid16:${fsid.uuid}`);
        case FSID_UUID16_INUM:
          return k.get(`uuid16:${fsid.uuid}:${fsid.ino}`) ?? k.get(`uuid16:${fsid.uuid}`);
      }
    } catch (err) {
      if (err instanceof FileHandleError) return undefined;
      throw err;
    }
  }

  /**
   * The kernel file handle a knfsd or Ganesha FSAL_VFS handle embeds, with the export it belongs
   * to. Never throws: a handle of no export, of a format without a decoder, or malformed, gives
   * `error` (the NLM answer is stale_fh).
   */
  kernelHandle(fh: Buffer): KernelHandleResult {
    const exportId = this.exportOf(fh);
    if (exportId === undefined) return { exportId, error: 'the handle belongs to no configured export' };
    try {
      if (isGaneshaHandle(fh)) {
        const g = parseGaneshaHandle(fh);
        if (g.dummy) return { exportId, error: 'a Ganesha dummy handle: it names a filesystem, not a file' };
        return { exportId, type: g.kernel.type, handle: g.kernel.handle, fsid: g.fsid };
      }
      if (fh[0] === 1) {
        const k = parseKnfsdHandle(fh, this.options.byteOrder);
        // As nfsd_set_fh_dentry(): FILEID_ROOT is the export's root, whatever follows.
        if (k.fileidType === FILEID_ROOT) return { exportId, root: true };
        if (k.fileid.length === 0 || k.fileid.length > MAX_HANDLE_SZ) return { exportId, error: `knfsd file id of ${k.fileid.length} bytes: a kernel handle has 1 to ${MAX_HANDLE_SZ}` };
        return { exportId, type: k.fileidType, handle: k.fileid };
      }
    } catch (err) {
      if (err instanceof FileHandleError) return { exportId, error: err.message };
      throw err;
    }
    return { exportId, error: `handle format 0x${fh.length ? fh[0]!.toString(16) : '--'} has no decoder (only knfsd and NFS-Ganesha FSAL_VFS handles name kernel handles)` };
  }

  /**
   * The export policy: may this client lock this handle? Checks the export's client networks and,
   * for secure exports, a privileged source port. With no exports configured everything is allowed.
   * A handle of no export is refused when some export locks real files (a lock in memory only
   * would protect nothing), else as unknownHandles says.
   */
  check(fh: Buffer, client: { address: string; port: number }): ExportDecision {
    if (this.byPath.size === 0) return { allowed: true, exportId: undefined };
    const exportId = this.exportOf(fh);
    const compiled = exportId === undefined ? undefined : this.byPath.get(exportId);
    if (!compiled) return this.options.unknownHandles === 'allow' && !this.locksFiles ? { allowed: true, exportId } : { allowed: false, exportId, reason: 'unknown-handle' };
    if (compiled.allows && !compiled.allows(client.address)) return { allowed: false, exportId, reason: 'network' };
    if (compiled.entry.secure && client.port >= 1024) return { allowed: false, exportId, reason: 'insecure-port' };
    return { allowed: true, exportId };
  }
}
