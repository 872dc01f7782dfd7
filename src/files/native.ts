// The files part's system calls from the native addon (src/addon/files.ts).
import { awaitCloses, checkHandle, closeFd, closesPending, filesystemId, nameToHandle, ofdCancelWait, ofdGetLock, ofdSetLock, ofdWait, openLock, openRegular, openPath, releaseFds } from '../addon/files';
import type { FileSyscalls } from './syscalls';

export const nativeFileSyscalls: FileSyscalls = {
  openPath,
  nameToHandle,
  openRegular,
  openLock,
  checkHandle,
  closeFd,
  releaseFds,
  closesPending,
  awaitCloses,
  filesystemId,
  ofdSetLock,
  ofdGetLock: (fd, type, start, len) => ofdGetLock(fd, type === 1 ? 1 : 0, start, len),
  ofdWait: (fd, type, start, len, done) => ofdWait(fd, type === 1 ? 1 : 0, start, len, done),
  ofdCancelWait: (id) => void ofdCancelWait(id),
};
