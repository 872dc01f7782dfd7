// SO_PEERCRED: who is on the other end of a connected unix socket. The kernel records the
// connecting process's pid and effective uid/gid at connect() time and translates them into the
// caller's namespaces (a peer in a PID namespace we cannot see has pid 0; a uid with no mapping
// in our user namespace is the overflow uid, 65534). Node's net.Socket exposes the fd, not this.
#include "common.h"

#include <sys/socket.h>
#include <sys/types.h>

namespace lockdrop {
namespace {

// peerCredentials(fd): { pid, uid, gid } of the peer of the connected AF_UNIX socket `fd`.
// Throws an errno error: EBADF, ENOTSOCK, EAFNOSUPPORT (not a unix socket), ENOTCONN (a
// socket that never connected nor listened: the kernel holds no credentials, uid -1).
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (info.Length() < 1 || !ParseFd(info[0], &fd)) return ThrowType(env, "peerCredentials(fd: non-negative integer)");
  const std::string what = "SO_PEERCRED of fd " + std::to_string(fd);
  int domain = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) return ThrowErrno(env, what, errno);
  if (domain != AF_UNIX) return ThrowErrno(env, what + " (address family " + std::to_string(domain) + ", not AF_UNIX)", EAFNOSUPPORT);
  ucred cred{};
  len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return ThrowErrno(env, what, errno);
  if (len != sizeof cred) return ThrowErrno(env, what + " (short answer)", EPROTO);
  if (cred.uid == static_cast<uid_t>(-1)) return ThrowErrno(env, what + " (no peer: never connected)", ENOTCONN);
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

}  // namespace

void InitPeerCred(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
}

}  // namespace lockdrop
