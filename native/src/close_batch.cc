// Releasing many open file descriptions at once (a drop of a moved address's real-file locks).
//
// A drop must have every kernel lock released before it is acknowledged, and each description
// closed as soon as its owner holds nothing. close(2) of a description holding an OFD lock walks
// the inode's lock list twice (the flush's POSIX unlock finds nothing of an OFD owner, the final
// fput's removes the lock) and then frees the file: 1.4 µs here, against 1 µs for a whole-file
// F_OFD_SETLK F_UNLCK alone. So a large batch is done in two phases:
//   1. release: every description's locks are unlocked (whole file), by the calling thread and
//      the pool's workers together, each claiming one fd at a time. The call returns once every
//      unlock has been made; it never waits for a worker: a fd a worker claimed but has not
//      marked done (it may have been preempted) is unlocked again by the caller (an unlock of
//      nothing is a no-op), so a late or descheduled worker cannot stretch the drop.
//   2. close: the workers close the batch right after, off the caller's path; only once no
//      thread can still be unlocking one of its fds (a closed fd's number may be reused at once).
// The pool's threads are started once and kept (blocked on a condition variable when idle).
// closesPending() counts the fds handed over and not yet closed; awaitCloses() blocks until it
// is 0 (an export's unmount needs every file closed). Small batches, or no pool thread, are
// closed on the calling thread before the call returns.
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

namespace lockdrop {
namespace {

// Below this many fds a batch is closed in place: waking workers costs more than it saves.
constexpr size_t kMinBatch = 256;
constexpr size_t kMaxWorkers = 7;
constexpr size_t kStackSize = 64 * 1024;

enum : uint8_t { kClaimed = 0, kReleased = 1, kNotOpen = 2 };

struct Batch {
  explicit Batch(const int32_t* fds, size_t n) : fds(fds, fds + n), state(new std::atomic<uint8_t>[n]) {
    for (size_t i = 0; i < n; i++) state[i].store(kClaimed, std::memory_order_relaxed);
  }
  std::vector<int32_t> fds;
  std::unique_ptr<std::atomic<uint8_t>[]> state;
  std::atomic<size_t> nextRelease{0};
  std::atomic<size_t> nextClose{0};
  // Under the pool's mutex. Workers inside the release phase: the closes start once the caller
  // is done and none is left.
  size_t releasing = 0;
  bool callerDone = false;
  size_t closed = 0;
  std::atomic<size_t> notOpen{0};
  std::atomic<size_t> unlockFailed{0};
};

// Whole-file F_OFD_SETLK F_UNLCK of fds[i], recorded once (the caller may redo a worker's claim).
void Release(Batch& b, size_t i) {
  struct flock fl{};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  int rc = fcntl(b.fds[i], F_OFD_SETLK, &fl);
  int err = rc < 0 ? errno : 0;
  uint8_t want = err == EBADF ? kNotOpen : kReleased;
  uint8_t expected = kClaimed;
  if (!b.state[i].compare_exchange_strong(expected, want)) return;
  if (err == EBADF) b.notOpen++;
  else if (err != 0) b.unlockFailed++;
}

class Pool {
 public:
  static Pool& Get() {
    // Never destroyed: workers may still wait on its condition variable at exit.
    static Pool* p = new Pool;
    return *p;
  }

  // Starts workers up to `want` (kept for later batches); how many there are.
  size_t Ensure(size_t want) {
    std::lock_guard<std::mutex> g(mu_);
    want = std::min(want, kMaxWorkers);
    while (workers_ < want) {
      pthread_attr_t attr;
      if (pthread_attr_init(&attr) != 0) break;
      pthread_attr_setstacksize(&attr, kStackSize);
      // Started with every signal blocked: the process's signals go to the threads that handle them.
      sigset_t all, old;
      sigfillset(&all);
      pthread_sigmask(SIG_SETMASK, &all, &old);
      pthread_t tid;
      bool ok = pthread_create(&tid, &attr, [](void*) -> void* {
        pthread_setname_np(pthread_self(), "lockdrop-close");
        Get().Work();
        return nullptr;
      }, nullptr) == 0;
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      pthread_attr_destroy(&attr);
      if (!ok) break;
      pthread_detach(tid);
      workers_++;
    }
    return workers_;
  }

