// Closing many open file descriptions at once (a drop of a moved address's real-file locks). Each
// close(2) of a description that holds OFD locks releases them in the kernel, walking the inode's
// lock list twice (the flush's POSIX unlock, then the final fput's); for 10k descriptions that is
// most of the drop. The fds are split over a few threads, each closing its slice (the final fput
// runs on the closing thread, on its return from the syscall), and every thread is joined before
// the call returns: when it returns, every lock is released, so the drop can be acknowledged.
#include "common.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace lockdrop {
namespace {

// Below this many fds per thread, starting a thread (tens of µs) costs more than it saves.
constexpr size_t kMinPerThread = 256;
constexpr size_t kMaxThreads = 8;
constexpr size_t kStackSize = 64 * 1024;

struct Slice {
  const int32_t* fds = nullptr;
  size_t n = 0;
  size_t notOpen = 0;  // EBADF: not an open fd (a caller's bug)
};

void CloseSlice(Slice* s) {
  // Linux frees the descriptor even when close reports EINTR or EIO: never retry.
  for (size_t i = 0; i < s->n; i++)
    if (close(s->fds[i]) < 0 && errno == EBADF) s->notOpen++;
}

void* Run(void* p) {
  CloseSlice(static_cast<Slice*>(p));
  return nullptr;
}

// closeFds(fds: Int32Array, threads): closes every fd, on up to `threads` threads (this one
// included; fewer when there are few fds, or a thread cannot start: its slice is closed here).
// Returns how many were not open fds.
Napi::Value CloseFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !info[1].IsNumber())
    return ThrowType(env, "closeFds(fds: Int32Array, threads: number)");
  Napi::Int32Array arr = info[0].As<Napi::Int32Array>();
  const int32_t* fds = arr.Data();
  size_t n = arr.ElementLength();
  double want = info[1].As<Napi::Number>().DoubleValue();
  size_t threads = want >= 1 ? std::min(kMaxThreads, static_cast<size_t>(want)) : 1;
  threads = std::max<size_t>(1, std::min(threads, n / kMinPerThread));
  std::vector<Slice> slices(threads);
  for (size_t i = 0, at = 0; i < threads; i++) {
    size_t len = n / threads + (i < n % threads ? 1 : 0);
    slices[i].fds = fds + at;
    slices[i].n = len;
    at += len;
  }
  std::vector<pthread_t> tids(threads);
  std::vector<bool> started(threads, false);
  pthread_attr_t attr;
  bool attrOk = threads > 1 && pthread_attr_init(&attr) == 0;
  if (attrOk) {
    pthread_attr_setstacksize(&attr, kStackSize);
    for (size_t i = 1; i < threads; i++) started[i] = pthread_create(&tids[i], &attr, Run, &slices[i]) == 0;
    pthread_attr_destroy(&attr);
  }
  CloseSlice(&slices[0]);
  size_t notOpen = slices[0].notOpen;
  for (size_t i = 1; i < threads; i++) {
    if (started[i]) pthread_join(tids[i], nullptr);
    else CloseSlice(&slices[i]);
    notOpen += slices[i].notOpen;
  }
  return Napi::Number::New(env, static_cast<double>(notOpen));
}

}  // namespace

void InitCloseBatch(Napi::Env env, Napi::Object exports) {
  exports.Set("closeFds", Napi::Function::New(env, CloseFds, "closeFds"));
}

}  // namespace lockdrop
