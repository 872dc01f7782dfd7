// NFS-Ganesha 4.x NFSv3 file handles with an FSAL_VFS opaque part: they embed the kernel's
// file_handle (name_to_handle_at), so lockdrop can open the file beside a Ganesha run with
// Enable_NLM = false. An NLM request carries the NFSv3 handle as its fh. Pure functions over Buffers.
//
// Layout, as Ganesha 4.0–4.4 writes it (src/include/nfs_fh.h file_handle_v3_t,
// src/support/nfs_filehandle_mgmt.c nfs3_FSALToFhandle, src/FSAL/FSAL_VFS/os/linux/handle_syscalls.c
// vfs_map_name_to_handle_at):
//
//   0      fhversion   GANESHA_FH_VERSION 0x43
//   1      fhflags1    FH_FSAL_BIG_ENDIAN 0x40 when the server is big-endian (the FSAL part's words)
//   2..3   exportid    the EXPORT's Export_Id, network byte order
//   4      fs_len      length of the FSAL opaque that follows
//   5..    fsopaque    fs_len bytes, then zero padding to a multiple of 4 (while that fits in 64)
//
// The VFS opaque (vfs_file_handle_t.handle_data):
//
//   0      flags       bits 0–4 fsid type, 0x20 HANDLE_DUMMY, bits 6–7 width of the kernel handle
//                      type: 0x40 one byte, 0x80 two bytes (int16), 0xc0 four bytes (int32)
//   1..    fsid        0, 8 or 16 bytes by fsid type (host order, memcpy of struct fsal_fsid__)
//   then   handle_type 1, 2 or 4 bytes (host order)
//   then   f_handle    the kernel handle's bytes, the rest of the opaque
//
// A dummy handle (a filesystem Ganesha has not claimed) ends after the fsid: it names no file.
import { FileHandleError, type ByteOrder } from './knfsd';

export const GANESHA_FH_VERSION = 0x43;
export const FH_FSAL_BIG_ENDIAN = 0x40;
/** NFS3_FHSIZE: Ganesha refuses longer NFSv3 handles. */
export const GANESHA_FH_MAX = 64;
/** offsetof(file_handle_v3_t, fsopaque). */
export const GANESHA_FH_HEADER = 5;

export const HANDLE_TYPE_8 = 0x40;
export const HANDLE_TYPE_16 = 0x80;
export const HANDLE_TYPE_32 = 0xc0;
export const HANDLE_TYPE_MASK = 0xc0;
export const HANDLE_DUMMY = 0x20;
export const HANDLE_FSID_MASK = 0x1f;

/** Ganesha's enum fsid_type. */
export const GANESHA_FSID_NO_TYPE = 0;
export const GANESHA_FSID_ONE_UINT64 = 1;
export const GANESHA_FSID_MAJOR_64 = 2;
/** Two 64-bit words; with blkid, the filesystem uuid's 16 bytes as they are. */
export const GANESHA_FSID_TWO_UINT64 = 3;
/** statfs f_fsid's two 32-bit words (or the device numbers when f_fsid is zero). */
export const GANESHA_FSID_TWO_UINT32 = 4;
/** Device major and minor (NFS_Core_Param fsid_device = true). */
export const GANESHA_FSID_DEVICE = 5;

/** Bytes of fsid per fsid type (Ganesha's sizeof_fsid()). */
export const GANESHA_FSID_LEN: readonly number[] = [0, 8, 8, 16, 8, 8];

/**
 * The kernel handle bounds FSAL_VFS accepts (vfs_valid_handle: at least 8 bytes; VFS_MAX_HANDLE
 * 48 is the buffer vfs_open_by_handle copies into).
 */
export const VFS_KERNEL_HANDLE_MIN = 8;
export const VFS_KERNEL_HANDLE_MAX = 48;

/** What open_by_handle_at() takes: struct file_handle's handle_type and f_handle (a view of the NFS handle). */
export interface KernelFileHandle {
  type: number;
  handle: Buffer;
}

export interface GaneshaFsid {
  type: number;
  /** struct fsal_fsid__ as Ganesha decodes it (minor 0 for the one-word types). */
  major: bigint;
  minor: bigint;
  /** The fsid bytes as they are in the handle (for TWO_UINT64 from blkid: the uuid); a view of it. */
  bytes: Buffer;
}

export type GaneshaHandle = {
  exportId: number;
  /** fhflags1. */
  flags: number;
  /** Byte order of the FSAL part's words (from FH_FSAL_BIG_ENDIAN). */
  byteOrder: ByteOrder;
  fsid: GaneshaFsid;
} & ({ dummy: false; kernel: KernelFileHandle } | { dummy: true; kernel: undefined });

/** True when a handle starts as a Ganesha handle does (its version byte); says nothing of the rest. */
export const isGaneshaHandle = (fh: Buffer): boolean => fh.length > 0 && fh[0] === GANESHA_FH_VERSION;

/** Wire length Ganesha gives a handle whose opaque is fsLen bytes (nfs3_sizeof_handle). */
export function ganeshaHandleLength(fsLen: number): number {
  const size = GANESHA_FH_HEADER + fsLen;
  const aligned = (size + 3) & ~3;
  return aligned <= GANESHA_FH_MAX ? aligned : size;
}

