// Shared helpers of the lockdrop addon. Error policy: explicit returns. The addon is built
// without C++ exceptions; every failure becomes a JS Error thrown by the calling method or an
// error argument passed to a callback, never an abort.
#pragma once
#include <napi.h>
#include <uv.h>
#include <cerrno>
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

inline Napi::Value ThrowType(Napi::Env env, const std::string& what) {
  Napi::TypeError::New(env, what).ThrowAsJavaScriptException();
  return env.Undefined();
}

// Calls a JS callback from a libuv callback: a fresh handle scope, MakeCallback so that
// process.nextTick and promise jobs run afterwards, and an exception thrown by the callback is
// handed to Node's uncaught-exception machinery instead of being left pending.
inline void CallFromLoop(Napi::Env env, Napi::FunctionReference& fn, Napi::AsyncContext& ctx,
                         const std::initializer_list<napi_value>& args) {
  if (fn.IsEmpty()) return;
  fn.MakeCallback(Napi::Object::New(env), args, ctx);
  if (env.IsExceptionPending()) {
    Napi::Error err = env.GetAndClearPendingException();
    napi_fatal_exception(env, err.Value());
  }
}

// A uv_poll_t whose owner may be gone before libuv finishes closing it: the handle is heap
// allocated and freed in its close callback.
inline void ClosePoll(uv_poll_t* poll) {
  if (poll == nullptr) return;
  uv_poll_stop(poll);
  uv_close(reinterpret_cast<uv_handle_t*>(poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
}

void InitRtnetlink(Napi::Env env, Napi::Object exports);
void InitBpfObject(Napi::Env env, Napi::Object exports);
void InitFeatures(Napi::Env env, Napi::Object exports);
void CaptureLibbpfLog();
std::string TakeLibbpfLog();

}  // namespace lockdrop
