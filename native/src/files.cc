// Real files for NLM locks: file handles (name_to_handle_at / open_by_handle_at), export roots
// opened O_PATH, open file description (OFD) locks, and the RLIMIT_NOFILE budget.
// Hot-path calls (openByHandle, ofdSetLock) return a negative errno instead of throwing: a stale
// handle or a conflict is an answer, not an exception. Bad argument types are TypeErrors.
#include "common.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmath>
#include <vector>

namespace lockdrop {

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

bool ParsePosition(const Napi::Value& v, off_t* out) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= kMaxSafeInteger) || std::floor(d) != d) return false;
    *out = static_cast<off_t>(d);
    return true;
  }
  if (v.IsBigInt()) {
    bool lossless = false;
    int64_t n = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless || n < 0) return false;
    *out = static_cast<off_t>(n);
    return true;
  }
  return false;
}

// name_to_handle_at(path): { type, handle, mountId }. The buffer starts at MAX_HANDLE_SZ and
// grows when the kernel says EOVERFLOW (it then reports the size it needs in handle_bytes).
Napi::Value NameToHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "nameToHandle(path: string)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  unsigned int size = MAX_HANDLE_SZ;
  for (int attempt = 0; attempt < 4; attempt++) {
    std::vector<uint8_t> storage(sizeof(file_handle) + size);
    auto* fh = reinterpret_cast<file_handle*>(storage.data());
    fh->handle_bytes = size;
    int mountId = 0;
    if (name_to_handle_at(AT_FDCWD, path.c_str(), fh, &mountId, 0) == 0) {
      Napi::Object out = Napi::Object::New(env);
      out.Set("type", Napi::Number::New(env, fh->handle_type));
      out.Set("handle", Napi::Buffer<uint8_t>::Copy(env, fh->f_handle, fh->handle_bytes));
      out.Set("mountId", Napi::Number::New(env, mountId));
      return out;
    }
    if (errno != EOVERFLOW || fh->handle_bytes <= size) return ThrowErrno(env, "name_to_handle_at " + path, errno);
    size = fh->handle_bytes;
  }
  return ThrowErrno(env, "name_to_handle_at " + path, EOVERFLOW);
}

// openPath(path): a directory fd, the mount fd open_by_handle_at needs. Not O_PATH: the kernel
// takes the mount fd with fdget(), which refuses O_PATH files (EBADF; seen on 6.18).
Napi::Value OpenPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "openPath(path: string)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return ThrowErrno(env, "open " + path, errno);
  return Napi::Number::New(env, fd);
}

// The (mountFd, type, handle) arguments of the calls that open by handle, the handle copied into
// `storage` as open_by_handle_at wants it. Throws a TypeError and returns false when they are not
// that; *tooLong (answer -EINVAL) when the handle is empty or over MAX_HANDLE_SZ bytes.
struct HandleArgs {
  int mountFd = -1;
  alignas(file_handle) uint8_t storage[sizeof(file_handle) + MAX_HANDLE_SZ];
  bool badLength = false;
  file_handle* fh() { return reinterpret_cast<file_handle*>(storage); }
};

bool ParseHandleArgs(const Napi::CallbackInfo& info, HandleArgs* out) {
  double type = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : NAN;
  if (info.Length() < 3 || !ParseFd(info[0], &out->mountFd) || !(std::fabs(type) <= 2147483647.0 && std::floor(type) == type) ||
      !info[2].IsBuffer())
    return false;
  Napi::Buffer<uint8_t> handle = info[2].As<Napi::Buffer<uint8_t>>();
  if (handle.Length() == 0 || handle.Length() > MAX_HANDLE_SZ) {
    out->badLength = true;
    return true;
  }
  file_handle* fh = out->fh();
  fh->handle_bytes = static_cast<unsigned int>(handle.Length());
  fh->handle_type = static_cast<int>(type);
  memcpy(fh->f_handle, handle.Data(), handle.Length());
  return true;
}

// O_NONBLOCK: opening a FIFO or a device by handle must not block the JS thread (it has no effect
// on regular files' reads or locks). O_NOFOLLOW is pointless here: a handle is never resolved
// through a path, and a symlink's handle without O_PATH fails with ELOOP anyway.
int OpenFlags(bool readWrite) { return (readWrite ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK; }

// 0 when fd is a regular file (what NLM locks), -EISDIR when it is anything else, or -errno.
int RegularFile(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0) return -errno;
  return S_ISREG(st.st_mode) ? 0 : -EISDIR;
}

