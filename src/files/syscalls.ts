// The system calls the files part needs and Node lacks, as the native addon provides them
// (src/addon/files.ts). An interface so that a unit test of this part can stand in for them;
// every capability is also tested on real files.
import { constants } from 'node:os';

/** F_RDLCK, F_WRLCK, F_UNLCK as the addon numbers them. */
export const LOCK_READ = 0;
export const LOCK_WRITE = 1;
export const LOCK_UNLOCK = 2;
export type LockType = typeof LOCK_READ | typeof LOCK_WRITE | typeof LOCK_UNLOCK;
/** openLock's results at or below -LOCK_REFUSED are refused locks. */
export { LOCK_REFUSED } from '../addon/files';

/** A byte position or length for struct flock: a number while exact, a bigint above 2^53. */
export type FlockPos = number | bigint;

export interface FileSyscalls {
  /** An O_PATH descriptor of an export root (throws an errno error). */
  openPath(path: string): number;
  /** name_to_handle_at: the kernel's handle of a path (throws an errno error, EOPNOTSUPP when the filesystem has none). */
  nameToHandle(path: string): { type: number; handle: Buffer; mountId: number };
  /**
   * open_by_handle_at of a regular file only, its type checked on an O_PATH open first (a FIFO's
   * or a device's open never runs): a descriptor (>= 0), -EISDIR for any other type, or a negative errno.
   */
  openRegular(mountFd: number, type: number, handle: Buffer, mode: 'rw' | 'ro'): number;
  /**
   * A LOCK of a file with no description yet, in one step: openRegular, F_OFD_SETLK. The fd holding the lock; -errno when the open failed (-EISDIR: not a regular
   * file); -(LOCK_REFUSED + errno) when the lock was refused (nothing left open).
   */
  openLock(mountFd: number, type: number, handle: Buffer, mode: 'rw' | 'ro', lockType: typeof LOCK_READ | typeof LOCK_WRITE, start: FlockPos, len: FlockPos): number;
  /**
   * Whether the handle names a regular file, without an open for I/O (O_PATH): 0, -EISDIR, or
   * the open's -errno; with forWrite also whether it could be opened for writing (-EROFS, -EPERM).
   */
  checkHandle(mountFd: number, type: number, handle: Buffer, forWrite?: boolean): number;
  /** Permission bits and owner of the regular file a handle names (O_PATH), or -EISDIR / -errno. */
  handleOwner(mountFd: number, type: number, handle: Buffer): { mode: number; uid: number; gid: number } | number;
  closeFd(fd: number): void;
  /**
   * Closes all of them, with up to `threads` threads; when it returns none holds a lock, and a
   * large batch is still being closed on the addon's threads (closesPending). How many were not open.
   */
  releaseFds(fds: Int32Array, threads: number): number;
  /** Descriptors releaseFds is still closing. */
  closesPending(): number;
  /** Returns once releaseFds has closed everything it was given. */
  awaitCloses(): void;
  /** fstatfs's f_fsid (8 bytes, host order) and fstat's device numbers of the descriptor's filesystem (throws an errno error). */
  filesystemId(fd: number): { fsid: Buffer; devMajor: number; devMinor: number };
  /** F_OFD_SETLK: 0 or a negative errno (-EAGAIN: someone else holds a conflicting lock). */
  ofdSetLock(fd: number, type: LockType, start: FlockPos, len: FlockPos): number;
  /** The OFD locks the descriptor's own description holds (as /proc/self/fdinfo lists them). */
  ofdHeld(fd: number): { exclusive: boolean; start: FlockPos; len: FlockPos }[];
  /** F_OFD_GETLK: the first conflicting lock of another description or process, or null. */
  ofdGetLock(fd: number, type: LockType, start: FlockPos, len: FlockPos): { exclusive: boolean; start: FlockPos; len: FlockPos } | null;
  /** F_OFD_SETLKW on the addon's bounded pool: a wait id, or -EBUSY when every thread waits already. */
  ofdWait(fd: number, type: LockType, start: FlockPos, len: FlockPos, done: (result: number) => void): number;
  /** Cancels a wait; its done still comes (0 if it acquired meanwhile, else -ECANCELED). */
  ofdCancelWait(id: number): void;
}

export const E = constants.errno;
