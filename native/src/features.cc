// Feature probes: what this kernel lets lockdrop load, each answered as supported or with the
// reason it is not. Tracing (fentry) is probed by really loading and attaching a trivial program
// on the function the removal probe uses, because a kernel may know the program type and still
// refuse it (EPERM under lockdown or in a sandbox).
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lockdrop {
namespace {

Napi::Object Answer(Napi::Env env, bool supported, const std::string& reason) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("supported", supported);
  if (!supported) o.Set("reason", reason);
  return o;
}

bool Exists(const char* path) {
  struct stat st;
  return stat(path, &st) == 0;
}

std::string ProbeProgType(bpf_prog_type type, const char* what) {
  int rc = libbpf_probe_bpf_prog_type(type, nullptr);
  if (rc == 1) return "";
  if (rc == 0) return std::string("the kernel rejects ") + what + " programs";
  return std::string("probing ") + what + " programs failed: " + ErrnoText(-rc);
}

std::string ProbeFentry(const std::string& function) {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) return "no kernel BTF: " + ErrnoText(errno);
  int id = btf__find_by_name_kind(vmlinux, function.c_str(), BTF_KIND_FUNC);
  btf__free(vmlinux);
  if (id < 0) return "kernel BTF has no function " + function;
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},  // r0 = 0
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},                   // exit
  };
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_FENTRY, .attach_btf_id = static_cast<__u32>(id));
  int prog = bpf_prog_load(BPF_PROG_TYPE_TRACING, "lockdrop_probe", "GPL", insns, 2, &opts);
  if (prog < 0) return "loading an fentry program on " + function + ": " + ErrnoText(errno);
  int link = bpf_raw_tracepoint_open(nullptr, prog);
  int err = errno;
  close(prog);
  if (link < 0) return "attaching an fentry program to " + function + ": " + ErrnoText(err);
  close(link);
  return "";
}

// Whether this process may use bpf() at all: a failure here explains every other "no".
std::string ProbeAccess() {
  int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "lockdrop_probe", 4, 4, 1, nullptr);
  if (fd >= 0) { close(fd); return ""; }
  int err = errno;
  std::string why = "bpf() refused: " + ErrnoText(err);
  if (err == EPERM) why += " (needs CAP_BPF and CAP_PERFMON, or root; see kernel.unprivileged_bpf_disabled)";
  return why;
}

// probeFeatures(fentryFunction): { tracepoint, fentry, kprobe, btf, ringbuf } each { supported, reason? }
Napi::Value ProbeFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string fn = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "__inet_del_ifa";
  Napi::Object out = Napi::Object::New(env);

  bool btf = Exists("/sys/kernel/btf/vmlinux");
  out.Set("btf", Answer(env, btf, "no /sys/kernel/btf/vmlinux (kernel built without CONFIG_DEBUG_INFO_BTF)"));

  std::string access = ProbeAccess();
  if (!access.empty()) {
    for (const char* name : {"ringbuf", "tracepoint", "fentry", "kprobe"}) out.Set(name, Answer(env, false, access));
    return out;
  }

  int rb = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr);
  out.Set("ringbuf", Answer(env, rb == 1, rb == 0 ? "the kernel has no BPF ring buffer (before 5.8)" : "probing ring buffers failed: " + ErrnoText(-rb)));

  std::string tp = ProbeProgType(BPF_PROG_TYPE_TRACEPOINT, "tracepoint");
  if (tp.empty() && !Exists("/sys/kernel/tracing/events/syscalls") && !Exists("/sys/kernel/debug/tracing/events/syscalls"))
    tp = "tracefs is not mounted (or the kernel has no syscall tracepoints)";
  out.Set("tracepoint", Answer(env, tp.empty(), tp));

  std::string fentry = btf ? ProbeFentry(fn) : "fentry needs kernel BTF";
  out.Set("fentry", Answer(env, fentry.empty(), fentry));

  std::string kp = ProbeProgType(BPF_PROG_TYPE_KPROBE, "kprobe");
  if (kp.empty() && !Exists("/sys/bus/event_source/devices/kprobe/type") && !Exists("/sys/kernel/tracing/kprobe_events"))
    kp = "the kernel has no kprobe event source (built without CONFIG_KPROBES)";
  out.Set("kprobe", Answer(env, kp.empty(), kp));
  return out;
}

// bpfRunTimeStats(on): the kernel counts each program's runs and run time (run_cnt,
// run_time_ns in bpftool prog show) while the BPF_ENABLE_STATS fd stays open. For benchmarks.
int statsFd = -1;
Napi::Value RunTimeStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool on = info.Length() > 0 && info[0].ToBoolean();
  if (on && statsFd < 0) {
    statsFd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    if (statsFd < 0) return ThrowErrno(env, "BPF_ENABLE_STATS", errno);
  } else if (!on && statsFd >= 0) {
    close(statsFd);
    statsFd = -1;
  }
  return env.Undefined();
}

}  // namespace

void InitFeatures(Napi::Env env, Napi::Object exports) {
  exports.Set("probeFeatures", Napi::Function::New(env, ProbeFeatures, "probeFeatures"));
  exports.Set("bpfRunTimeStats", Napi::Function::New(env, RunTimeStats, "bpfRunTimeStats"));
}

}  // namespace lockdrop