// open_by_handle_at for I/O of a regular file only: its type is checked first on an O_PATH open
// (as knfsd's nfsd_open does with fh_verify(S_IFREG)), so that the open() of a FIFO (which wakes
// a writer blocked on it) or of a device (its driver's open, as root) never runs. The handle
// names one inode, whose type cannot change between the two opens. The fd, -EISDIR (not a
// regular file) or -errno.
int OpenRegular(HandleArgs* h, int flags) {
  int path = open_by_handle_at(h->mountFd, h->fh(), O_PATH | O_CLOEXEC);
  if (path < 0) return -errno;
  int rc = RegularFile(path);
  if (rc == 0) {
    int fd = open_by_handle_at(h->mountFd, h->fh(), flags);
    rc = fd >= 0 ? fd : -errno;
  }
  close(path);
  return rc;
}

// openByHandle(mountFd, type, handle, rw): fd or -errno.
Napi::Value OpenByHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HandleArgs h;
  if (!ParseHandleArgs(info, &h) || info.Length() < 4 || !info[3].IsBoolean())
    return ThrowType(env, "openByHandle(mountFd: number, type: number, handle: Buffer, readWrite: boolean)");
  if (h.badLength) return Napi::Number::New(env, -EINVAL);
  int fd = open_by_handle_at(h.mountFd, h.fh(), OpenFlags(info[3].As<Napi::Boolean>().Value()));
  return Napi::Number::New(env, fd >= 0 ? fd : -errno);
}

// openRegular(mountFd, type, handle, rw): OpenRegular's fd or -errno.
Napi::Value OpenRegularFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HandleArgs h;
  if (!ParseHandleArgs(info, &h) || info.Length() < 4 || !info[3].IsBoolean())
    return ThrowType(env, "openRegular(mountFd: number, type: number, handle: Buffer, readWrite: boolean)");
  if (h.badLength) return Napi::Number::New(env, -EINVAL);
  return Napi::Number::New(env, OpenRegular(&h, OpenFlags(info[3].As<Napi::Boolean>().Value())));
}

// Lock refusals of openLock are -(kLockRefused + errno), apart from the open's own -errno.
constexpr int kLockRefused = 0x10000;

// openLock(mountFd, type, handle, rw, lockType, start, len): a LOCK of a file the owner has no
// description of, in one call: OpenRegular, F_OFD_SETLK.
// The fd with the lock held; -errno when the open failed (-EISDIR: not a regular file);
// -(kLockRefused + errno) when the lock was refused (the fd is closed again).
Napi::Value OpenLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HandleArgs h;
  LockArgs a;
  if (!ParseHandleArgs(info, &h) || info.Length() < 7 || !info[3].IsBoolean() || !ParseLockRange(info, 4, false, &a))
    return ThrowType(env, "openLock(mountFd: number, type: number, handle: Buffer, readWrite: boolean, lockType: 0 | 1, start: non-negative integer, len: non-negative integer)");
  if (h.badLength) return Napi::Number::New(env, -EINVAL);
  int fd = OpenRegular(&h, OpenFlags(info[3].As<Napi::Boolean>().Value()));
  if (fd < 0) return Napi::Number::New(env, fd);
  struct flock fl = a.Flock();
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return Napi::Number::New(env, fd);
  int rc = -(kLockRefused + errno);
  close(fd);
  return Napi::Number::New(env, rc);
}

// checkHandle(mountFd, type, handle, forWrite?): whether the handle names a regular file now,
// without opening it for I/O: an O_PATH open (no write access taken, no lease or delegation
// broken, no open event), fstat, close; with forWrite also whether it could be opened for
// writing (faccessat W_OK: -EROFS on a read-only mount, -EPERM for an immutable file). 0, -EISDIR
// (not a regular file) or -errno (-ESTALE, -EINVAL, ...).
Napi::Value CheckHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HandleArgs h;
  if (!ParseHandleArgs(info, &h) || (info.Length() > 3 && !info[3].IsBoolean() && !info[3].IsUndefined()))
    return ThrowType(env, "checkHandle(mountFd: number, type: number, handle: Buffer, forWrite?: boolean)");
  if (h.badLength) return Napi::Number::New(env, -EINVAL);
  bool forWrite = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  int fd = open_by_handle_at(h.mountFd, h.fh(), O_PATH | O_CLOEXEC);
  if (fd < 0) return Napi::Number::New(env, -errno);
  int rc = RegularFile(fd);
  if (rc == 0 && forWrite && faccessat(fd, "", W_OK, AT_EMPTY_PATH | AT_EACCESS) < 0) rc = -errno;
  close(fd);
  return Napi::Number::New(env, rc);
}

