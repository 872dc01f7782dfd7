/* The event every lockdrop probe writes to the `events` ring buffer. Versioned: a reader checks
 * `version` and `size`-compatible layout before decoding (src/watch/codec/probe-event.ts mirrors it; a test
 * compares the offsets with this object's BTF). Append fields at the end and bump the version. */
#ifndef LOCKDROP_EVENT_H
#define LOCKDROP_EVENT_H

#define LOCKDROP_EVENT_VERSION 1

enum lockdrop_event_kind {
	/* A netlink request (RTM_NEWADDR/DELADDR/NEWLINK/DELLINK) seen on sendmsg/sendto, before the kernel acts. */
	LOCKDROP_INTENT = 1,
	/* A request's outcome: the NLMSG_ERROR ack's error read on recvmsg/recvfrom, or a failed send. */
	LOCKDROP_OUTCOME = 2,
	/* The kernel removed an address or closed a link (fentry/kprobe), whoever asked. */
	LOCKDROP_KERNEL = 3,
};

struct lockdrop_event {
	__u16 version;
	__u16 kind;          /* enum lockdrop_event_kind */
	__u32 pid;           /* kernel pid: the thread */
	__u32 tgid;          /* the process id users see */
	__u32 netns;         /* inode of the network namespace the request or change is in */
	__u64 ts_ns;         /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	char comm[16];
	__u8 family;         /* AF_INET 2, AF_INET6 10, 0 for links */
	__u8 prefix;
	__u16 msg_type;      /* RTM_*: the request's type (for an outcome: the acked request's) */
	__u32 ifindex;
	__s32 error;         /* outcome: 0 or -errno; 0 otherwise */
	__u32 seq;           /* nlmsg_seq of the request */
	__u8 address[16];    /* IPv4 in the first 4 bytes */
	__u32 link_flags;    /* RTM_NEWLINK: ifi_flags; kernel link close: dev->flags */
	__u32 link_change;   /* RTM_NEWLINK: ifi_change */
	__u16 nl_flags;      /* nlmsg_flags of the request */
	__u16 reserved;
	char ifname[16];     /* IFLA_IFNAME / IFA_LABEL of the request, when it names the interface */
	__u32 reserved2;
};

#endif
