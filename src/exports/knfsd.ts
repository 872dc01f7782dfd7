// Linux knfsd file handles (fs/nfsd/nfsfh.h, fh_version 1): a 4-byte header
// (fh_version, fh_auth_type, fh_fsid_type, fh_fileid_type) then the fsid, whose size and meaning
// depend on fh_fsid_type, then the filesystem's own file id. lockdrop only needs the fsid: it
// names the export a lock belongs to. Pure functions over Buffers.

export const FSID_DEV = 0;
export const FSID_NUM = 1;
export const FSID_MAJOR_MINOR = 2;
export const FSID_ENCODE_DEV = 3;
export const FSID_UUID4_INUM = 4;
export const FSID_UUID8 = 5;
export const FSID_UUID16 = 6;
export const FSID_UUID16_INUM = 7;

/** Bytes of fsid after the header, per fsid type (the kernel's key_len()). */
export const FSID_KEY_LEN: readonly number[] = [8, 4, 12, 8, 8, 8, 16, 24];

/** Words the kernel writes in host byte order (fsid numbers, inode numbers, encoded devs). */
export type ByteOrder = 'little' | 'big';

export type KnfsdFsid =
  | { type: typeof FSID_DEV; major: number; minor: number; ino: number }
  | { type: typeof FSID_NUM; fsid: number }
  | { type: typeof FSID_MAJOR_MINOR; major: number; minor: number; ino: number }
  | { type: typeof FSID_ENCODE_DEV; major: number; minor: number; ino: number }
  /** uuid4: the four 32-bit words of the uuid xor-ed together (4 bytes, hex). */
  | { type: typeof FSID_UUID4_INUM; ino: number; uuid4: string }
  /** uuid8: words 0^2 and 1^3 of the uuid (8 bytes, hex). */
  | { type: typeof FSID_UUID8; uuid8: string }
  | { type: typeof FSID_UUID16; uuid: string }
  | { type: typeof FSID_UUID16_INUM; ino: bigint; uuid: string };

export interface KnfsdHandle {
  version: 1;
  authType: number;
  fileidType: number;
  fsid: KnfsdFsid;
  /** The rest of the handle: the filesystem's file id, opaque here. */
  fileid: Buffer;
}

export type FhErrorCode =
  | 'truncated'
  | 'not-knfsd'
  | 'unknown-fsid-type'
  /** NFS-Ganesha handles (ganesha.ts): */
  | 'not-ganesha'
  | 'length-mismatch'
  | 'bad-handle-type'
  | 'bad-kernel-handle';

export class FileHandleError extends Error {
  constructor(readonly code: FhErrorCode, message: string) {
    super(message);
    this.name = 'FileHandleError';
  }
}

const u32 = (b: Buffer, off: number, order: ByteOrder): number => (order === 'little' ? b.readUInt32LE(off) : b.readUInt32BE(off));

/**
 * Parses a knfsd version-1 handle. Throws FileHandleError: `truncated` when the handle ends
 * inside the header or fsid, `not-knfsd` when fh_version is not 1 or fh_auth_type not 0,
 * `unknown-fsid-type` for a type the kernel does not define.
 */
export function parseKnfsdHandle(fh: Buffer, order: ByteOrder = 'little'): KnfsdHandle {
  if (fh.length < 4) throw new FileHandleError('truncated', `handle of ${fh.length} bytes: the knfsd header needs 4`);
  const version = fh[0]!;
  const authType = fh[1]!;
  const fsidType = fh[2]!;
  const fileidType = fh[3]!;
  if (version !== 1 || authType !== 0) throw new FileHandleError('not-knfsd', `fh_version ${version}, fh_auth_type ${authType}: not a knfsd v1 handle`);
  const keyLen = FSID_KEY_LEN[fsidType];
  if (keyLen === undefined) throw new FileHandleError('unknown-fsid-type', `fh_fsid_type ${fsidType} is not one knfsd defines`);
  if (fh.length < 4 + keyLen) throw new FileHandleError('truncated', `fsid type ${fsidType} needs ${keyLen} bytes after the header, handle has ${fh.length - 4}`);
  const k = fh.subarray(4, 4 + keyLen);
  return { version: 1, authType, fileidType, fsid: decodeFsid(fsidType, k, order), fileid: fh.subarray(4 + keyLen) };
}

function decodeFsid(type: number, k: Buffer, order: ByteOrder): KnfsdFsid {
  switch (type) {
    case FSID_DEV: {
      // htonl((major << 16) | minor), then the export root's inode number (host order)
      const dev = k.readUInt32BE(0);
      return { type, major: dev >>> 16, minor: dev & 0xffff, ino: u32(k, 4, order) };
    }
    case FSID_NUM:
      return { type, fsid: u32(k, 0, order) };
    case FSID_MAJOR_MINOR:
      return { type, major: k.readUInt32BE(0), minor: k.readUInt32BE(4), ino: u32(k, 8, order) };
    case FSID_ENCODE_DEV: {
      // new_encode_dev: minor's low byte | major << 8 | minor's high bits << 12
      const dev = u32(k, 0, order);
      return { type, major: (dev & 0xfff00) >>> 8, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00), ino: u32(k, 4, order) };
    }
    case FSID_UUID4_INUM:
      return { type, ino: u32(k, 0, order), uuid4: k.subarray(4, 8).toString('hex') };
    case FSID_UUID8:
      return { type, uuid8: k.toString('hex') };
    case FSID_UUID16:
      return { type, uuid: k.toString('hex') };
    case FSID_UUID16_INUM:
      return { type, ino: order === 'little' ? k.readBigUInt64LE(0) : k.readBigUInt64BE(0), uuid: k.subarray(8, 24).toString('hex') };
    default:
      throw new FileHandleError('unknown-fsid-type', `fh_fsid_type ${type} is not one knfsd defines`);
  }
}

/**
 * The handle knfsd gives a file of an export with `fsid=N` (FSID_NUM): the header, the fsid, then
 * the filesystem's kernel handle (name_to_handle_at's handle_type and bytes) as the file id —
 * what lockdrop's demo and benchmarks hand their clients.
 */
export function knfsdHandle(fsid: number, kernel: { type: number; handle: Buffer }, order: ByteOrder = 'little'): Buffer {
  const header = Buffer.from([1, 0, FSID_NUM, kernel.type, 0, 0, 0, 0]);
  if (order === 'little') header.writeUInt32LE(fsid, 4);
  else header.writeUInt32BE(fsid, 4);
  return Buffer.concat([header, kernel.handle]);
}

/** 16 uuid bytes from text: hex with or without dashes or colons (exports(5) uuid=, blkid). */
export function uuidBytes(text: string): Buffer {
  const hex = text.replace(/[-:]/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`"${text}" is not a 16-byte uuid`);
  return Buffer.from(hex, 'hex');
}

/** The folded forms knfsd puts in FSID_UUID8 and FSID_UUID4_INUM handles (byte-wise xor of 32-bit words). */
export function foldUuid(uuid: Buffer): { uuid8: string; uuid4: string } {
  const w = (i: number) => uuid.subarray(i * 4, i * 4 + 4);
  const xor = (...parts: Buffer[]) => Buffer.from([0, 1, 2, 3].map((j) => parts.reduce((acc, p) => acc ^ p[j]!, 0)));
  return {
    uuid8: Buffer.concat([xor(w(0), w(2)), xor(w(1), w(3))]).toString('hex'),
    uuid4: xor(w(0), w(1), w(2), w(3)).toString('hex'),
  };
}