// handleOwner(mountFd, type, handle): { mode, uid, gid } of the regular file the handle names,
// read on an O_PATH open (no open for I/O), for an access check as the NLM caller; or -EISDIR
// (not a regular file) or -errno as checkHandle's.
Napi::Value HandleOwner(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HandleArgs h;
  if (!ParseHandleArgs(info, &h)) return ThrowType(env, "handleOwner(mountFd: number, type: number, handle: Buffer)");
  if (h.badLength) return Napi::Number::New(env, -EINVAL);
  int fd = open_by_handle_at(h.mountFd, h.fh(), O_PATH | O_CLOEXEC);
  if (fd < 0) return Napi::Number::New(env, -errno);
  struct stat st;
  int rc = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EISDIR;
  close(fd);
  if (rc != 0) return Napi::Number::New(env, rc);
  Napi::Object out = Napi::Object::New(env);
  out.Set("mode", Napi::Number::New(env, st.st_mode & 07777));
  out.Set("uid", Napi::Number::New(env, st.st_uid));
  out.Set("gid", Napi::Number::New(env, st.st_gid));
  return out;
}

// fileType(fd): the S_IFMT bits of fstat's st_mode, or -errno.
Napi::Value FileType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (info.Length() < 1 || !ParseFd(info[0], &fd)) return ThrowType(env, "fileType(fd: number)");
  struct stat st;
  if (fstat(fd, &st) < 0) return Napi::Number::New(env, -errno);
  return Napi::Number::New(env, st.st_mode & S_IFMT);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (info.Length() < 1 || !ParseFd(info[0], &fd)) return ThrowType(env, "closeFd(fd: number)");
  // Linux releases the descriptor even when close reports EINTR or EIO: never retry.
  if (close(fd) < 0 && errno == EBADF) return ThrowErrno(env, "close", EBADF);
  return env.Undefined();
}

Napi::Value Position(Napi::Env env, off_t v) {
  if (static_cast<double>(v) <= kMaxSafeInteger) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, static_cast<int64_t>(v));
}

// ofdSetLock(fd, type, start, len): F_OFD_SETLK; 0 or -errno (-EAGAIN: a conflicting holder).
Napi::Value OfdSetLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LockArgs a;
  if (!ParseLockArgs(info, "ofdSetLock", true, &a)) return env.Undefined();
  struct flock fl = a.Flock();
  int rc = fcntl(a.fd, F_OFD_SETLK, &fl);
  return Napi::Number::New(env, rc == 0 ? 0 : -errno);
}

// ofdGetLock(fd, type, start, len): null when the lock could be placed, else the first
// conflicting holder { exclusive, start, len, pid } (pid -1: an OFD lock). Errors throw: with a
// valid fd and range F_OFD_GETLK does not fail.
Napi::Value OfdGetLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LockArgs a;
  if (!ParseLockArgs(info, "ofdGetLock", false, &a)) return env.Undefined();
  struct flock fl = a.Flock();
  if (fcntl(a.fd, F_OFD_GETLK, &fl) < 0) return ThrowErrno(env, "F_OFD_GETLK", errno);
  if (fl.l_type == F_UNLCK) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("exclusive", Napi::Boolean::New(env, fl.l_type == F_WRLCK));
  out.Set("start", Position(env, fl.l_start));
  out.Set("len", Position(env, fl.l_len));
  out.Set("pid", Napi::Number::New(env, fl.l_pid));
  return out;
}

