// Real files for NLM locks, over the native addon (native/src/files.cc, ofd_wait.cc):
//   const root = openPath('/export');                      // at start, per export
//   const fd = openRegular(root, type, handleBytes, 'rw');  // per (owner, file); < 0: -errno
//   ofdSetLock(fd, LOCK_WRITE, 0, 0);                       // 0, or -EAGAIN on a conflict
//   const fd = openLock(root, type, handleBytes, 'rw', LOCK_WRITE, 0, 0); // the two above in one call
//   checkHandle(root, type, handleBytes);                   // 0 when it names a regular file
//   releaseFds(Int32Array.of(fd1, fd2, …), 3);               // a drop's descriptions: unlocked now, closed right after
//   awaitCloses();                                           // … every one closed (before an umount)
//   const id = ofdWait(fd, LOCK_WRITE, 0, 0, (r) => …);     // blocking on an outside holder
//   ofdCancelWait(id); … closeFd(fd);
//
// Conventions. Every call is synchronous on the JS thread except ofdWait's completion. The
// hot-path calls (openByHandle, ofdSetLock, ofdWait) return a negative errno (compare with
// os.constants.errno: -result === ESTALE) instead of throwing; the others throw an Error with
// `code` ('ENOENT', 'EOPNOTSUPP', …) and a positive `errno`. Wrong argument types are TypeErrors.
// Lock positions are a number (exact up to 2^53) or a bigint, non-negative; `len` 0 reaches to
// the end of the file (and beyond), exactly struct flock's l_len. Positions read back are a number
// when they fit 2^53, else a bigint.
//
// Privileges: open_by_handle_at needs CAP_DAC_READ_SEARCH; name_to_handle_at does not.
import { constants } from 'node:os';
import { loadAddon } from './native';

/** What name_to_handle_at returned: the kernel's file handle of one file and its mount. */
export interface FileHandle {
  /** handle_type (the `fh_fileid_type` knfsd puts in its NFS handles). */
  type: number;
  /** The f_handle bytes (handle_bytes long). */
  handle: Buffer;
  /** The mount's id, as in /proc/self/mountinfo's first column. */
  mountId: number;
}

/**
 * name_to_handle_at(AT_FDCWD, path, flags 0): the handle of `path` (flags 0: a final symlink is not followed; its handle opens to -ELOOP).
 * Throws an errno error: 'EOPNOTSUPP' when the filesystem cannot make handles, 'ENOENT', ….
 */
export const nameToHandle = (path: string): FileHandle => loadAddon().nameToHandle(path);

/**
 * An O_RDONLY | O_DIRECTORY | O_CLOEXEC fd of the directory `path`: the mount fd for
 * openByHandle. Not O_PATH: open_by_handle_at refuses an O_PATH mount fd with EBADF. Like any
 * open fd it keeps the mount busy (umount: EBUSY) until closed. Throws an errno error.
 */
export const openPath = (path: string): number => loadAddon().openPath(path);

/** 'rw' opens O_RDWR (needed for write locks), 'ro' O_RDONLY (read locks only). */
export type OpenMode = 'rw' | 'ro';

/**
 * open_by_handle_at(mountFd, handle, O_RDWR or O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK): the
 * fd (>= 0), or -errno without throwing: -ESTALE (the file is gone, or bytes that decode to no
 * file), -EINVAL (a length of 0 or over 128 bytes, a type the filesystem does not know), -EROFS
 * ('rw' on a read-only mount), -EISDIR ('rw' on a directory), -ELOOP (a symlink's handle),
 * -EACCES/-EPERM (no CAP_DAC_READ_SEARCH), -EMFILE/-ENFILE (out of fds), -EBADF (bad mountFd).
 * O_NONBLOCK so that a FIFO's or a device's handle never blocks the JS thread; it does not
 * change locking. O_NOFOLLOW does not apply: a handle is not resolved through a path. The
 * handle may name any file type: check fileType(fd) before locking (NLM locks regular files).
 */
export const openByHandle = (mountFd: number, type: number, handle: Buffer, mode: OpenMode): number =>
  loadAddon().openByHandle(mountFd, type, handle, mode === 'rw');

/**
 * openByHandle of a regular file only: the handle's type is checked first on an O_PATH open (as
 * knfsd's nfsd_open does), so that the open() of a FIFO (it would wake a writer blocked on it) or
 * of a device (its driver's open, run as root) never happens. The fd, -EISDIR when the handle
 * names anything but a regular file, or -errno as openByHandle's.
 */
export const openRegular = (mountFd: number, type: number, handle: Buffer, mode: OpenMode): number =>
  loadAddon().openRegular(mountFd, type, handle, mode === 'rw');

export type FileType = 'file' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'char' | 'block';
const FILE_TYPES: Record<number, FileType> = {
  0o100000: 'file', 0o040000: 'directory', 0o120000: 'symlink', 0o010000: 'fifo', 0o140000: 'socket', 0o020000: 'char', 0o060000: 'block',
};

