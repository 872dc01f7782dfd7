// NFS-Ganesha FSAL_VFS handles built from their parts, for tests of the decoder and of locking on
// the files such handles name (the layout: src/exports/ganesha.ts).
import { ganeshaHandleLength } from '../../src/exports';

/** A Ganesha FSAL_VFS handle from its parts, as nfs3_FSALToFhandle + vfs_map_name_to_handle_at build it. */
export function encodeGaneshaHandle(p: { exportId: number; big: boolean; fsidType: number; fsid: Buffer; width: 1 | 2 | 4; type: number; kernel: Buffer }): Buffer {
  const typeBytes = Buffer.alloc(p.width);
  if (p.width === 1) typeBytes[0] = p.type;
  else if (p.width === 2) p.big ? typeBytes.writeInt16BE(p.type) : typeBytes.writeInt16LE(p.type);
  else p.big ? typeBytes.writeInt32BE(p.type) : typeBytes.writeInt32LE(p.type);
  const widthBits = { 1: 0x40, 2: 0x80, 4: 0xc0 }[p.width];
  const opaque = Buffer.concat([Buffer.from([widthBits | p.fsidType]), p.fsid, typeBytes, p.kernel]);
  const fh = Buffer.alloc(ganeshaHandleLength(opaque.length));
  fh[0] = 0x43;
  fh[1] = p.big ? 0x40 : 0;
  fh.writeUInt16BE(p.exportId, 2);
  fh[4] = opaque.length;
  opaque.copy(fh, 5);
  return fh;
}
