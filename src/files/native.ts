// The files part's system calls from the native addon (src/addon/files.ts).
import { awaitCloses, checkHandle, closeFd, handleOwner, closesPending, filesystemId, nameToHandle, ofdCancelWait, ofdGetLock, ofdSetLock, ofdWait, openLock, openRegular, openPath, releaseFds } from '../addon/files';
import { readFileSync } from 'node:fs';
import type { FileSyscalls, FlockPos } from './syscalls';

// "lock:\t1: OFDLCK  ADVISORY  READ -1 fe:00:2147340 20 EOF" (fs/locks.c lock_get_status): the
// description's own locks, its POSIX locks and leases left out (lockdrop takes none).
const FDINFO_LOCK = /^lock:\s+\d+: OFDLCK\s+\S+\s+(READ|WRITE)\s+\S+\s+\S+\s+(\d+)\s+(\d+|EOF)$/gm;
const position = (n: bigint): FlockPos => (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n);

function ofdHeld(fd: number): { exclusive: boolean; start: FlockPos; len: FlockPos }[] {
  const out: { exclusive: boolean; start: FlockPos; len: FlockPos }[] = [];
  for (const m of readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1').matchAll(FDINFO_LOCK)) {
    const start = BigInt(m[2]!);
    out.push({ exclusive: m[1] === 'WRITE', start: position(start), len: m[3] === 'EOF' ? 0 : position(BigInt(m[3]!) - start + 1n) });
  }
  return out;
}

export const nativeFileSyscalls: FileSyscalls = {
  openPath,
  nameToHandle,
  openRegular,
  openLock,
  checkHandle,
  handleOwner,
  closeFd,
  releaseFds,
  closesPending,
  awaitCloses,
  filesystemId,
  ofdSetLock,
  ofdHeld,
  ofdGetLock: (fd, type, start, len) => ofdGetLock(fd, type === 1 ? 1 : 0, start, len),
  ofdWait: (fd, type, start, len, done) => ofdWait(fd, type === 1 ? 1 : 0, start, len, done),
  ofdCancelWait: (id) => void ofdCancelWait(id),
};