  // Phase 1 on the calling thread with the workers' help; returns with every lock released.
  // Returns whether the batch was handed over (false: unlocks failed, the caller must wait).
  bool Release(const std::shared_ptr<Batch>& b) {
    {
      std::lock_guard<std::mutex> g(mu_);
      queue_.push_back(b);
      pending_ += b->fds.size();
    }
    cv_.notify_all();
    size_t n = b->fds.size();
    for (size_t i; (i = b->nextRelease.fetch_add(1)) < n;) lockdrop::Release(*b, i);
    // Claimed by a worker and not marked done yet: unlock it here rather than wait.
    for (size_t i = 0; i < n; i++)
      if (b->state[i].load(std::memory_order_acquire) == kClaimed) lockdrop::Release(*b, i);
    {
      std::lock_guard<std::mutex> g(mu_);
      b->callerDone = true;
    }
    cv_.notify_all();
    return b->unlockFailed.load() == 0;
  }

  size_t Pending() {
    std::lock_guard<std::mutex> g(mu_);
    return pending_;
  }

  void AwaitCloses() {
    std::unique_lock<std::mutex> g(mu_);
    idle_.wait(g, [this] { return pending_ == 0; });
  }

 private:
  void Work() {
    std::unique_lock<std::mutex> g(mu_);
    for (;;) {
      cv_.wait(g, [this] { return !queue_.empty(); });
      std::shared_ptr<Batch> b = queue_.front();
      b->releasing++;
      g.unlock();
      size_t n = b->fds.size();
      for (size_t i; (i = b->nextRelease.fetch_add(1)) < n;) lockdrop::Release(*b, i);
      g.lock();
      // Nobody may still unlock a fd of the batch once closes begin: its number may be reused.
      if (--b->releasing == 0 && b->callerDone) cv_.notify_all();
      cv_.wait(g, [&b] { return b->callerDone && b->releasing == 0; });
      if (!queue_.empty() && queue_.front() == b) queue_.pop_front();
      g.unlock();
      size_t mine = 0;
      for (size_t i; (i = b->nextClose.fetch_add(1)) < n; mine++)
        if (b->state[i].load(std::memory_order_acquire) != kNotOpen) close(b->fds[i]);  // Linux frees the fd even on EINTR/EIO
      g.lock();
      b->closed += mine;
      if (mine != 0 && b->closed == n) {
        pending_ -= n;
        if (pending_ == 0) idle_.notify_all();
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_;
  std::deque<std::shared_ptr<Batch>> queue_;
  size_t workers_ = 0;
  size_t pending_ = 0;
};

// releaseFds(fds: Int32Array, threads): when it returns, no fd of the batch holds an OFD lock;
// they are closed on the pool's threads right after (closesPending/awaitCloses), or before it
// returns for a small batch, when `threads` is 1 or no pool thread can start. Returns how many
// were not open fds (EBADF: a caller's bug; those are not closed).
Napi::Value ReleaseFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !info[1].IsNumber())
    return ThrowType(env, "releaseFds(fds: Int32Array, threads: number)");
  Napi::Int32Array arr = info[0].As<Napi::Int32Array>();
  const int32_t* fds = arr.Data();
  size_t n = arr.ElementLength();
  double want = info[1].As<Napi::Number>().DoubleValue();
  size_t workers = want >= 2 ? static_cast<size_t>(std::min<double>(want - 1, kMaxWorkers)) : 0;
  if (n < kMinBatch || workers == 0 || Pool::Get().Ensure(workers) == 0) {
    size_t notOpen = 0;
    for (size_t i = 0; i < n; i++)
      if (close(fds[i]) < 0 && errno == EBADF) notOpen++;
    return Napi::Number::New(env, static_cast<double>(notOpen));
  }
  auto b = std::make_shared<Batch>(fds, n);
  // An unlock that failed (not EBADF) leaves a lock only its close releases: wait for them.
  if (!Pool::Get().Release(b)) Pool::Get().AwaitCloses();
  return Napi::Number::New(env, static_cast<double>(b->notOpen.load()));
}

Napi::Value ClosesPending(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Pool::Get().Pending()));
}

Napi::Value AwaitCloses(const Napi::CallbackInfo& info) {
  Pool::Get().AwaitCloses();
  return info.Env().Undefined();
}

}  // namespace

void InitCloseBatch(Napi::Env env, Napi::Object exports) {
  exports.Set("releaseFds", Napi::Function::New(env, ReleaseFds, "releaseFds"));
  exports.Set("closesPending", Napi::Function::New(env, ClosesPending, "closesPending"));
  exports.Set("awaitCloses", Napi::Function::New(env, AwaitCloses, "awaitCloses"));
}

}  // namespace lockdrop
