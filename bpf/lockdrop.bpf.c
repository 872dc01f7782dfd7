// SPDX-License-Identifier: GPL-2.0
/* lockdrop's probes. One ring buffer (`events`), one event layout (event.h).
 *
 * Intent: the syscall tracepoints of sendmsg/sendto see an rtnetlink request (RTM_NEWADDR,
 * RTM_DELADDR, RTM_NEWLINK, RTM_DELLINK) on a NETLINK_ROUTE socket before the kernel acts on it.
 * Outcome: rtnetlink answers a request inside sendmsg by queueing an NLMSG_ERROR ack on the
 * sender's socket (always on failure, on success when NLM_F_ACK was asked), and sendmsg itself
 * returns the byte count either way. So the outcome is read where the sender reads the ack: on
 * the exit of its next recvmsg/recvfrom on that socket; a send that fails outright is reported
 * from sys_exit_sendmsg/sendto.
 * Kernel removal: fentry (or kprobe) on __inet_del_ifa, ipv6_del_addr and __dev_close_many,
 * loaded only where the kernel allows (the loader disables them elsewhere).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "event.h"

#define AF_INET 2
#define AF_INET6 10
#define AF_NETLINK 16
#define NETLINK_ROUTE 0
#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define MSG_PEEK 2
#define NLMSG_ERROR 2
#define RTM_NEWLINK 16
#define RTM_DELLINK 17
#define RTM_NEWADDR 20
#define RTM_DELADDR 21
#define IFA_ADDRESS 1
#define IFA_LOCAL 2
#define IFA_LABEL_OR_IFLA_IFNAME 3
#define MAX_ATTRS 8
#define MAX_ACKS 8
#define MAX_BATCH 8

char LICENSE[] SEC("license") = "GPL";

/* The network namespace to watch (its inode number); 0 watches every namespace. */
const volatile __u32 target_netns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Events dropped because the ring buffer was full (the reader was too slow). */
__u64 lost_events = 0;

static __always_inline struct lockdrop_event *reserve(void)
{
	struct lockdrop_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		__sync_fetch_and_add(&lost_events, 1);
	return e;
}

/* When the last intent was reported (bpf_ktime_get_ns). Exits and receives are only looked at
 * for RECENT_NS after one: the rest of the time the per-thread lookups cost nothing. */
__u64 last_intent_ns = 0;
#define RECENT_NS (10ULL * 1000000000ULL)

static __always_inline bool intent_recently(void)
{
	return last_intent_ns != 0 && bpf_ktime_get_ns() - last_intent_ns < RECENT_NS;
}

/* Processes with a request awaiting its ack: only their receives are looked at. */
struct pending_request {
	__u32 seq;
	__u16 msg_type;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tgid */
	__type(value, struct pending_request);
} pending SEC(".maps");

/* Syscall arguments kept from enter to exit, per thread. */
struct inflight {
	__u64 buf;          /* recv: user msghdr (is_msghdr) or buffer; send: unused */
	__u32 netns;
	__u32 seq;
	__u16 msg_type;
	__u8 is_msghdr;
	__u8 is_send;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct inflight);
} inflight SEC(".maps");

/* The socket behind fd if it is an rtnetlink socket of a watched namespace; its netns in *netns. */
static __always_inline bool route_socket(int fd, __u32 *netns)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;
	struct socket *sock;
	struct sock *sk;

	if (fd < 0 || !fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return false;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return false;
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AF_NETLINK || BPF_CORE_READ(sk, sk_protocol) != NETLINK_ROUTE)
		return false;
	*netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return target_netns == 0 || *netns == target_netns;
}

static __always_inline void fill_task(struct lockdrop_event *e, __u16 kind, __u32 netns)
{
	__u64 id = bpf_get_current_pid_tgid();

	e->version = LOCKDROP_EVENT_VERSION;
	e->kind = kind;
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->netns = netns;
	e->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* Reads a request's attributes from user memory at off: the address (IFA_LOCAL, else
 * IFA_ADDRESS) of an address request, the interface name (IFA_LABEL / IFLA_IFNAME, both 3). */
