// The exports table: which export a file handle belongs to, and who may lock through it.
// A handle maps to an export by an explicit byte prefix (any server's handle format) or, for
// Linux knfsd handles, by the fsid inside it: fsid= number, filesystem uuid, or device numbers.
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

export interface ExportEntry {
  /** The exported path; also the export's id in the lock table and the admin commands. */
  path: string;
  /** exports(5) fsid=N: matched against FSID_NUM handles. */
  fsid?: number;
  /** The filesystem (or exports(5) uuid=) uuid: matched against FSID_UUID4_INUM/8/16/16_INUM handles. */
  uuid?: string;
  /** "major:minor" of the exported filesystem: matched against FSID_DEV/MAJOR_MINOR/ENCODE_DEV handles. */
  dev?: string;
  /** Inode of the export root, to tell apart two exports of one device (dev/uuid4 handles carry it). */
  rootIno?: number;
  /** Hex prefixes of handles of other formats that belong to this export. */
  fhPrefix?: string[];
  /** Client networks allowed (addresses or CIDRs); empty: every client. */
  clients: string[];
  /** Require a privileged source port (< 1024), as exports(5) "secure". */
  secure: boolean;
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

interface Compiled {
  entry: ExportEntry;
  allows: ((address: string) => boolean) | undefined;
}

export class ExportsTable {
  private readonly byPath = new Map<string, Compiled>();
  /** knfsd fsid keys ("num:1", "uuid16:…", "dev:8:1", "dev:8:1:2") → export path. */
  private readonly byKey = new Map<string, string>();
  private readonly prefixes: { prefix: Buffer; path: string }[] = [];

  constructor(entries: readonly ExportEntry[], readonly options: ExportsOptions = { byteOrder: 'little', unknownHandles: 'allow' }) {
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
        key(`uuid16:${u.toString('hex')}`);
        key(`uuid8:${uuid8}`);
        key(entry.rootIno === undefined ? `uuid4:${uuid4}` : `uuid4:${uuid4}:${entry.rootIno}`);
      }
      if (entry.dev !== undefined) key(entry.rootIno === undefined ? `dev:${entry.dev}` : `dev:${entry.dev}:${entry.rootIno}`);
      for (const p of entry.fhPrefix ?? []) this.prefixes.push({ prefix: Buffer.from(p, 'hex'), path: entry.path });
    }
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
        case FSID_UUID16_INUM:
          return k.get(`uuid16:${fsid.uuid}`);
      }
    } catch (err) {
      if (err instanceof FileHandleError) return undefined;
      throw err;
    }
  }

  /**
   * The export policy: may this client lock this handle? Checks the export's client networks and,
   * for secure exports, a privileged source port. With no exports configured everything is allowed.
   */
  check(fh: Buffer, client: { address: string; port: number }): ExportDecision {
    if (this.byPath.size === 0) return { allowed: true, exportId: undefined };
    const exportId = this.exportOf(fh);
    const compiled = exportId === undefined ? undefined : this.byPath.get(exportId);
    if (!compiled) return this.options.unknownHandles === 'allow' ? { allowed: true, exportId } : { allowed: false, exportId, reason: 'unknown-handle' };
    if (compiled.allows && !compiled.allows(client.address)) return { allowed: false, exportId, reason: 'network' };
    if (compiled.entry.secure && client.port >= 1024) return { allowed: false, exportId, reason: 'insecure-port' };
    return { allowed: true, exportId };
  }
}
