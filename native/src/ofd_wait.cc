// Waiting for an OFD lock someone else holds: F_OFD_SETLKW on threads the addon owns (not
// libuv's pool, which fs needs), at most `size` at once, one thread per wait; done(result) is
// called on the JS thread through one uv_async.
//
// Cancellation. A blocked F_OFD_SETLKW ends with EINTR when a signal handler runs on its thread
// (the handler is installed without SA_RESTART). One signal is not enough: the worker may be
// between its last look at `cancelled` and the syscall when it arrives, and the wake is lost.
// So a cancel arms a per-wait POSIX timer aimed at the worker thread (SIGEV_THREAD_ID) that fires
// at once and then every kResendNs until the worker itself deletes it, after it has left the wait
// for good. Arming (JS thread) and deleting (worker) happen under the wait's own mutex, so a timer
// is never armed after it is gone; resources are taken when the wait starts, so a cancel cannot
// fail. (One mutex per wait, not the pool's: cancelling 1000 waits must not have every woken
// worker queue on the lock the canceller holds while their timers keep firing.)
//
// Results: fcntl's own answer wins. A wait that acquired the lock as the cancel came reports 0
// (the caller holds the lock and must undo it); EINTR after a cancel reports -ECANCELED; EINTR
// without one (a stray wake) waits again. Linux's waiters acquire in their own context, so EINTR
// means nothing was acquired.
//
// The worker waits on its own dup of the caller's fd: the same open file description (OFD locks
// belong to it), but its own reference, so closing the caller's fd while a wait is pending is
// safe: the wait goes on, and if it acquires, the lock dies with the description when the worker
// closes the dup (nothing else refers to it). done still reports 0 then. Cancel first.
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace lockdrop {
namespace {

constexpr size_t kStackSize = 128 * 1024;
constexpr long kResendNs = 5 * 1000 * 1000;  // only matters when the first wake was lost
constexpr double kMaxPoolSize = 16384;
constexpr size_t kDefaultPoolSize = 64;

void OnWake(int) {}

// The real-time signal that interrupts waits: the highest one nobody in the process handles,
// chosen once (process wide: every Node environment shares it). 0 when none is free.
int WakeSignal() {
  static int sig = [] {
    for (int s = SIGRTMAX; s > SIGRTMIN + 2; s--) {
      struct sigaction old{};
      if (sigaction(s, nullptr, &old) < 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) continue;
      struct sigaction sa{};
      sa.sa_handler = OnWake;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = 0;  // no SA_RESTART: the interrupted fcntl must return EINTR
      if (sigaction(s, &sa, nullptr) == 0) return s;
    }
    return 0;
  }();
  return sig;
}

class Pool;

struct Wait {
  uint64_t id = 0;
  int fd = -1;  // the worker's dup of the caller's fd
  struct flock fl {};
  Pool* pool = nullptr;
  pthread_t thread{};
  Napi::FunctionReference done;  // JS thread only
  std::mutex mu;                 // guards the fields below
  bool cancelled = false;
  bool hasTimer = false;
  bool armed = false;
  timer_t timer{};
  int result = 0;  // set by the worker before it queues the wait as completed
};

class Pool {
 public:
  explicit Pool(Napi::Env env) : env_(env), ctx_(env, "lockdrop:ofdWait") {
    napi_add_env_cleanup_hook(env, [](void* self) { static_cast<Pool*>(self)->Shutdown(); }, this);
  }

  // ofdWait(fd, type, start, len, done): id > 0, or -errno (-EBUSY: every thread is busy).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LockArgs a;
    if (!ParseLockArgs(info, "ofdWait", false, &a)) return env.Undefined();
    if (info.Length() < 5 || !info[4].IsFunction()) return ThrowType(env, "ofdWait(fd, type, start, len, done: (result: number) => void)");
    int sig = WakeSignal();
    if (sig == 0) return ThrowErrno(env, "ofdWait: no free real-time signal to interrupt waits with", EAGAIN);
    if (!EnsureAsync()) return ThrowErrno(env, "ofdWait: uv_async_init", EINVAL);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (active_ >= size_) return Napi::Number::New(env, -EBUSY);
      active_++;
    }
    auto w = std::make_unique<Wait>();
    w->id = nextId_++;
    w->fl = a.Flock();
    w->pool = this;
    w->fd = fcntl(a.fd, F_DUPFD_CLOEXEC, 0);
    int rc = w->fd < 0 ? errno : 0;
    if (rc == 0) {
      // Workers start with every signal blocked (process signals stay with Node's threads) and
      // unblock only the wake signal.
      sigset_t all, old;
      sigfillset(&all);
      pthread_sigmask(SIG_SETMASK, &all, &old);
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, kStackSize);
      rc = pthread_create(&w->thread, &attr, Run, w.get());
      pthread_attr_destroy(&attr);
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      if (rc != 0) close(w->fd);
    }
    if (rc != 0) {
      std::lock_guard<std::mutex> lock(mu_);
      active_--;
      return Napi::Number::New(env, -rc);
    }
    w->done = Napi::Persistent(info[4].As<Napi::Function>());
    uint64_t id = w->id;
    waits_.emplace(id, std::move(w));
    return Napi::Number::New(env, static_cast<double>(id));
  }

  // ofdCancelWait(id): true when done(id) is still to come (then with 0 or -ECANCELED).
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(env, "ofdCancelWait(id: number)");
    double d = info[0].As<Napi::Number>().DoubleValue();
    if (!(d >= 1) || std::floor(d) != d) return Napi::Boolean::New(env, false);
    auto it = waits_.find(static_cast<uint64_t>(d));
    if (it == waits_.end()) return Napi::Boolean::New(env, false);
    CancelOne(it->second.get());
    return Napi::Boolean::New(env, true);
  }

  // ofdCancelAll(): cancels every pending wait; their done callbacks still come. The count.
  Napi::Value CancelAll(const Napi::CallbackInfo& info) {
    for (auto& [id, w] : waits_) CancelOne(w.get());
    return Napi::Number::New(info.Env(), static_cast<double>(waits_.size()));
  }

  // setWaitPoolSize(n): at most n waits at once from now on; running waits are not affected.
  Napi::Value SetSize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    if (!(n >= 1 && n <= kMaxPoolSize) || std::floor(n) != n) return ThrowType(env, "setWaitPoolSize(n: integer 1.." + std::to_string(static_cast<int>(kMaxPoolSize)) + ")");
    std::lock_guard<std::mutex> lock(mu_);
    size_ = static_cast<size_t>(n);
    return env.Undefined();
  }

  // waitPoolStats(): { size, busy: waits still in fcntl or starting, pending: done not yet called }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    std::lock_guard<std::mutex> lock(mu_);
    out.Set("size", Napi::Number::New(env, static_cast<double>(size_)));
    out.Set("busy", Napi::Number::New(env, static_cast<double>(active_)));
    out.Set("pending", Napi::Number::New(env, static_cast<double>(waits_.size())));
    return out;
  }

 private:
  static void CancelOne(Wait* w) {
    std::lock_guard<std::mutex> lock(w->mu);
    CancelLocked(w);
  }

  static void CancelLocked(Wait* w) {
    w->cancelled = true;
    if (w->hasTimer && !w->armed) {
      struct itimerspec its{};
      its.it_value.tv_nsec = 1;
      its.it_interval.tv_nsec = kResendNs;
      if (timer_settime(w->timer, 0, &its, nullptr) == 0) w->armed = true;
    }
  }

  static void* Run(void* arg) {
    Wait* w = static_cast<Wait*>(arg);
    Pool* p = w->pool;
    int result = Work(w);
    close(w->fd);
    w->result = result;
    {
      std::lock_guard<std::mutex> lock(p->mu_);
      p->active_--;
      p->completed_.push_back(w);
    }
    uv_async_send(p->async_);
    return nullptr;
  }

  static int Work(Wait* w) {
    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, WakeSignal());
    pthread_sigmask(SIG_UNBLOCK, &wake, nullptr);
    struct sigevent sev{};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = WakeSignal();
    sev._sigev_un._tid = gettid();
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) < 0) return -errno;
    {
      std::lock_guard<std::mutex> lock(w->mu);
      w->timer = timer;
      w->hasTimer = true;  // a cancel before this armed nothing: the loop below sees `cancelled`
    }
    int result = -ECANCELED;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(w->mu);
        if (w->cancelled) break;
      }
      // A cancel from here on arms the timer, which keeps interrupting until the timer is deleted.
      struct flock fl = w->fl;
      int rc = fcntl(w->fd, F_OFD_SETLKW, &fl);
      if (rc == 0) { result = 0; break; }
      if (errno != EINTR) { result = -errno; break; }
    }
    {
      std::lock_guard<std::mutex> lock(w->mu);
      w->hasTimer = false;
    }
    timer_delete(timer);  // a signal it already queued is harmless: this thread waits no more
    return result;
  }

  bool EnsureAsync() {
    if (async_ != nullptr) return true;
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env_, &loop) != napi_ok) return false;
    async_ = new uv_async_t;
    if (uv_async_init(loop, async_, [](uv_async_t* h) { static_cast<Pool*>(h->data)->Deliver(); }) < 0) {
      delete async_;
      async_ = nullptr;
      return false;
    }
    async_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(async_));  // pending waits do not keep the process alive
    return true;
  }

  // On the JS thread: join finished workers and call their done callbacks.
  void Deliver() {
    std::vector<Wait*> finished;
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished.swap(completed_);
    }
    Napi::Env env = env_;
    Napi::HandleScope scope(env);
    for (Wait* w : finished) {
      pthread_join(w->thread, nullptr);  // it has left its last critical section: returns at once
      auto it = waits_.find(w->id);
      std::unique_ptr<Wait> owned = std::move(it->second);
      waits_.erase(it);  // before the callback: a cancel of this id from inside it is a no-op
      CallFromLoop(env, owned->done, ctx_, {Napi::Number::New(env, owned->result)});
    }
  }

  // Environment teardown: every wait is cancelled and its thread joined; callbacks are dropped.
  void Shutdown() {
    for (auto& [id, w] : waits_) CancelOne(w.get());
    for (auto& [id, w] : waits_) pthread_join(w->thread, nullptr);
    waits_.clear();
    completed_.clear();
    if (async_ != nullptr) {
      uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
      async_ = nullptr;
    }
    delete this;
  }

  napi_env env_;
  Napi::AsyncContext ctx_;
  uv_async_t* async_ = nullptr;
  uint64_t nextId_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Wait>> waits_;  // JS thread only
  std::mutex mu_;  // guards the fields below
  std::vector<Wait*> completed_;
  size_t active_ = 0;
  size_t size_ = kDefaultPoolSize;
};

template <Napi::Value (Pool::*Method)(const Napi::CallbackInfo&)>
Napi::Value Bound(const Napi::CallbackInfo& info) {
  return (static_cast<Pool*>(info.Data())->*Method)(info);
}

}  // namespace

void InitOfdWait(Napi::Env env, Napi::Object exports) {
  Pool* pool = new Pool(env);  // freed by its environment cleanup hook
  exports.Set("ofdWait", Napi::Function::New(env, Bound<&Pool::Start>, "ofdWait", pool));
  exports.Set("ofdCancelWait", Napi::Function::New(env, Bound<&Pool::Cancel>, "ofdCancelWait", pool));
  exports.Set("ofdCancelAll", Napi::Function::New(env, Bound<&Pool::CancelAll>, "ofdCancelAll", pool));
  exports.Set("setWaitPoolSize", Napi::Function::New(env, Bound<&Pool::SetSize>, "setWaitPoolSize", pool));
  exports.Set("waitPoolStats", Napi::Function::New(env, Bound<&Pool::Stats>, "waitPoolStats", pool));
}

}  // namespace lockdrop