static __always_inline void read_attrs(const __u8 *msg, __u32 off, __u32 len, bool is_addr, struct lockdrop_event *e)
{
	bool have_local = false;

	for (int i = 0; i < MAX_ATTRS; i++) {
		struct rtattr rta;

		if (off + sizeof(rta) > len || bpf_probe_read_user(&rta, sizeof(rta), msg + off) || rta.rta_len < sizeof(rta))
			break;
		if (rta.rta_type == IFA_LABEL_OR_IFLA_IFNAME) {
			bpf_probe_read_user_str(e->ifname, sizeof(e->ifname), msg + off + sizeof(rta));
		} else if (is_addr && !have_local && (rta.rta_type == IFA_LOCAL || rta.rta_type == IFA_ADDRESS)) {
			have_local = rta.rta_type == IFA_LOCAL;
			if (e->family == AF_INET6 && rta.rta_len >= sizeof(rta) + 16)
				bpf_probe_read_user(e->address, 16, msg + off + sizeof(rta));
			else if (rta.rta_len >= sizeof(rta) + 4)
				bpf_probe_read_user(e->address, 4, msg + off + sizeof(rta));
		}
		off += (rta.rta_len + 3) & ~3U;
	}
}

static __always_inline bool is_request(__u16 type)
{
	return type == RTM_NEWADDR || type == RTM_DELADDR || type == RTM_NEWLINK || type == RTM_DELLINK;
}

/* One request message at msg (user memory, len bytes of it readable): its intent event. */
static __always_inline void report(const __u8 *msg, const struct nlmsghdr *h, __u64 len, __u32 netns)
{
	struct lockdrop_event *e = reserve();

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	fill_task(e, LOCKDROP_INTENT, netns);
	e->msg_type = h->nlmsg_type;
	e->seq = h->nlmsg_seq;
	e->nl_flags = h->nlmsg_flags;
	if (len > h->nlmsg_len)
		len = h->nlmsg_len;
	if (h->nlmsg_type == RTM_NEWADDR || h->nlmsg_type == RTM_DELADDR) {
		struct ifaddrmsg ifa;

		if (!bpf_probe_read_user(&ifa, sizeof(ifa), msg + sizeof(*h))) {
			e->family = ifa.ifa_family;
			e->prefix = ifa.ifa_prefixlen;
			e->ifindex = ifa.ifa_index;
			read_attrs(msg, sizeof(*h) + sizeof(ifa), len, true, e);
		}
	} else {
		struct ifinfomsg ifi;

		if (!bpf_probe_read_user(&ifi, sizeof(ifi), msg + sizeof(*h))) {
			e->ifindex = ifi.ifi_index;
			e->link_flags = ifi.ifi_flags;
			e->link_change = ifi.ifi_change;
			read_attrs(msg, sizeof(*h) + sizeof(ifi), len, false, e);
		}
	}
	bpf_ringbuf_submit(e, 0);
}

/* A datagram of rtnetlink requests at msg (user memory): an intent for each address or link
 * request (up to MAX_BATCH: `ip addr flush` and `ip -batch` pack several per send); the last one
 * is remembered for the outcome. Anything else (most sends) stops at the first header read. */
static __always_inline void requests(int fd, const __u8 *msg, __u64 len)
{
	struct nlmsghdr h;
	__u32 netns = 0, last_seq = 0;
	__u16 last_type = 0;
	__u64 off = 0;
	int reported = 0;

	if (!msg)
		return;
	for (int i = 0; i < MAX_BATCH; i++) {
		if (off + sizeof(h) > len || bpf_probe_read_user(&h, sizeof(h), msg + off) || h.nlmsg_len < sizeof(h) || !is_request(h.nlmsg_type))
			break;
		if (!reported && !route_socket(fd, &netns))
			return;
		report(msg + off, &h, len - off, netns);
		reported++;
		last_seq = h.nlmsg_seq;
		last_type = h.nlmsg_type;
		off += (h.nlmsg_len + 3) & ~3U;
	}
	if (!reported)
		return;
	last_intent_ns = bpf_ktime_get_ns();

	struct pending_request p = { .seq = last_seq, .msg_type = last_type };
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct inflight f = { .netns = netns, .seq = last_seq, .msg_type = last_type, .is_send = 1 };

	bpf_map_update_elem(&pending, &tgid, &p, BPF_ANY);
	bpf_map_update_elem(&inflight, &id, &f, BPF_ANY);
}

