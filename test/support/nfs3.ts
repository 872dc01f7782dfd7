// Just enough MOUNT v3 and NFSv3 (RFC 1813) for tests to get real file handles from a real NFS
// server (NFS-Ganesha): MNT for an export's root handle, LOOKUP for a file's. lockdrop itself
// never speaks these protocols (an NLM request brings its handle), so they live with the tests.
import { AUTH_SYS, RpcClient, type Credential } from '../../src/rpc';
import type { XdrReader, XdrWriter } from '../../src/xdr';

export const MOUNT_PROG = 100005;
export const MOUNT_V3 = 3;
export const MOUNTPROC3_MNT = 1;
export const MOUNTPROC3_UMNT = 3;
export const NFS_PROG = 100003;
export const NFS_V3 = 3;
export const NFSPROC3_LOOKUP = 3;

export const NFS3_FHSIZE = 64;
const MNTPATHLEN = 1024;

/** AUTH_SYS as root, as a Linux client's mount does. */
export const ROOT_CRED: Credential = { flavor: AUTH_SYS, stamp: 0, machineName: 'lockdrop-test', uid: 0, gid: 0, gids: [] };

export class NfsStatusError extends Error {
  constructor(readonly what: string, readonly status: number) {
    super(`${what} answered status ${status}`);
    this.name = 'NfsStatusError';
  }
}

export interface MountReply {
  fh: Buffer;
  authFlavors: number[];
}

export const encodeMntArgs = (dirpath: string) => (w: XdrWriter): void => void w.string(dirpath, MNTPATHLEN);

/** mountres3: fhs_status, then on MNT3_OK the root handle and the auth flavors the export takes. */
export function decodeMntReply(r: XdrReader): MountReply {
  const status = r.uint();
  if (status !== 0) throw new NfsStatusError('MOUNT3 MNT', status);
  const fh = r.opaque(NFS3_FHSIZE);
  const n = r.uint();
  if (n > 64) throw new Error(`MOUNT3 MNT: ${n} auth flavors`);
  const authFlavors = Array.from({ length: n }, () => r.uint());
  r.done();
  return { fh, authFlavors };
}

export interface Fattr3Ids {
  /** ftype3: 1 regular file, 2 directory, ... */
  type: number;
  fsid: bigint;
  /** The inode number. */
  fileid: bigint;
}

export interface LookupReply {
  fh: Buffer;
  /** From obj_attributes, when the server sent them. */
  attributes: Fattr3Ids | undefined;
}

export const encodeLookupArgs = (dir: Buffer, name: string) => (w: XdrWriter): void => void w.opaque(dir, NFS3_FHSIZE).string(name, 255);

/** LOOKUP3res: status, then on NFS3_OK the object's handle and post_op_attrs of object and directory. */
export function decodeLookupReply(r: XdrReader): LookupReply {
  const status = r.uint();
  if (status !== 0) throw new NfsStatusError('NFSv3 LOOKUP', status);
  const fh = r.opaque(NFS3_FHSIZE);
  const attributes = postOpAttr(r);
  postOpAttr(r);
  r.done();
  return { fh, attributes };
}

function postOpAttr(r: XdrReader): Fattr3Ids | undefined {
  if (!r.bool()) return undefined;
  // fattr3: type, mode, nlink, uid, gid, size, used, rdev (specdata3), fsid, fileid, atime, mtime, ctime
  const type = r.uint();
  r.fixedOpaque(4 * 4 + 8 + 8 + 8);
  const fsid = r.uhyper();
  const fileid = r.uhyper();
  r.fixedOpaque(3 * 8);
  return { type, fsid, fileid };
}

/** MNT over a given client (UDP or TCP to mountd's port); resolves with the export's root handle. */
export const mount = (client: RpcClient, dirpath: string): Promise<MountReply> =>
  client.call(MOUNT_PROG, MOUNT_V3, MOUNTPROC3_MNT, encodeMntArgs(dirpath), decodeMntReply, { cred: ROOT_CRED });

/** UMNT: tells mountd the client no longer uses the export (void reply). */
export const unmount = (client: RpcClient, dirpath: string): Promise<void> =>
  client.call(MOUNT_PROG, MOUNT_V3, MOUNTPROC3_UMNT, encodeMntArgs(dirpath), () => undefined, { cred: ROOT_CRED });

export const lookup = (client: RpcClient, dir: Buffer, name: string): Promise<LookupReply> =>
  client.call(NFS_PROG, NFS_V3, NFSPROC3_LOOKUP, encodeLookupArgs(dir, name), decodeLookupReply, { cred: ROOT_CRED });