/** The type of the file behind `fd` (one fstat). Throws an errno error (EBADF: not an open fd). */
export function fileType(fd: number): FileType {
  const t = loadAddon().fileType(fd);
  if (t < 0) throw errnoError('fstat', -t);
  const type = FILE_TYPES[t];
  if (type === undefined) throw new Error(`fstat: unknown file type 0o${t.toString(8)}`);
  return type;
}

/**
 * A LOCK of a file the caller has no description of yet, in one call: openRegular(mountFd,
 * type, handle, mode), ofdSetLock(fd, lockType, start, len). The fd,
 * holding the lock, or a negative result without throwing: lockRefusal(result) tells the two
 * kinds apart. An open that failed is -errno as openByHandle's (-EISDIR also for a file that
 * is not a regular one); a lock that was refused is below -LOCK_REFUSED and the fd is closed
 * again (lockRefusal gives ofdSetLock's -errno: -EAGAIN on a conflict, ...).
 */
export const openLock = (mountFd: number, type: number, handle: Buffer, mode: OpenMode, lockType: HoldType, start: Position, len: Position): number =>
  loadAddon().openLock(mountFd, type, handle, mode === 'rw', lockType, start, len);

/** Results of openLock at or below -LOCK_REFUSED are refusals of the lock, not of the open. */
export const LOCK_REFUSED = 0x10000;

/** ofdSetLock's -errno when openLock's result is a refused lock, else undefined (the fd, or the open's -errno). */
export const lockRefusal = (result: number): number | undefined => (result <= -LOCK_REFUSED ? result + LOCK_REFUSED : undefined);

/**
 * Whether the handle names a regular file now, without opening it for reading or writing:
 * open_by_handle_at with O_PATH (no write access taken, no NFSv4 delegation or lease broken, no
 * open event), fstat, close, in one call; with forWrite, also whether it could be opened for
 * writing (-EROFS on a read-only mount, -EPERM for an immutable file), still without an open.
 * 0, -EISDIR (not a regular file), or -errno as openByHandle's (-ESTALE, -EINVAL, -EPERM
 * without CAP_DAC_READ_SEARCH, -EMFILE, ...).
 */
export const checkHandle = (mountFd: number, type: number, handle: Buffer, forWrite = false): number => loadAddon().checkHandle(mountFd, type, handle, forWrite);

/**
 * Closes every fd in `fds`; when it returns none of them holds an OFD lock any more. A batch of
 * 256 fds or more with `threads` ≥ 2 is unlocked (whole-file F_OFD_SETLK F_UNLCK) by this thread
 * and up to threads − 1 of the addon's persistent threads together, without waiting for a late
 * one, and closed by those threads right after it returns (closesPending, awaitCloses); a smaller
 * batch is closed before it returns. Returns how many were not open fds (EBADF: a bug; those
 * are not closed); other close errors still free the fd.
 */
export const releaseFds = (fds: Int32Array, threads: number): number => loadAddon().releaseFds(fds, threads);

/** Permission bits and owner of a file. */
export interface FileOwner {
  /** st_mode & 07777 */
  mode: number;
  uid: number;
  gid: number;
}

/**
 * The permission bits and owner of the regular file the handle names, read on an O_PATH open
 * (nothing opened for I/O); or -EISDIR (not a regular file) or -errno as checkHandle's.
 */
export const handleOwner = (mountFd: number, type: number, handle: Buffer): FileOwner | number => loadAddon().handleOwner(mountFd, type, handle);

/** How many fds releaseFds handed to its threads that are not closed yet. */
export const closesPending = (): number => loadAddon().closesPending();

/** Blocks until every fd releaseFds handed to its threads is closed (milliseconds for 10k). */
export const awaitCloses = (): void => loadAddon().awaitCloses();

/** What names a filesystem in NFS handles (NFS-Ganesha's fsid): statfs's f_fsid and the device. */
export interface FilesystemId {
  /** f_fsid's 8 bytes in host order (zero on filesystems that have none). */
  fsid: Buffer;
  devMajor: number;
  devMinor: number;
}

/** fstatfs and fstat of fd: its filesystem's f_fsid and device numbers. Throws an errno error. */
export const filesystemId = (fd: number): FilesystemId => loadAddon().filesystemId(fd);

/** close(fd). Throws only on EBADF (a bug: not an open fd); other close errors still free the fd. */
export const closeFd = (fd: number): void => loadAddon().closeFd(fd);

/** Lock types of ofdSetLock / ofdGetLock / ofdWait (F_RDLCK, F_WRLCK, F_UNLCK). */
export const LOCK_READ = 0;
export const LOCK_WRITE = 1;
export const LOCK_UNLOCK = 2;
export type LockType = typeof LOCK_READ | typeof LOCK_WRITE | typeof LOCK_UNLOCK;
/** The types one can ask to hold (GETLK and waits). */
export type HoldType = typeof LOCK_READ | typeof LOCK_WRITE;
/** A byte position or length: number (exact up to 2^53) or bigint; non-negative. */
export type Position = number | bigint;

