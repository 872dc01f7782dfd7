// sd_notify: one datagram to the service manager's notification socket. Node has no unix
// datagram sockets, so the addon sends it. The protocol is systemd's sd_notify(3): newline
// separated KEY=VALUE assignments in one datagram to an AF_UNIX socket named by $NOTIFY_SOCKET,
// a path or, with a leading '@', an abstract name.
#include "common.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace lockdrop {
namespace {

// sendNotify(socket, message): throws an errno error when the address is unusable or the send fails.
Napi::Value SendNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) return ThrowType(env, "sendNotify(socket: string, message: string)");
  std::string address = info[0].As<Napi::String>().Utf8Value();
  std::string message = info[1].As<Napi::String>().Utf8Value();
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (address.size() < 2 || (address[0] != '/' && address[0] != '@'))
    return ThrowErrno(env, "NOTIFY_SOCKET '" + address + "' is neither an absolute path nor an @abstract name", EAFNOSUPPORT);
  if (address.size() >= sizeof sa.sun_path) return ThrowErrno(env, "NOTIFY_SOCKET '" + address + "'", ENAMETOOLONG);
  memcpy(sa.sun_path, address.data(), address.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  if (address[0] == '@') sa.sun_path[0] = '\0';  // abstract: the name is exactly the bytes after the NUL
  else len += 1;                                 // a path: with its terminating NUL
  // Non-blocking: a manager that does not read must not stall the JS thread (EAGAIN is thrown).
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ThrowErrno(env, "notify socket", errno);
  ssize_t n = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), len);
  int err = errno;
  close(fd);
  if (n < 0) return ThrowErrno(env, "sd_notify to " + address, err);
  return env.Undefined();
}

}  // namespace

void InitNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("sendNotify", Napi::Function::New(env, SendNotify, "sendNotify"));
}

}  // namespace lockdrop
