// A small loader over libbpf: open an object file, configure it (read-only data, which programs
// load), load it, attach programs by their section, and read its ring buffers from the libuv
// loop through libbpf's epoll fd. close() releases links, ring buffers, poll handles and the object.
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cstdarg>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace lockdrop {

// libbpf reports the reasons for failures through its print callback: keep the recent lines so
// a thrown error can say why (verifier log tail, missing BTF, permission).
namespace {
std::mutex logMutex;
std::string logText;

int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof line, fmt, args);
  std::lock_guard<std::mutex> lock(logMutex);
  logText.append(line, n < 0 ? 0 : std::min<size_t>(n, sizeof line - 1));
  if (logText.size() > 16384) logText.erase(0, logText.size() - 8192);
  return 0;
}
}  // namespace

void CaptureLibbpfLog() { libbpf_set_print(LibbpfPrint); }

std::string TakeLibbpfLog() {
  std::lock_guard<std::mutex> lock(logMutex);
  std::string out;
  out.swap(logText);
  return out;
}

namespace {

Napi::Value ThrowLibbpf(Napi::Env env, const std::string& what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + ErrnoText(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, strerrorname_np(err) ? strerrorname_np(err) : "E?"));
  e.Set("libbpfLog", Napi::String::New(env, TakeLibbpfLog()));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// One ring buffer map read from the loop: libbpf's epoll fd becomes readable when records are
// committed; consume them all and hand them to JS as one array of Buffers.
struct RingReader {
  napi_env env;
  ring_buffer* rb = nullptr;
  uv_poll_t* poll = nullptr;
  Napi::FunctionReference onRecords;
  Napi::AsyncContext ctx;
  std::vector<napi_value>* batch = nullptr;
  bool inCallback = false;  // JS may close the reader from inside its own callback (or from a
  bool closing = false;     // microtask run when that callback returns): then only the struct's
                            // memory waits for the callback to return; the fds go at once.

  static void Dispose(RingReader* r) {
    r->Shutdown();
    if (r->inCallback) r->closing = true; else delete r;
  }

  RingReader(napi_env e, Napi::Function fn) : env(e), onRecords(Napi::Persistent(fn)), ctx(Napi::Env(e), "lockdrop:ringbuf") {}
  ~RingReader() { Shutdown(); }

  // The callback into JS runs after ring_buffer__consume returned, so freeing here is safe then too.
  void Shutdown() {
    if (poll != nullptr) { poll->data = nullptr; ClosePoll(poll); poll = nullptr; }
    ring_buffer__free(rb);  // unmaps and closes the epoll fd, after the poll stopped watching it
    rb = nullptr;
  }

  static int OnSample(void* self, void* data, size_t size) {
    auto* r = static_cast<RingReader*>(self);
    if (r->batch != nullptr) r->batch->push_back(Napi::Buffer<uint8_t>::Copy(r->env, static_cast<uint8_t*>(data), size));
    return 0;
  }

