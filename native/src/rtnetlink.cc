// The rtnetlink sockets: one bound to multicast groups (address and link changes), read without
// blocking from the libuv loop; and one-shot dump sockets (request in, reply datagrams out).
// Netlink messages are not parsed here: only the header type is looked at, to know when a dump
// has ended. Parsing is TypeScript's job (src/watch).
#include "common.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace lockdrop {
namespace {

constexpr size_t kDatagramMax = 64 * 1024;   // rtnetlink datagrams are at most a few pages
constexpr int kDatagramsPerWake = 256;       // then yield to the loop; the level-triggered poll calls again
constexpr int kDumpRcvbuf = 1 << 20;

int OpenRoute(uint32_t groups, int rcvbuf, int* err) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) { *err = errno; return -1; }
  // FORCE passes over rmem_max (needs CAP_NET_ADMIN); without it the kernel caps SO_RCVBUF.
  if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0) {
    *err = errno; close(fd); return -1;
  }
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = groups;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) { *err = errno; close(fd); return -1; }
  return fd;
}

class RtnetlinkSocket : public Napi::ObjectWrap<RtnetlinkSocket> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("RtnetlinkSocket", DefineClass(env, "RtnetlinkSocket", {
      InstanceMethod<&RtnetlinkSocket::Start>("start"),
      InstanceMethod<&RtnetlinkSocket::Stop>("stop"),
      InstanceMethod<&RtnetlinkSocket::Close>("close"),
      InstanceMethod<&RtnetlinkSocket::ReceiveBufferSize>("receiveBufferSize"),
    }));
  }

  // new RtnetlinkSocket(groups, rcvbuf, onItems): onItems(items) gets, in arrival order, a Buffer
  // per datagram and a string per loss (ENOBUFS, poll error).
  explicit RtnetlinkSocket(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<RtnetlinkSocket>(info), ctx_(info.Env(), "lockdrop:rtnetlink") {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsFunction()) {
      ThrowType(env, "RtnetlinkSocket(groups: number, rcvbuf: number, onItems: function)");
      return;
    }
    int err = 0;
    fd_ = OpenRoute(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Int32Value(), &err);
    if (fd_ < 0) { ThrowErrno(env, "rtnetlink socket", err); return; }
    onItems_ = Napi::Persistent(info[2].As<Napi::Function>());
    buf_.resize(kDatagramMax);
    env_ = env;
    napi_add_env_cleanup_hook(env, [](void* self) { static_cast<RtnetlinkSocket*>(self)->Shutdown(); }, this);
    Ref();  // stays alive while open, even if JS drops it: close() releases it
  }

  ~RtnetlinkSocket() override { Shutdown(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (fd_ < 0) return ThrowErrno(info.Env(), "rtnetlink start", EBADF);
    if (poll_ == nullptr) {
      poll_ = new uv_poll_t;
      uv_loop_t* loop = nullptr;
      napi_get_uv_event_loop(info.Env(), &loop);
      int rc = uv_poll_init(loop, poll_, fd_);
      if (rc < 0) { delete poll_; poll_ = nullptr; return ThrowErrno(info.Env(), "uv_poll_init", -rc); }
      poll_->data = this;
    }
    int rc = uv_poll_start(poll_, UV_READABLE, [](uv_poll_t* h, int status, int) {
      if (h->data != nullptr) static_cast<RtnetlinkSocket*>(h->data)->OnReadable(status);
    });
    if (rc < 0) return ThrowErrno(info.Env(), "uv_poll_start", -rc);
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) uv_poll_stop(poll_);
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    bool wasOpen = fd_ >= 0;
    Shutdown();
    if (wasOpen) Unref();
    return info.Env().Undefined();
  }

  Napi::Value ReceiveBufferSize(const Napi::CallbackInfo& info) {
    int size = 0;
    socklen_t len = sizeof size;
    if (fd_ < 0 || getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, &len) < 0) return ThrowErrno(info.Env(), "SO_RCVBUF", fd_ < 0 ? EBADF : errno);
    return Napi::Number::New(info.Env(), size);
  }

  void Shutdown() {
    if (fd_ < 0) return;
    napi_remove_env_cleanup_hook(env_, [](void* self) { static_cast<RtnetlinkSocket*>(self)->Shutdown(); }, this);
    if (poll_ != nullptr) { poll_->data = nullptr; ClosePoll(poll_); poll_ = nullptr; }
    close(fd_);
    fd_ = -1;
  }

  void OnReadable(int status) {
    Napi::Env env = env_;
    Napi::HandleScope scope(env);
    std::vector<napi_value> items;
    bool lost = false;
    for (int i = 0; i < kDatagramsPerWake && fd_ >= 0; i++) {
      ssize_t n = recv(fd_, buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        // ENOBUFS: the kernel dropped multicast messages; the socket itself keeps working.
        lost = true;
        items.push_back(Napi::String::New(env, ErrnoText(errno)));
        if (errno != ENOBUFS) break;
        continue;
      }
      if (static_cast<size_t>(n) > buf_.size()) {
        items.push_back(Napi::String::New(env, "datagram truncated (" + std::to_string(n) + " bytes)"));
        continue;
      }
      items.push_back(Napi::Buffer<uint8_t>::Copy(env, buf_.data(), static_cast<size_t>(n)));
    }
    if (status < 0 && fd_ >= 0) {
      // libuv reports the socket error (ENOBUFS raises POLLERR) as UV_EBADF and stops the
      // handle: the recv above consumed the error; report it if it did not, and poll again.
      if (!lost) items.push_back(Napi::String::New(env, std::string("poll error: ") + uv_strerror(status)));
      uv_poll_start(poll_, UV_READABLE, [](uv_poll_t* h, int st, int) {
        if (h->data != nullptr) static_cast<RtnetlinkSocket*>(h->data)->OnReadable(st);
      });
    }
    if (items.empty()) return;
    Napi::Array arr = Napi::Array::New(env, items.size());
    for (size_t i = 0; i < items.size(); i++) arr.Set(static_cast<uint32_t>(i), items[i]);
    CallFromLoop(env, onItems_, ctx_, {arr});
  }

  napi_env env_ = nullptr;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  std::vector<uint8_t> buf_;
  Napi::FunctionReference onItems_;
  Napi::AsyncContext ctx_;
};

