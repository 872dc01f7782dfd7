// lockdrop's native addon: rtnetlink sockets and a small loader over libbpf.
#include "common.h"

namespace lockdrop {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  CaptureLibbpfLog();
  InitRtnetlink(env, exports);
  InitBpfObject(env, exports);
  InitFeatures(env, exports);
  return exports;
}

NODE_API_MODULE(lockdrop, Init)

}  // namespace lockdrop