static __always_inline void outcome(__u32 netns, __u16 msg_type, __u32 seq, __s32 error)
{
	struct lockdrop_event *e = reserve();

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	fill_task(e, LOCKDROP_OUTCOME, netns);
	e->msg_type = msg_type;
	e->seq = seq;
	e->error = error;
	bpf_ringbuf_submit(e, 0);
}

/* A send's exit: a failed syscall is the request's outcome (no ack will come). */
static __always_inline void send_exit(long ret)
{
	__u64 id;
	struct inflight *f;

	if (!intent_recently())
		return;
	id = bpf_get_current_pid_tgid();
	f = bpf_map_lookup_elem(&inflight, &id);
	if (!f || !f->is_send)
		return;
	if (ret < 0)
		outcome(f->netns, f->msg_type, f->seq, (__s32)ret);
	bpf_map_delete_elem(&inflight, &id);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int intent_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	struct user_msghdr m;
	struct iovec iov;

	if (bpf_probe_read_user(&m, sizeof(m), (void *)ctx->args[1]) || m.msg_iovlen < 1)
		return 0;
	if (bpf_probe_read_user(&iov, sizeof(iov), m.msg_iov))
		return 0;
	requests((int)ctx->args[0], iov.iov_base, iov.iov_len);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int intent_sendto(struct trace_event_raw_sys_enter *ctx)
{
	requests((int)ctx->args[0], (const __u8 *)ctx->args[1], ctx->args[2]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int intent_sendmsg_exit(struct trace_event_raw_sys_exit *ctx)
{
	send_exit(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int intent_sendto_exit(struct trace_event_raw_sys_exit *ctx)
{
	send_exit(ctx->ret);
	return 0;
}

/* A receive by a process awaiting an ack, on an rtnetlink socket, not a peek: read it at exit. */
static __always_inline void recv_enter(int fd, __u64 buf, __u64 flags, __u8 is_msghdr)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 netns = 0;

	if ((flags & MSG_PEEK) || !intent_recently() || !bpf_map_lookup_elem(&pending, &tgid) || !route_socket(fd, &netns))
		return;
	struct inflight f = { .buf = buf, .netns = netns, .is_msghdr = is_msghdr };
	bpf_map_update_elem(&inflight, &id, &f, BPF_ANY);
}

/* The received datagram's NLMSG_ERROR acks of our request types are their outcomes. */
static __always_inline void recv_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct inflight *f;
	const __u8 *buf;
	__u32 off = 0;

	if (!intent_recently())
		return;
	f = bpf_map_lookup_elem(&inflight, &id);
	if (!f || f->is_send)
		return;
	buf = (const __u8 *)f->buf;
	if (f->is_msghdr) {
		struct user_msghdr m;
		struct iovec iov;

		if (bpf_probe_read_user(&m, sizeof(m), buf) || m.msg_iovlen < 1 || bpf_probe_read_user(&iov, sizeof(iov), m.msg_iov))
			goto done;
		buf = iov.iov_base;
		if (ret > (long)iov.iov_len)
			ret = iov.iov_len;
	}
	for (int i = 0; i < MAX_ACKS; i++) {
		struct {
			struct nlmsghdr h;
			__s32 error;
			struct nlmsghdr req;
		} ack;

		if (ret <= 0 || off + sizeof(ack) > (__u64)ret || bpf_probe_read_user(&ack, sizeof(ack), buf + off) || ack.h.nlmsg_len < sizeof(ack.h))
			break;
		if (ack.h.nlmsg_type == NLMSG_ERROR &&
		    (ack.req.nlmsg_type == RTM_NEWADDR || ack.req.nlmsg_type == RTM_DELADDR ||
		     ack.req.nlmsg_type == RTM_NEWLINK || ack.req.nlmsg_type == RTM_DELLINK)) {
			struct pending_request *p = bpf_map_lookup_elem(&pending, &tgid);

			outcome(f->netns, ack.req.nlmsg_type, ack.req.nlmsg_seq, ack.error);
			if (p && p->seq == ack.req.nlmsg_seq)
				bpf_map_delete_elem(&pending, &tgid);
		}
		off += (ack.h.nlmsg_len + 3) & ~3U;
	}
done:
	bpf_map_delete_elem(&inflight, &id);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int outcome_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	recv_enter((int)ctx->args[0], ctx->args[1], ctx->args[2], 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int outcome_recvmsg_exit(struct trace_event_raw_sys_exit *ctx)
{
	recv_exit(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int outcome_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	recv_enter((int)ctx->args[0], ctx->args[1], ctx->args[3], 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int outcome_recvfrom_exit(struct trace_event_raw_sys_exit *ctx)
{
	recv_exit(ctx->ret);
	return 0;
}

/* Kernel removal: the same fields, from the kernel's own structures. */
static __always_inline bool kernel_event(struct net_device *dev, struct lockdrop_event **out)
{
	__u32 netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	struct lockdrop_event *e;

	if (target_netns != 0 && netns != target_netns)
		return false;
	e = reserve();
	if (!e)
		return false;
	__builtin_memset(e, 0, sizeof(*e));
	fill_task(e, LOCKDROP_KERNEL, netns);
	e->ifindex = BPF_CORE_READ(dev, ifindex);
	BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
	*out = e;
	return true;
}

static __always_inline void inet_removed(struct in_device *in_dev, struct in_ifaddr **ifap)
{
	struct in_ifaddr *ifa = NULL;
	struct lockdrop_event *e;

	bpf_probe_read_kernel(&ifa, sizeof(ifa), ifap);
	if (!ifa || !kernel_event(BPF_CORE_READ(in_dev, dev), &e))
		return;
	e->msg_type = RTM_DELADDR;
	e->family = AF_INET;
	e->prefix = BPF_CORE_READ(ifa, ifa_prefixlen);
	__be32 local = BPF_CORE_READ(ifa, ifa_local);
	__builtin_memcpy(e->address, &local, 4);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void inet6_removed(struct inet6_ifaddr *ifp)
{
	struct lockdrop_event *e;

	if (!kernel_event(BPF_CORE_READ(ifp, idev, dev), &e))
		return;
	e->msg_type = RTM_DELADDR;
	e->family = AF_INET6;
	e->prefix = BPF_CORE_READ(ifp, prefix_len);
	BPF_CORE_READ_INTO(&e->address, ifp, addr);
	bpf_ringbuf_submit(e, 0);
}

/* __dev_close_many(head): the first device of the close list (links are mostly closed one by one). */
static __always_inline void link_closed(struct list_head *head)
{
	struct net_device *dev = (void *)BPF_CORE_READ(head, next) - bpf_core_field_offset(struct net_device, close_list);
	struct lockdrop_event *e;

	if (!kernel_event(dev, &e))
		return;
	e->msg_type = RTM_NEWLINK;
	e->link_flags = BPF_CORE_READ(dev, flags);
	bpf_ringbuf_submit(e, 0);
}

SEC("fentry/__inet_del_ifa")
int BPF_PROG(removed_inet_fentry, struct in_device *in_dev, struct in_ifaddr **ifap)
{
	inet_removed(in_dev, ifap);
	return 0;
}

SEC("fentry/ipv6_del_addr")
int BPF_PROG(removed_inet6_fentry, struct inet6_ifaddr *ifp)
{
	inet6_removed(ifp);
	return 0;
}

SEC("fentry/__dev_close_many")
int BPF_PROG(link_closed_fentry, struct list_head *head)
{
	link_closed(head);
	return 0;
}

SEC("kprobe/__inet_del_ifa")
int BPF_KPROBE(removed_inet_kprobe, struct in_device *in_dev, struct in_ifaddr **ifap)
{
	inet_removed(in_dev, ifap);
	return 0;
}

SEC("kprobe/ipv6_del_addr")
int BPF_KPROBE(removed_inet6_kprobe, struct inet6_ifaddr *ifp)
{
	inet6_removed(ifp);
	return 0;
}

SEC("kprobe/__dev_close_many")
int BPF_KPROBE(link_closed_kprobe, struct list_head *head)
{
	link_closed(head);
	return 0;
}
