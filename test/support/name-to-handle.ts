// The kernel's own file handle of a path (name_to_handle_at) and its filesystem's statfs f_fsid,
// to check an NFS server's handles against. TODO(lead): the native addon's nameToHandle(path)
// (src/addon/files.ts, branch w-native) returns the same { type, handle, mountId }; it is used
// when present, and the python3 ctypes call below can go once it is merged.
import { execFileSync } from 'node:child_process';
import * as addon from '../../src/addon';

export interface NamedHandle {
  type: number;
  handle: Buffer;
  mountId: number;
}

// ctypes over libc: struct file_handle { unsigned handle_bytes; int handle_type; unsigned char f_handle[]; }
// and struct statfs (x86-64 and arm64: f_fsid's two ints at offset 56).
const PY = `
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class FH(ctypes.Structure):
    _fields_ = [('handle_bytes', ctypes.c_uint), ('handle_type', ctypes.c_int), ('f_handle', ctypes.c_ubyte * 128)]
path = sys.argv[2].encode()
if sys.argv[1] == 'handle':
    fh = FH(handle_bytes=128); mnt = ctypes.c_int()
    if libc.name_to_handle_at(-100, path, ctypes.byref(fh), ctypes.byref(mnt), 0) != 0:
        e = ctypes.get_errno(); sys.exit('name_to_handle_at: ' + os.strerror(e))
    print(json.dumps({'type': fh.handle_type, 'handle': bytes(fh.f_handle[:fh.handle_bytes]).hex(), 'mountId': mnt.value}))
else:
    buf = ctypes.create_string_buffer(120)
    if libc.statfs(path, buf) != 0:
        e = ctypes.get_errno(); sys.exit('statfs: ' + os.strerror(e))
    print(json.dumps({'fsid': buf.raw[56:64].hex()}))
`;

const python = (what: 'handle' | 'statfs', path: string): Record<string, unknown> =>
  JSON.parse(execFileSync('python3', ['-c', PY, what, path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as Record<string, unknown>;

/** name_to_handle_at(AT_FDCWD, path, 0) in this process's mount namespace. */
export function nameToHandle(path: string): NamedHandle {
  const native = (addon as Record<string, unknown>).nameToHandle;
  if (typeof native === 'function') return (native as (p: string) => NamedHandle)(path);
  const j = python('handle', path);
  return { type: j.type as number, handle: Buffer.from(j.handle as string, 'hex'), mountId: j.mountId as number };
}

/** statfs(path).f_fsid's 8 bytes as the kernel lays them out (two ints, host order). */
export const statfsFsid = (path: string): Buffer => Buffer.from(python('statfs', path).fsid as string, 'hex');