// One dump: its own socket, the request sent at once, replies collected as the loop reports them,
// then done(error, datagrams) and everything closed.
class Dump {
 public:
  static Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsFunction())
      return ThrowType(env, "rtnetlinkDump(request: Buffer, done: function)");
    Napi::Buffer<uint8_t> req = info[0].As<Napi::Buffer<uint8_t>>();
    if (req.Length() < sizeof(nlmsghdr)) return ThrowType(env, "rtnetlinkDump: request shorter than a netlink header");
    int err = 0;
    int fd = OpenRoute(0, kDumpRcvbuf, &err);
    if (fd < 0) return ThrowErrno(env, "rtnetlink dump socket", err);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd, req.Data(), req.Length(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
      err = errno; close(fd);
      return ThrowErrno(env, "rtnetlink dump send", err);
    }
    Dump* d = new Dump(env, fd, info[1].As<Napi::Function>());
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    d->poll_ = new uv_poll_t;
    int rc = uv_poll_init(loop, d->poll_, fd);
    if (rc < 0) { delete d->poll_; d->poll_ = nullptr; delete d; return ThrowErrno(env, "uv_poll_init", -rc); }
    d->poll_->data = d;
    uv_poll_start(d->poll_, UV_READABLE, [](uv_poll_t* h, int status, int) { static_cast<Dump*>(h->data)->OnReadable(status); });
    return env.Undefined();
  }

 private:
  Dump(Napi::Env env, int fd, Napi::Function done)
      : env_(env), fd_(fd), done_(Napi::Persistent(done)), ctx_(env, "lockdrop:rtnetlink-dump") { buf_.resize(kDatagramMax); }
  ~Dump() { ClosePoll(poll_); close(fd_); }

  void OnReadable(int status) {
    if (status < 0) return Finish(std::string("poll error: ") + uv_strerror(status));
    for (;;) {
      ssize_t n = recv(fd_, buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        return Finish("rtnetlink dump recv: " + ErrnoText(errno));
      }
      if (static_cast<size_t>(n) > buf_.size()) return Finish("rtnetlink dump: datagram truncated");
      replies_.emplace_back(buf_.begin(), buf_.begin() + n);
      if (Ends(buf_.data(), static_cast<size_t>(n))) return Finish("");
    }
  }

  // The dump is over at NLMSG_DONE or NLMSG_ERROR, or after a reply that is not part of a multipart answer.
  static bool Ends(const uint8_t* p, size_t len) {
    size_t off = 0;
    while (off + sizeof(nlmsghdr) <= len) {
      nlmsghdr h;
      memcpy(&h, p + off, sizeof h);
      if (h.nlmsg_type == NLMSG_DONE || h.nlmsg_type == NLMSG_ERROR || !(h.nlmsg_flags & NLM_F_MULTI)) return true;
      if (h.nlmsg_len < sizeof(nlmsghdr)) return true;  // malformed: stop rather than spin
      off += NLMSG_ALIGN(h.nlmsg_len);
    }
    return false;
  }

  void Finish(const std::string& error) {
    Napi::Env env = env_;
    {
      Napi::HandleScope scope(env);
      Napi::Array arr = Napi::Array::New(env, replies_.size());
      for (size_t i = 0; i < replies_.size(); i++)
        arr.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, replies_[i].data(), replies_[i].size()));
      napi_value err = error.empty() ? env.Null() : Napi::Error::New(env, error).Value();
      uv_poll_stop(poll_);
      CallFromLoop(env, done_, ctx_, {err, arr});
    }
    delete this;
  }

  Napi::Env env_;
  int fd_;
  uv_poll_t* poll_ = nullptr;
  std::vector<uint8_t> buf_;
  std::vector<std::vector<uint8_t>> replies_;
  Napi::FunctionReference done_;
  Napi::AsyncContext ctx_;
};

}  // namespace

void InitRtnetlink(Napi::Env env, Napi::Object exports) {
  RtnetlinkSocket::Init(env, exports);
  exports.Set("rtnetlinkDump", Napi::Function::New(env, Dump::Start, "rtnetlinkDump"));
  Napi::Object groups = Napi::Object::New(env);
  groups.Set("link", Napi::Number::New(env, RTMGRP_LINK));
  groups.Set("ipv4Ifaddr", Napi::Number::New(env, RTMGRP_IPV4_IFADDR));
  groups.Set("ipv6Ifaddr", Napi::Number::New(env, RTMGRP_IPV6_IFADDR));
  exports.Set("rtnetlinkGroups", groups);
}

}  // namespace lockdrop