// filesystemId(fd): what names the filesystem of fd as an NFS server's handles may carry it:
// { fsid: fstatfs's f_fsid as its 8 bytes in host order, devMajor, devMinor: fstat's st_dev }.
// Throws an errno error.
Napi::Value FilesystemId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (info.Length() < 1 || !ParseFd(info[0], &fd)) return ThrowType(env, "filesystemId(fd: number)");
  struct statfs sfs;
  if (fstatfs(fd, &sfs) < 0) return ThrowErrno(env, "fstatfs", errno);
  struct stat st;
  if (fstat(fd, &st) < 0) return ThrowErrno(env, "fstat", errno);
  Napi::Object out = Napi::Object::New(env);
  out.Set("fsid", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(&sfs.f_fsid), sizeof(sfs.f_fsid)));
  out.Set("devMajor", Napi::Number::New(env, major(st.st_dev)));
  out.Set("devMinor", Napi::Number::New(env, minor(st.st_dev)));
  return out;
}

Napi::Object Limit(Napi::Env env, const rlimit& rl) {
  auto num = [&](rlim_t v) { return v == RLIM_INFINITY ? Napi::Number::New(env, INFINITY) : Napi::Number::New(env, static_cast<double>(v)); };
  Napi::Object out = Napi::Object::New(env);
  out.Set("soft", num(rl.rlim_cur));
  out.Set("hard", num(rl.rlim_max));
  return out;
}

Napi::Value NofileLimit(const Napi::CallbackInfo& info) {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return ThrowErrno(info.Env(), "getrlimit(RLIMIT_NOFILE)", errno);
  return Limit(info.Env(), rl);
}

// raiseNofileLimit(): soft := hard (always allowed without privilege), then the limits as they are.
Napi::Value RaiseNofileLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return ThrowErrno(env, "getrlimit(RLIMIT_NOFILE)", errno);
  if (rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return ThrowErrno(env, "setrlimit(RLIMIT_NOFILE)", errno);
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return ThrowErrno(env, "getrlimit(RLIMIT_NOFILE)", errno);
  }
  return Limit(env, rl);
}

}  // namespace

bool ParseLockRange(const Napi::CallbackInfo& info, size_t first, bool allowUnlock, LockArgs* out) {
  double type = info.Length() > first && info[first].IsNumber() ? info[first].As<Napi::Number>().DoubleValue() : -1;
  if (info.Length() < first + 3 || !(type == 0 || type == 1 || (allowUnlock && type == 2)) || !ParsePosition(info[first + 1], &out->start) ||
      !ParsePosition(info[first + 2], &out->len))
    return false;
  out->type = type == 0 ? F_RDLCK : type == 1 ? F_WRLCK : F_UNLCK;
  return true;
}

bool ParseLockArgs(const Napi::CallbackInfo& info, const char* what, bool allowUnlock, LockArgs* out) {
  if (info.Length() < 1 || !ParseFd(info[0], &out->fd) || !ParseLockRange(info, 1, allowUnlock, out)) {
    ThrowType(info.Env(), std::string(what) + "(fd: number, type: " + (allowUnlock ? "0 | 1 | 2" : "0 | 1") +
                              ", start: non-negative integer, len: non-negative integer (0: to end of file))");
    return false;
  }
  return true;
}

void InitFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("nameToHandle", Napi::Function::New(env, NameToHandle, "nameToHandle"));
  exports.Set("openPath", Napi::Function::New(env, OpenPath, "openPath"));
  exports.Set("openByHandle", Napi::Function::New(env, OpenByHandle, "openByHandle"));
  exports.Set("openRegular", Napi::Function::New(env, OpenRegularFile, "openRegular"));
  exports.Set("openLock", Napi::Function::New(env, OpenLock, "openLock"));
  exports.Set("checkHandle", Napi::Function::New(env, CheckHandle, "checkHandle"));
  exports.Set("handleOwner", Napi::Function::New(env, HandleOwner, "handleOwner"));
  exports.Set("lockRefused", Napi::Number::New(env, kLockRefused));
  exports.Set("fileType", Napi::Function::New(env, FileType, "fileType"));
  exports.Set("filesystemId", Napi::Function::New(env, FilesystemId, "filesystemId"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("ofdSetLock", Napi::Function::New(env, OfdSetLock, "ofdSetLock"));
  exports.Set("ofdGetLock", Napi::Function::New(env, OfdGetLock, "ofdGetLock"));
  exports.Set("nofileLimit", Napi::Function::New(env, NofileLimit, "nofileLimit"));
  exports.Set("raiseNofileLimit", Napi::Function::New(env, RaiseNofileLimit, "raiseNofileLimit"));
}

}  // namespace lockdrop
