// SPDX-License-Identifier: GPL-2.0
/* A minimal object for testing the loader itself (test/bpf/lifecycle.test.ts): one tracepoint,
 * one read-only variable, one ring buffer, no CO-RE (so loading it does not parse the kernel's
 * BTF and a hundred load/attach/close cycles stay quick). kill(pid, sig) by the target process
 * writes { tgid, pid, sig }. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} records SEC(".maps");

/* syscalls/sys_enter_kill: 8 bytes of common fields, the syscall number, then pid and sig (8 bytes each). */
struct kill_args {
	__u64 common;
	__s64 nr;
	__s64 pid;
	__s64 sig;
};

SEC("tracepoint/syscalls/sys_enter_kill")
int on_kill(struct kill_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 *r;

	if (tgid != target_tgid)
		return 0;
	r = bpf_ringbuf_reserve(&records, 3 * sizeof(__u32), 0);
	if (!r)
		return 0;
	r[0] = tgid;
	r[1] = (__u32)ctx->pid;
	r[2] = (__u32)ctx->sig;
	bpf_ringbuf_submit(r, 0);
	return 0;
}