/**
 * Parses a Ganesha NFSv3 handle with an FSAL_VFS opaque. Throws FileHandleError: `not-ganesha`
 * (first byte not 0x43), `truncated` (ends inside the header, fsid or handle type),
 * `length-mismatch` (the wire length is not the one fs_len implies, or over 64 bytes; a dummy
 * handle longer than its fsid), `unknown-fsid-type`, `bad-handle-type` (no type width bits),
 * `bad-kernel-handle` (kernel handle shorter or longer than FSAL_VFS accepts).
 */
export function parseGaneshaHandle(fh: Buffer): GaneshaHandle {
  if (fh.length < 1 || fh[0] !== GANESHA_FH_VERSION) throw new FileHandleError('not-ganesha', `fhversion ${fh.length ? `0x${fh[0]!.toString(16)}` : 'missing'}: not a Ganesha handle (0x43)`);
  if (fh.length < GANESHA_FH_HEADER) throw new FileHandleError('truncated', `handle of ${fh.length} bytes: the Ganesha header needs ${GANESHA_FH_HEADER}`);
  if (fh.length > GANESHA_FH_MAX) throw new FileHandleError('length-mismatch', `handle of ${fh.length} bytes: Ganesha's NFSv3 handles are at most ${GANESHA_FH_MAX}`);
  const flags = fh[1]!;
  const exportId = fh.readUInt16BE(2);
  const fsLen = fh[4]!;
  const expected = ganeshaHandleLength(fsLen);
  if (fh.length !== expected) {
    const code = fh.length < GANESHA_FH_HEADER + fsLen ? 'truncated' : 'length-mismatch';
    throw new FileHandleError(code, `fs_len ${fsLen} makes a ${expected}-byte handle, this one has ${fh.length}`);
  }
  const opaque = fh.subarray(GANESHA_FH_HEADER, GANESHA_FH_HEADER + fsLen);
  if (opaque.length < 1) throw new FileHandleError('truncated', 'fs_len 0: no FSAL_VFS flags byte');
  const byteOrder: ByteOrder = flags & FH_FSAL_BIG_ENDIAN ? 'big' : 'little';
  const vflags = opaque[0]!;
  const fsidType = vflags & HANDLE_FSID_MASK;
  const fsidLen = GANESHA_FSID_LEN[fsidType];
  if (fsidLen === undefined) throw new FileHandleError('unknown-fsid-type', `FSAL_VFS fsid type ${fsidType} is not one Ganesha defines`);
  let at = 1;
  if (opaque.length < at + fsidLen) throw new FileHandleError('truncated', `fsid type ${fsidType} needs ${fsidLen} bytes, the opaque has ${opaque.length - at} after its flags`);
  const fsid = decodeFsid(fsidType, opaque.subarray(at, at + fsidLen), byteOrder);
  at += fsidLen;
  const header = { exportId, flags, byteOrder, fsid };
  if (vflags & HANDLE_DUMMY) {
    if (opaque.length !== at) throw new FileHandleError('length-mismatch', `dummy handle with ${opaque.length - at} bytes after its fsid`);
    return { ...header, dummy: true, kernel: undefined };
  }
  const width = { [HANDLE_TYPE_8]: 1, [HANDLE_TYPE_16]: 2, [HANDLE_TYPE_32]: 4 }[vflags & HANDLE_TYPE_MASK];
  if (width === undefined) throw new FileHandleError('bad-handle-type', `FSAL_VFS flags 0x${vflags.toString(16)} give no handle type width`);
  if (opaque.length < at + width) throw new FileHandleError('truncated', `the ${width}-byte kernel handle type is cut off`);
  const type = readType(opaque, at, width, byteOrder);
  at += width;
  const handle = opaque.subarray(at);
  if (handle.length < VFS_KERNEL_HANDLE_MIN || handle.length > VFS_KERNEL_HANDLE_MAX) {
    throw new FileHandleError('bad-kernel-handle', `kernel handle of ${handle.length} bytes: FSAL_VFS takes ${VFS_KERNEL_HANDLE_MIN} to ${VFS_KERNEL_HANDLE_MAX}`);
  }
  return { ...header, dummy: false, kernel: { type, handle } };
}

function readType(b: Buffer, at: number, width: number, order: ByteOrder): number {
  // handle_type is an int: 8-bit types are stored unsigned (<= UINT8_MAX), the wider ones signed.
  if (width === 1) return b[at]!;
  if (width === 2) return order === 'little' ? b.readInt16LE(at) : b.readInt16BE(at);
  return order === 'little' ? b.readInt32LE(at) : b.readInt32BE(at);
}

function decodeFsid(type: number, k: Buffer, order: ByteOrder): GaneshaFsid {
  const u64 = (off: number) => (order === 'little' ? k.readBigUInt64LE(off) : k.readBigUInt64BE(off));
  const u32 = (off: number) => BigInt(order === 'little' ? k.readUInt32LE(off) : k.readUInt32BE(off));
  const bytes = k;
  switch (type) {
    case GANESHA_FSID_NO_TYPE:
      return { type, major: 0n, minor: 0n, bytes };
    case GANESHA_FSID_ONE_UINT64:
    case GANESHA_FSID_MAJOR_64:
      return { type, major: u64(0), minor: 0n, bytes };
    case GANESHA_FSID_TWO_UINT64:
      return { type, major: u64(0), minor: u64(8), bytes };
    default:
      // TWO_UINT32, DEVICE: two 32-bit words
      return { type, major: u32(0), minor: u32(4), bytes };
  }
}
