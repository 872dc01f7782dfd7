// lockdrop's native addon: rtnetlink sockets, a small loader over libbpf, real files (handles,
// OFD locks and waits for them), sd_notify and the descriptor store, SO_PEERCRED and announcing an arriving address to the neighbours.
#include "common.h"

namespace lockdrop {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  CaptureLibbpfLog();
  InitRtnetlink(env, exports);
  InitBpfObject(env, exports);
  InitFeatures(env, exports);
  InitFiles(env, exports);
  InitOfdWait(env, exports);
  InitCloseBatch(env, exports);
  InitNotify(env, exports);
  InitFdStore(env, exports);
  InitPeerCred(env, exports);
  InitNeighbours(env, exports);
  return exports;
}

NODE_API_MODULE(lockdrop, Init)

}  // namespace lockdrop
