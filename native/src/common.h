// Shared helpers of the lockdrop addon. Error policy: explicit returns. The addon is built
// without C++ exceptions; every failure becomes a JS Error thrown by the calling method or an
// error argument passed to a callback, never an abort.
#pragma once
#include <napi.h>
#include <uv.h>
#include <fcntl.h>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

namespace lockdrop {

inline std::string ErrnoText(int err) {
  return std::string(strerrorname_np(err) ? strerrorname_np(err) : "E?") + ": " + strerror(err);
}

inline Napi::Value ThrowErrno(Napi::Env env, const std::string& what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + ErrnoText(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, strerrorname_np(err) ? strerrorname_np(err) : "E?"));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// A file descriptor argument: a non-negative integer that fits an int.
inline bool ParseFd(const Napi::Value& v, int* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647.0) || std::floor(d) != d) return false;
  *out = static_cast<int>(d);
  return true;
}

inline Napi::Value ThrowType(Napi::Env env, const std::string& what) {
  Napi::TypeError::New(env, what).ThrowAsJavaScriptException();
  return env.Undefined();
}

// Calls a JS callback from a libuv callback: a fresh handle scope, MakeCallback so that
// process.nextTick and promise jobs run afterwards, and an exception thrown by the callback is
// handed to Node's uncaught-exception machinery instead of being left pending. Raw N-API calls,
// so that a loop turn during environment teardown (CleanupHandles runs the loop once more, JS
// may no longer run) drops the call instead of aborting in node-addon-api's error path.
inline void CallFromLoop(Napi::Env env, Napi::FunctionReference& fn, Napi::AsyncContext& ctx,
                         const std::initializer_list<napi_value>& args) {
  if (fn.IsEmpty()) return;
  napi_value recv = nullptr, callee = nullptr, result = nullptr;
  if (napi_create_object(env, &recv) != napi_ok || napi_get_reference_value(env, fn, &callee) != napi_ok || callee == nullptr) return;
  if (napi_make_callback(env, ctx, recv, callee, args.size(), args.begin(), &result) == napi_ok) return;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value err = nullptr;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
  }
}

// A uv_poll_t whose owner may be gone before libuv finishes closing it: the handle is heap
// allocated and freed in its close callback.
inline void ClosePoll(uv_poll_t* poll) {
  if (poll == nullptr) return;
  uv_poll_stop(poll);
  uv_close(reinterpret_cast<uv_handle_t*>(poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
}

// The arguments (fd, type, start, len) of the OFD lock calls: type 0 read, 1 write, 2 unlock
// (only where allowUnlock); start and len non-negative integers as number (exact to 2^53) or
// bigint; len 0 reaches to the end of the file, as in struct flock. Throws a TypeError and
// returns false when they are not that.
struct LockArgs {
  int fd = -1;
  short type = F_UNLCK;
  off_t start = 0;
  off_t len = 0;
  struct flock Flock() const {
    struct flock fl{};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    fl.l_pid = 0;  // F_OFD_* require 0
    return fl;
  }
};
bool ParseLockArgs(const Napi::CallbackInfo& info, const char* what, bool allowUnlock, LockArgs* out);
// (type, start, len) from info[first...] into out, without throwing: false when they are not that.
bool ParseLockRange(const Napi::CallbackInfo& info, size_t first, bool allowUnlock, LockArgs* out);

void InitRtnetlink(Napi::Env env, Napi::Object exports);
void InitFiles(Napi::Env env, Napi::Object exports);
void InitOfdWait(Napi::Env env, Napi::Object exports);
void InitCloseBatch(Napi::Env env, Napi::Object exports);
void InitNotify(Napi::Env env, Napi::Object exports);
void InitFdStore(Napi::Env env, Napi::Object exports);
void InitPeerCred(Napi::Env env, Napi::Object exports);
void InitNeighbours(Napi::Env env, Napi::Object exports);
void InitBpfObject(Napi::Env env, Napi::Object exports);
void InitFeatures(Napi::Env env, Napi::Object exports);
void CaptureLibbpfLog();
std::string TakeLibbpfLog();

}  // namespace lockdrop
