// Handing open file descriptions from one lockdropd to the next (a planned restart): systemd's
// file descriptor store (sd_notify FDSTORE=1 with the descriptors attached as SCM_RIGHTS, see
// sd_pid_notify_with_fds(3)), and the manager's side of that protocol for `lockdropctl restart`
// and tests (a unix datagram socket that receives notifications with descriptors), a memfd for
// the table's snapshot and FD_CLOEXEC on inherited descriptors. Errors are thrown as JS errors
// with errno; nothing here throws a C++ exception (the addon is built without them).
#include "common.h"

#include <stddef.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <vector>

namespace lockdrop {
namespace {

// SCM_RIGHTS carries at most SCM_MAX_FD (253) descriptors per message.
constexpr size_t kMaxFds = 253;

// A $NOTIFY_SOCKET-style address: an absolute path, or '@' for an abstract name. False (errno set) when unusable.
bool NotifyAddress(const std::string& address, sockaddr_un* sa, socklen_t* len) {
  *sa = sockaddr_un{};
  sa->sun_family = AF_UNIX;
  if (address.size() < 2 || (address[0] != '/' && address[0] != '@')) {
    errno = EAFNOSUPPORT;
    return false;
  }
  if (address.size() >= sizeof sa->sun_path) {
    errno = ENAMETOOLONG;
    return false;
  }
  memcpy(sa->sun_path, address.data(), address.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  if (address[0] == '@') sa->sun_path[0] = '\0';
  else *len += 1;
  return true;
}

// sendNotifyFds(socket, message, fds: Int32Array): one datagram with the descriptors attached.
// Blocking with a 5 s send timeout: at a hand-over the manager must take every descriptor, and
// one that does not read in time fails the hand-over (EAGAIN) instead of stalling it.
Napi::Value SendNotifyFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    return ThrowType(env, "sendNotifyFds(socket: string, message: string, fds: Int32Array)");
  std::string address = info[0].As<Napi::String>().Utf8Value();
  std::string message = info[1].As<Napi::String>().Utf8Value();
  Napi::Int32Array fds = info[2].As<Napi::Int32Array>();
  if (fds.ElementLength() > kMaxFds) return ThrowErrno(env, "sendNotifyFds: more than 253 descriptors in one message", EINVAL);
  sockaddr_un sa;
  socklen_t salen;
  if (!NotifyAddress(address, &sa, &salen)) return ThrowErrno(env, "NOTIFY_SOCKET '" + address + "'", errno);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, "notify socket", errno);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  iovec iov{const_cast<char*>(message.data()), message.size()};
  msghdr msg{};
  msg.msg_name = &sa;
  msg.msg_namelen = salen;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  size_t n = fds.ElementLength();
  if (n > 0) {
    control.assign(CMSG_SPACE(sizeof(int) * n), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    for (size_t i = 0; i < n; i++) {
      int v = fds[i];
      memcpy(CMSG_DATA(c) + i * sizeof(int), &v, sizeof(int));
    }
  }
  ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
  int err = errno;
  close(fd);
  if (sent < 0) return ThrowErrno(env, "sd_notify with descriptors to " + address, err);
  return env.Undefined();
}

// bindNotifySocket(path): a non-blocking unix datagram socket bound at the path (or '@abstract'),
// with SO_PASSCRED so the sender's pid comes with each message, as systemd's own socket.
Napi::Value BindNotifySocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "bindNotifySocket(path: string)");
  std::string address = info[0].As<Napi::String>().Utf8Value();
  sockaddr_un sa;
  socklen_t salen;
  if (!NotifyAddress(address, &sa, &salen)) return ThrowErrno(env, "notify socket '" + address + "'", errno);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ThrowErrno(env, "notify socket", errno);
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
  // Room for a hand-over's burst of messages (one per description) while the reader polls.
  int rcvbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) == 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), salen) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, "bind " + address, err);
  }
  return Napi::Number::New(env, fd);
}

// receiveNotify(fd): the next message, { message, fds, pid }, or null when none is queued. The
// descriptors arrive close-on-exec; a truncated message or control part is an error (its
// descriptors closed): a hand-over must never continue with some descriptors missing.
Napi::Value ReceiveNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock;
  if (info.Length() < 1 || !ParseFd(info[0], &sock)) return ThrowType(env, "receiveNotify(fd: number)");
  std::vector<char> buf(4096);
  std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFds) + CMSG_SPACE(sizeof(ucred)));
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    return ThrowErrno(env, "receive notification", errno);
  }
  std::vector<int> fds;
  int pid = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int v;
        memcpy(&v, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.push_back(v);
      }
    } else if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
      ucred cred;
      memcpy(&cred, CMSG_DATA(c), sizeof cred);
      pid = cred.pid;
    }
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    for (int v : fds) close(v);
    return ThrowErrno(env, "receive notification: message or descriptors cut off", EMSGSIZE);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("message", Napi::String::New(env, buf.data(), static_cast<size_t>(n)));
  Napi::Int32Array arr = Napi::Int32Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) arr[i] = fds[i];
  out.Set("fds", arr);
  out.Set("pid", Napi::Number::New(env, pid));
  return out;
}

// memfdCreate(name): an anonymous file (close-on-exec) for a snapshot handed over with the descriptions.
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "memfdCreate(name: string)");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "memfd_create", errno);
  return Napi::Number::New(env, fd);
}

// setCloexec(fd, on): inherited descriptors must not leak into the daemon's own children.
Napi::Value SetCloexec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (info.Length() < 2 || !ParseFd(info[0], &fd) || !info[1].IsBoolean()) return ThrowType(env, "setCloexec(fd: number, on: boolean)");
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return ThrowErrno(env, "F_GETFD", errno);
  int next = info[1].As<Napi::Boolean>().Value() ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (fcntl(fd, F_SETFD, next) < 0) return ThrowErrno(env, "F_SETFD", errno);
  return env.Undefined();
}

}  // namespace

void InitFdStore(Napi::Env env, Napi::Object exports) {
  exports.Set("sendNotifyFds", Napi::Function::New(env, SendNotifyFds, "sendNotifyFds"));
  exports.Set("bindNotifySocket", Napi::Function::New(env, BindNotifySocket, "bindNotifySocket"));
  exports.Set("receiveNotify", Napi::Function::New(env, ReceiveNotify, "receiveNotify"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexec, "setCloexec"));
}

}  // namespace lockdrop