  void OnReadable(int status) {
    if (rb == nullptr) return;
    Napi::Env e(env);
    Napi::HandleScope scope(e);
    std::vector<napi_value> records;
    batch = &records;
    int rc = status < 0 ? status : ring_buffer__consume(rb);
    batch = nullptr;
    if (records.empty() && rc >= 0) return;
    Napi::Array arr = Napi::Array::New(e, records.size());
    for (size_t i = 0; i < records.size(); i++) arr.Set(static_cast<uint32_t>(i), records[i]);
    Napi::Value err = e.Null();
    if (status < 0) err = Napi::String::New(e, std::string("poll error: ") + uv_strerror(status));
    else if (rc < 0) err = Napi::String::New(e, ErrnoText(-rc));
    inCallback = true;
    CallFromLoop(e, onRecords, ctx, {arr, err});
    inCallback = false;
    if (closing) delete this;
  }
};

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("BpfObject", DefineClass(env, "BpfObject", {
      InstanceMethod<&BpfObject::Programs>("programs"),
      InstanceMethod<&BpfObject::Maps>("maps"),
      InstanceMethod<&BpfObject::SetAutoload>("setAutoload"),
      InstanceMethod<&BpfObject::SetReadOnly>("setReadOnly"),
      InstanceMethod<&BpfObject::ReadGlobal>("readGlobal"),
      InstanceMethod<&BpfObject::SetMaxEntries>("setMaxEntries"),
      InstanceMethod<&BpfObject::Load>("load"),
      InstanceMethod<&BpfObject::Attach>("attach"),
      InstanceMethod<&BpfObject::OpenRingBuffer>("openRingBuffer"),
      InstanceMethod<&BpfObject::CloseRingBuffer>("closeRingBuffer"),
      InstanceMethod<&BpfObject::Close>("close"),
    }));
    exports.Set("mountTracefs", Napi::Function::New(env, MountTracefs, "mountTracefs"));
  }

  // new BpfObject(path): opens (parses) the object file; nothing is loaded into the kernel yet.
  explicit BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) { ThrowType(env, "BpfObject(path: string)"); return; }
    std::string path = info[0].As<Napi::String>();
    TakeLibbpfLog();
    obj_ = bpf_object__open_file(path.c_str(), nullptr);
    if (obj_ == nullptr) { int err = errno; obj_ = nullptr; ThrowLibbpf(env, "bpf_object__open_file " + path, err); return; }
    env_ = env;
    napi_add_env_cleanup_hook(env, Cleanup, this);
  }

  ~BpfObject() override { Release(); }

 private:
  static void Cleanup(void* self) { static_cast<BpfObject*>(self)->Release(); }

  bool Usable(Napi::Env env) {
    if (obj_ != nullptr) return true;
    ThrowErrno(env, "bpf object closed", EBADF);
    return false;
  }

  bpf_program* FindProgram(Napi::Env env, const Napi::Value& name) {
    if (!Usable(env)) return nullptr;
    if (!name.IsString()) { ThrowType(env, "program name must be a string"); return nullptr; }
    std::string n = name.As<Napi::String>();
    bpf_program* p = bpf_object__find_program_by_name(obj_, n.c_str());
    if (p == nullptr) ThrowErrno(env, "no program " + n, ENOENT);
    return p;
  }

  Napi::Value Programs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    Napi::Array out = Napi::Array::New(env);
    bpf_program* p;
    uint32_t i = 0;
    bpf_object__for_each_program(p, obj_) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_program__name(p));
      o.Set("section", bpf_program__section_name(p));
      const char* type = libbpf_bpf_prog_type_str(bpf_program__type(p));
      o.Set("type", type ? type : "unknown");
      o.Set("autoload", bpf_program__autoload(p));
      o.Set("attached", links_.count(bpf_program__name(p)) > 0);
      out.Set(i++, o);
    }
    return out;
  }

  Napi::Value Maps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    Napi::Array out = Napi::Array::New(env);
    bpf_map* m;
    uint32_t i = 0;
    bpf_object__for_each_map(m, obj_) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_map__name(m));
      const char* type = libbpf_bpf_map_type_str(bpf_map__type(m));
      o.Set("type", type ? type : "unknown");
      out.Set(i++, o);
    }
    return out;
  }

  Napi::Value SetAutoload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_program* p = FindProgram(env, info[0]);
    if (p == nullptr) return env.Undefined();
    int rc = bpf_program__set_autoload(p, info[1].ToBoolean());
    if (rc < 0) return ThrowLibbpf(env, "set autoload", -rc);
    return env.Undefined();
  }

  // Where a global variable lives: its section's map (.rodata, .bss, .data) and its place in the
  // map's single value, found by name in the object's BTF datasec.
  struct Global { bpf_map* map = nullptr; size_t offset = 0; size_t size = 0; };

  bool FindGlobal(const char* section, const std::string& name, Global* out, std::string* err) {
    const btf* b = bpf_object__btf(obj_);
    size_t sectionLen = strlen(section);
    bpf_map* m;
    bpf_object__for_each_map(m, obj_) {
      const char* n = bpf_map__name(m);
      size_t len = strlen(n);
      if (len >= sectionLen && strcmp(n + len - sectionLen, section) == 0) out->map = m;
    }
    int secId = b ? btf__find_by_name_kind(b, section, BTF_KIND_DATASEC) : -ENOENT;
    if (out->map == nullptr || secId < 0) { *err = std::string("object has no ") + section; return false; }
    const btf_type* sec = btf__type_by_id(b, secId);
    const btf_var_secinfo* vars = btf_var_secinfos(sec);
    for (int i = 0; i < btf_vlen(sec); i++) {
      const btf_type* var = btf__type_by_id(b, vars[i].type);
      if (name != btf__name_by_offset(b, var->name_off)) continue;
      if (vars[i].offset + vars[i].size > bpf_map__value_size(out->map)) break;
      out->offset = vars[i].offset;
      out->size = vars[i].size;
      return true;
    }
    *err = std::string("no variable ") + name + " in " + section;
    return false;
  }

  // setReadOnly(variable, bytes): writes a `const volatile` global's initial value (in .rodata).
  // Only before load: afterwards the map is frozen.
  Napi::Value SetReadOnly(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBuffer()) return ThrowType(env, "setReadOnly(name: string, value: Buffer)");
    if (loaded_) return ThrowErrno(env, "setReadOnly after load", EBUSY);
    std::string name = info[0].As<Napi::String>();
    Napi::Buffer<uint8_t> value = info[1].As<Napi::Buffer<uint8_t>>();
    Global g;
    std::string err;
    if (!FindGlobal(".rodata", name, &g, &err)) return ThrowErrno(env, err, ENOENT);
    if (g.size != value.Length())
      return ThrowType(env, "setReadOnly " + name + ": expected " + std::to_string(g.size) + " bytes, got " + std::to_string(value.Length()));
    size_t size = 0;
    // libbpf's own copy of the initial value: writing into it is how skeletons set rodata.
    auto* image = static_cast<uint8_t*>(const_cast<void*>(bpf_map__initial_value(g.map, &size)));
    if (image == nullptr || g.offset + g.size > size) return ThrowErrno(env, "rodata image", EINVAL);
    memcpy(image + g.offset, value.Data(), g.size);
    return env.Undefined();
  }

  // readGlobal(variable): a copy of a global's current bytes (.bss, .data or .rodata), e.g. a
  // counter the programs keep: after load, looked up in the kernel's map (libbpf 1.1 maps the
  // live memory only for skeletons), before load, libbpf's initial image.
  Napi::Value ReadGlobal(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "readGlobal(name: string)");
    std::string name = info[0].As<Napi::String>();
    std::string err;
    for (const char* section : {".bss", ".data", ".rodata"}) {
      Global g;
      if (!FindGlobal(section, name, &g, &err)) continue;
      std::vector<uint8_t> value(bpf_map__value_size(g.map));
      if (loaded_) {
        uint32_t key = 0;
        if (bpf_map_lookup_elem(bpf_map__fd(g.map), &key, value.data()) < 0) return ThrowErrno(env, "read " + name, errno);
      } else {
        size_t size = 0;
        const void* image = bpf_map__initial_value(g.map, &size);
        if (image == nullptr || size < value.size()) return ThrowErrno(env, "image of " + name, EINVAL);
        memcpy(value.data(), image, value.size());
      }
      return Napi::Buffer<uint8_t>::Copy(env, value.data() + g.offset, g.size);
    }
    return ThrowErrno(env, "no global variable " + name, ENOENT);
  }

  // setMaxEntries(map, n): before load, e.g. a ring buffer's size in bytes (a power of two pages).
  Napi::Value SetMaxEntries(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) return ThrowType(env, "setMaxEntries(map: string, n: number)");
    std::string name = info[0].As<Napi::String>();
    bpf_map* m = bpf_object__find_map_by_name(obj_, name.c_str());
    if (m == nullptr) return ThrowErrno(env, "no map " + name, ENOENT);
    int rc = bpf_map__set_max_entries(m, info[1].As<Napi::Number>().Uint32Value());
    if (rc < 0) return ThrowLibbpf(env, "set max entries of " + name, -rc);
    return env.Undefined();
  }

  Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    TakeLibbpfLog();
    int rc = bpf_object__load(obj_);
    if (rc < 0) return ThrowLibbpf(env, "bpf_object__load", -rc);
    loaded_ = true;
    return env.Undefined();
  }

  // attach(program): libbpf attaches by the section name (tracepoint/…, fentry/…, kprobe/…).
  Napi::Value Attach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_program* p = FindProgram(env, info[0]);
    if (p == nullptr) return env.Undefined();
    std::string name = bpf_program__name(p);
    if (links_.count(name)) return env.Undefined();
    TakeLibbpfLog();
    bpf_link* link = bpf_program__attach(p);
    if (link == nullptr) return ThrowLibbpf(env, "attach " + name, errno);
    links_[name] = link;
    return env.Undefined();
  }

  // openRingBuffer(map, onRecords(records: Buffer[], error: string|null)) → id
  Napi::Value OpenRingBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsFunction()) return ThrowType(env, "openRingBuffer(map: string, onRecords: function)");
    std::string name = info[0].As<Napi::String>();
    bpf_map* m = bpf_object__find_map_by_name(obj_, name.c_str());
    if (m == nullptr) return ThrowErrno(env, "no map " + name, ENOENT);
    if (bpf_map__type(m) != BPF_MAP_TYPE_RINGBUF) return ThrowErrno(env, name + " is not a ring buffer", EINVAL);
    if (bpf_map__fd(m) < 0) return ThrowErrno(env, "map " + name + " not loaded", EBADF);
    auto reader = new RingReader(env, info[1].As<Napi::Function>());
    reader->rb = ring_buffer__new(bpf_map__fd(m), RingReader::OnSample, reader, nullptr);
    if (reader->rb == nullptr) { int err = errno; delete reader; return ThrowLibbpf(env, "ring_buffer__new", err); }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    reader->poll = new uv_poll_t;
    int rc = uv_poll_init(loop, reader->poll, ring_buffer__epoll_fd(reader->rb));
    if (rc < 0) { delete reader->poll; reader->poll = nullptr; delete reader; return ThrowErrno(env, "uv_poll_init", -rc); }
    reader->poll->data = reader;
    uv_poll_start(reader->poll, UV_READABLE, [](uv_poll_t* h, int status, int) {
      if (h->data != nullptr) static_cast<RingReader*>(h->data)->OnReadable(status);
    });
    int id = nextReader_++;
    readers_[id] = reader;
    return Napi::Number::New(env, id);
  }

  Napi::Value CloseRingBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) return env.Undefined();
    auto it = readers_.find(info[0].As<Napi::Number>().Int32Value());
    if (it != readers_.end()) { RingReader::Dispose(it->second); readers_.erase(it); }
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  // Readers first (they hold map fds through libbpf), then links, then the object (programs, maps).
  void Release() {
    if (obj_ == nullptr) return;
    napi_remove_env_cleanup_hook(env_, Cleanup, this);
    for (auto& r : readers_) RingReader::Dispose(r.second);
    readers_.clear();
    // Each tracepoint detach waits for an RCU grace period in the kernel (~40 ms): detach them
    // side by side rather than one after another. Only libbpf's link objects are touched.
    std::vector<std::thread> detaching;
    for (auto& l : links_) detaching.emplace_back(bpf_link__destroy, l.second);
    for (auto& t : detaching) t.join();
    links_.clear();
    bpf_object__close(obj_);
    obj_ = nullptr;
  }

  // Tracepoint attach reads event ids from tracefs; mount it where it is missing (needs root).
  static Napi::Value MountTracefs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct stat st;
    if (stat("/sys/kernel/tracing/events", &st) == 0 || stat("/sys/kernel/debug/tracing/events", &st) == 0) return Napi::Boolean::New(env, false);
    if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) < 0) return ThrowErrno(env, "mount tracefs on /sys/kernel/tracing", errno);
    return Napi::Boolean::New(env, true);
  }

  napi_env env_ = nullptr;
  bpf_object* obj_ = nullptr;
  bool loaded_ = false;
  std::map<std::string, bpf_link*> links_;
  std::map<int, RingReader*> readers_;
  int nextReader_ = 1;
};

}  // namespace

void InitBpfObject(Napi::Env env, Napi::Object exports) { BpfObject::Init(env, exports); }

}  // namespace lockdrop