/**
 * F_OFD_SETLK on the open file description of `fd`: take (read/write), change or release
 * (unlock) [start, start+len), len 0 = to end of file. Splits, merges, upgrades and downgrades
 * are the kernel's, as for POSIX locks, per description. 0 or -errno, without throwing: -EAGAIN
 * (a conflicting holder: another description, a POSIX lock of any process, another node's lock
 * through a cluster filesystem), -EBADF (write lock on an 'ro' fd, read lock on a write-only
 * one, or not an fd), -EINVAL, -EOVERFLOW (start+len beyond 2^63), -ENOLCK.
 */
export const ofdSetLock = (fd: number, type: LockType, start: Position, len: Position): number =>
  loadAddon().ofdSetLock(fd, type, start, len);

/** A holder that F_OFD_GETLK reported. */
export interface OfdHolder {
  exclusive: boolean;
  start: Position;
  /** 0: to end of file. */
  len: Position;
  /** The holder's pid for a POSIX lock (0 when not in our pid namespace), -1 for an OFD lock. */
  pid: number;
}

/**
 * F_OFD_GETLK: null when `type` on [start, start+len) could be taken now through `fd`, else the
 * first conflicting holder. Locks of fd's own description never conflict. Throws an errno error
 * on failure (EBADF, EINVAL: bugs of the caller, not answers).
 */
export function ofdGetLock(fd: number, type: HoldType, start: Position, len: Position): OfdHolder | null {
  return loadAddon().ofdGetLock(fd, type, start, len);
}

/**
 * Waits for `type` on [start, start+len) with F_OFD_SETLKW on one of the addon's own threads
 * (not libuv's pool). Returns a wait id (> 0), or -errno at once: -EBUSY when the pool's threads
 * are all busy (no queueing: poll those with ofdSetLock), -EBADF (not an fd), -EMFILE (the wait
 * holds a dup of fd), -EAGAIN (no thread). Throws a TypeError on bad arguments.
 *
 * `done(result)` is called once, on the JS thread: 0 when the lock is held (also when a cancel
 * came too late: the caller then holds it and must release it), -ECANCELED after
 * ofdCancelWait/ofdCancelAll, or -errno from fcntl (-EBADF: fd's open mode does not allow the
 * type; -ENOLCK; -EDEADLK never: Linux does no deadlock detection for OFD locks). The wait works
 * on its own dup of fd (same open file description): closing fd while it is pending is safe,
 * and a lock acquired after that is released again when the wait drops its dup (done still
 * says 0). Pending waits do not keep the process alive.
 */
export const ofdWait = (fd: number, type: HoldType, start: Position, len: Position, done: (result: number) => void): number =>
  loadAddon().ofdWait(fd, type, start, len, done);

/**
 * Cancels a wait: true when its done is still to come (with 0 or -ECANCELED; within a few ms),
 * false when the id is unknown or done was already called.
 */
export const ofdCancelWait = (id: number): boolean => loadAddon().ofdCancelWait(id);

/** Cancels every pending wait (shutdown); their done callbacks still come. Returns how many. */
export const ofdCancelAll = (): number => loadAddon().ofdCancelAll();

/** At most n (1..16384, default 64) waits at once from now on; running waits are not affected. */
export const setWaitPoolSize = (n: number): void => loadAddon().setWaitPoolSize(n);

/** The wait pool: size, busy (threads in a wait), pending (waits whose done is still to come). */
export const waitPoolStats = (): { size: number; busy: number; pending: number } => loadAddon().waitPoolStats();

/** RLIMIT_NOFILE (Infinity for RLIM_INFINITY). */
export interface NofileLimit {
  soft: number;
  hard: number;
}
/** getrlimit(RLIMIT_NOFILE). */
export const nofileLimit = (): NofileLimit => loadAddon().nofileLimit();
/** Raises the soft RLIMIT_NOFILE to the hard one (always allowed) and returns the limits. Throws an errno error. */
export const raiseNofileLimit = (): NofileLimit => loadAddon().raiseNofileLimit();

const ERRNO_NAMES = new Map<number, string>();
// Aliases left out, so names match the addon's error codes (glibc's strerrorname_np).
const ALIASES = new Set(['EWOULDBLOCK', 'ENOTSUP', 'EDEADLOCK']);
for (const [name, n] of Object.entries(constants.errno)) if (!ALIASES.has(name)) ERRNO_NAMES.set(n, name);
/** The name of a negative (or positive) errno result: errnoName(-116) === 'ESTALE'. */
export const errnoName = (result: number): string => ERRNO_NAMES.get(Math.abs(result)) ?? `errno ${Math.abs(result)}`;

function errnoError(what: string, errno: number): NodeJS.ErrnoException {
  const code = errnoName(errno);
  return Object.assign(new Error(`${what}: ${code}`), { code, errno });
}
