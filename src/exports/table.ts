// The exports table: which export a file handle belongs to, and who may lock through it.
// A handle maps to an export by an explicit byte prefix (any server's handle format) or, for
// Linux knfsd handles, by the fsid inside it: fsid= number, filesystem uuid, or device numbers.
import { BlockList, isIP } from 'node:net';
import { normaliseAddress } from '../rpc/address';
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
  /**
   * Lock on the real files (default): every NLM lock is an OFD lock on the file the handle
   * names. false keeps locks in lockdrop's memory only: safe only when nothing else locks them.
   */
  fileLocks?: boolean;
}

export interface ExportsOptions {
  /** Byte order of the host-order words in knfsd handles (the NFS server's CPU). */
  byteOrder: ByteOrder;
  /** What to do with a handle that maps to no export while exports are configured. */
  unknownHandles: 'allow' | 'deny';
}

/** A kernel file_handle to open within an export's filesystem; `root`: the export root itself. */
export interface KernelHandle {
  exportId: string;
  root: boolean;
  type: number;
  handle: Buffer;
}

/** fh_fileid_type 0: the handle names the export's root (knfsd's FILEID_ROOT). */
const FILEID_ROOT = 0;

export type ExportDecision =
  | { allowed: true; exportId: string | undefined }
  | { allowed: false; exportId: string | undefined; reason: 'network' | 'insecure-port' | 'unknown-handle' };

/** Parses "a.b.c.d", "a.b.c.d/n", "v6", "v6/n"; undefined if malformed. */
export function parseNetwork(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', prefixText, extra] = text.split('/');
  const v = isIP(address);
  if (v === 0 || extra !== undefined) return undefined;
  const max = v === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return undefined;
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

/** A set of networks; an address matches if any network contains it. `::ffff:` mapped IPv4 is normalised. */
export function networkSet(networks: string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const n of networks) {
    const net = parseNetwork(n);
    if (!net) throw new Error(`"${n}" is not an address or CIDR network`);
    list.addSubnet(net.address, net.prefix, net.family);
  }
  return (address) => {
    const a = normaliseAddress(address);
    const v = isIP(a);
    return v !== 0 && list.check(a, v === 4 ? 'ipv4' : 'ipv6');
  };
}

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
   * The kernel file_handle inside an NFS handle, for open_by_handle_at: for knfsd handles the
   * fileid after the fsid is exactly that (fh_fileid_type is its handle_type); FILEID_ROOT (0)
   * names the export root itself. `error` says why none can be had.
   */
  kernelHandle(fh: Buffer): KernelHandle | { exportId: string | undefined; error: string } {
    const exportId = this.exportOf(fh);
    if (exportId === undefined) return { exportId, error: 'the handle belongs to no configured export' };
    try {
      const h = parseKnfsdHandle(fh, this.options.byteOrder);
      if (h.fileidType === FILEID_ROOT) return { exportId, root: true, type: 0, handle: Buffer.alloc(0) };
      if (h.fileid.length === 0) return { exportId, error: `fileid type ${h.fileidType} with no fileid bytes` };
      return { exportId, root: false, type: h.fileidType, handle: h.fileid };
    } catch (err) {
      if (err instanceof FileHandleError) return { exportId, error: err.message };
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
