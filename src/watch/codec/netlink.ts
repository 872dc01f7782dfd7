// Pure rtnetlink codec: nlmsghdr framing, ifaddrmsg / ifinfomsg and their attributes, dump
// requests. Host byte order (little-endian here, as the kernel writes it). Malformed or
// truncated input raises NetlinkDecodeError and nothing else.
// Layouts: include/uapi/linux/netlink.h, rtnetlink.h, if_addr.h, if_link.h; man 7 rtnetlink.
import { formatAddress } from '../../net';

export class NetlinkDecodeError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} (at byte ${offset})`);
    this.name = 'NetlinkDecodeError';
  }
}

export const NLMSG_HDRLEN = 16;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300; // NLM_F_ROOT | NLM_F_MATCH

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

/** Multicast groups (RTNLGRP_*, numbered from 1; the legacy bitmask is 1 << (n - 1)). */
export const RTNLGRP_LINK = 1;
export const RTNLGRP_IPV4_IFADDR = 5;
export const RTNLGRP_IPV6_IFADDR = 9;

export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_LABEL = 3;
export const IFA_CACHEINFO = 6;
export const IFA_FLAGS = 8;

export const IFA_F_SECONDARY = 0x01;
export const IFA_F_NODAD = 0x02;
export const IFA_F_OPTIMISTIC = 0x04;
export const IFA_F_DADFAILED = 0x08;
export const IFA_F_DEPRECATED = 0x20;
export const IFA_F_TENTATIVE = 0x40;
export const IFA_F_PERMANENT = 0x80;

export const IFLA_IFNAME = 3;

export const IFF_UP = 0x1;
export const IFF_LOOPBACK = 0x8;
export const IFF_RUNNING = 0x40;

const NLA_TYPE_MASK = 0x3fff; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
const IFADDRMSG_LEN = 8;
const IFINFOMSG_LEN = 16;

const align4 = (n: number): number => (n + 3) & ~3;

/** One netlink message: its header fields and its payload (a view into the datagram). */
export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

/** Splits one datagram into its messages (a datagram may carry several, 4-byte aligned). */
export function splitMessages(datagram: Buffer): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  let off = 0;
  while (off < datagram.length) {
    if (datagram.length - off < NLMSG_HDRLEN) throw new NetlinkDecodeError(`truncated nlmsghdr: ${datagram.length - off} bytes left`, off);
    const len = datagram.readUInt32LE(off);
    if (len < NLMSG_HDRLEN) throw new NetlinkDecodeError(`nlmsg_len ${len} shorter than its header`, off);
    if (off + len > datagram.length) throw new NetlinkDecodeError(`nlmsg_len ${len} runs past the datagram (${datagram.length - off} bytes left)`, off);
    out.push({
      type: datagram.readUInt16LE(off + 4),
      flags: datagram.readUInt16LE(off + 6),
      seq: datagram.readUInt32LE(off + 8),
      pid: datagram.readUInt32LE(off + 12),
      payload: datagram.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/**
 * Walks route attributes (struct rtattr) from `start` to the end of `buf` and returns, for each
 * type up to maxType, the [offset, end) of its payload (-1 when absent; the last one wins).
 * Offsets, not slices: a busy link dump is thousands of attributes.
 */
export function attributeSpans(buf: Buffer, start: number, maxType: number, base = 0): Int32Array {
  const spans = new Int32Array((maxType + 1) * 2).fill(-1);
  let off = start;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4) throw new NetlinkDecodeError(`rta_len ${len} shorter than its header`, base + off);
    if (off + len > buf.length) throw new NetlinkDecodeError(`rta_len ${len} runs past its message`, base + off);
    const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (type <= maxType) {
      spans[type * 2] = off + 4;
      spans[type * 2 + 1] = off + len;
    }
    off += align4(len);
  }
  return spans;
}

export interface IfaCacheInfo {
  preferred: number;
  valid: number;
  /** Created and updated, in hundredths of a second since boot. */
  cstamp: number;
  tstamp: number;
}

/** RTM_NEWADDR / RTM_DELADDR: one address. */
export interface AddressMessage {
  kind: 'address';
  op: 'new' | 'del';
  family: number;
  prefixLen: number;
  /** IFA_FLAGS when present (it carries the bits above 8), else ifa_flags. */
  flags: number;
  scope: number;
  ifindex: number;
  /** The local address: IFA_LOCAL, else IFA_ADDRESS (IPv6 without a peer sends only IFA_ADDRESS). */
  local?: string;
  /** IFA_ADDRESS: the peer's address on point-to-point links, else the local one. */
  address?: string;
  label?: string;
  cacheInfo?: IfaCacheInfo;
}

/** RTM_NEWLINK / RTM_DELLINK: one interface. */
export interface LinkMessage {
  kind: 'link';
  op: 'new' | 'del';
  family: number;
  ifindex: number;
  /** IFF_* flags. */
  flags: number;
  change: number;
  ifname?: string;
}

export interface HeaderInfo {
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

interface WithHeader {
  header: HeaderInfo;
}

/** One decoded rtnetlink message. */
export type RtnetlinkMessage =
  | (AddressMessage & WithHeader)
  | (LinkMessage & WithHeader)
  | ({ kind: 'done' } & WithHeader)
  /** errno is positive (the kernel sends -errno); 0 is an acknowledgement. */
  | ({ kind: 'error'; errno: number; request?: HeaderInfo } & WithHeader)
  | ({ kind: 'overrun' } & WithHeader)
  | ({ kind: 'noop' } & WithHeader)
  /** A request from userspace or a message type this codec does not decode (routes, neighbours …). */
  | ({ kind: 'other' } & WithHeader);

const cString = (b: Buffer, start: number, end: number): string => {
  const nul = b.indexOf(0, start);
  return b.toString('utf8', start, nul < 0 || nul > end ? end : nul);
};

/** The address in attribute `type`, if present and of a family this part uses. */
function addressAttr(p: Buffer, spans: Int32Array, type: number, family: number, at: number): string | undefined {
  const start = spans[type * 2];
  // Other families (DECnet, MCTP …) carry addresses this part has no use for.
  if (start < 0 || (family !== AF_INET && family !== AF_INET6)) return undefined;
  const len = spans[type * 2 + 1] - start;
  if (len !== (family === AF_INET ? 4 : 16)) throw new NetlinkDecodeError(`address attribute of ${len} bytes for family ${family}`, at);
  return formatAddress(p, start, len);
}

/** Where attribute `type` starts (-1: absent); shorter than `min` bytes is malformed. */
function sizedSpan(spans: Int32Array, type: number, min: number, what: string, base: number): number {
  const start = spans[type * 2];
  if (start >= 0 && spans[type * 2 + 1] - start < min) throw new NetlinkDecodeError(`${what} shorter than ${min} bytes`, base);
  return start;
}

/** An RTM_NEWADDR / RTM_DELADDR body, whether the kernel sent it or a request (`ip addr del`) did. */
export function decodeAddress(m: NetlinkMessage, base = 0): AddressMessage & WithHeader {
  const p = m.payload;
  if (p.length < IFADDRMSG_LEN) throw new NetlinkDecodeError(`ifaddrmsg truncated: ${p.length} bytes`, base);
  const family = p.readUInt8(0);
  const spans = attributeSpans(p, IFADDRMSG_LEN, IFA_FLAGS, base);
  const flagsAt = sizedSpan(spans, IFA_FLAGS, 4, 'IFA_FLAGS', base);
  const ci = sizedSpan(spans, IFA_CACHEINFO, 16, 'IFA_CACHEINFO', base);
  const address = addressAttr(p, spans, IFA_ADDRESS, family, base);
  const local = addressAttr(p, spans, IFA_LOCAL, family, base) ?? address;
  const out: AddressMessage & WithHeader = {
    kind: 'address',
    op: m.type === RTM_NEWADDR ? 'new' : 'del',
    family,
    prefixLen: p.readUInt8(1),
    flags: flagsAt >= 0 ? p.readUInt32LE(flagsAt) : p.readUInt8(2),
    scope: p.readUInt8(3),
    ifindex: p.readUInt32LE(4),
    header: headerOf(m),
  };
  if (local !== undefined) out.local = local;
  if (address !== undefined) out.address = address;
  if (spans[IFA_LABEL * 2] >= 0) out.label = cString(p, spans[IFA_LABEL * 2], spans[IFA_LABEL * 2 + 1]);
  if (ci >= 0) out.cacheInfo = { preferred: p.readUInt32LE(ci), valid: p.readUInt32LE(ci + 4), cstamp: p.readUInt32LE(ci + 8), tstamp: p.readUInt32LE(ci + 12) };
  return out;
}

function decodeLink(m: NetlinkMessage, base: number): LinkMessage & WithHeader {
  const p = m.payload;
  if (p.length < IFINFOMSG_LEN) throw new NetlinkDecodeError(`ifinfomsg truncated: ${p.length} bytes`, base);
  const spans = attributeSpans(p, IFINFOMSG_LEN, IFLA_IFNAME, base);
  const out: LinkMessage & WithHeader = {
    kind: 'link',
    op: m.type === RTM_NEWLINK ? 'new' : 'del',
    family: p.readUInt8(0),
    ifindex: p.readInt32LE(4),
    flags: p.readUInt32LE(8),
    change: p.readUInt32LE(12),
    header: headerOf(m),
  };
  if (spans[IFLA_IFNAME * 2] >= 0) out.ifname = cString(p, spans[IFLA_IFNAME * 2], spans[IFLA_IFNAME * 2 + 1]);
  return out;
}

const headerOf = (m: NetlinkMessage): HeaderInfo => ({ type: m.type, flags: m.flags, seq: m.seq, pid: m.pid });

/** Decodes one message. Requests (NLM_F_REQUEST, from userspace) are 'other'. */
export function decodeMessage(m: NetlinkMessage, base = 0): RtnetlinkMessage {
  const h = { header: headerOf(m) };
  switch (m.type) {
    case NLMSG_NOOP: return { kind: 'noop', ...h };
    case NLMSG_DONE: return { kind: 'done', ...h };
    case NLMSG_OVERRUN: return { kind: 'overrun', ...h };
    case NLMSG_ERROR: {
      if (m.payload.length < 4) throw new NetlinkDecodeError('NLMSG_ERROR without its error code', base);
      const errno = -m.payload.readInt32LE(0);
      const orig = m.payload.subarray(4);
      const request = orig.length >= NLMSG_HDRLEN
        ? { type: orig.readUInt16LE(4), flags: orig.readUInt16LE(6), seq: orig.readUInt32LE(8), pid: orig.readUInt32LE(12) }
        : undefined;
      return { kind: 'error', errno, ...(request && { request }), ...h };
    }
  }
  if (m.flags & NLM_F_REQUEST) return { kind: 'other', ...h };
  switch (m.type) {
    case RTM_NEWADDR:
    case RTM_DELADDR:
      return decodeAddress(m, base + NLMSG_HDRLEN);
    case RTM_NEWLINK:
    case RTM_DELLINK:
      return decodeLink(m, base + NLMSG_HDRLEN);
    default:
      return { kind: 'other', ...h };
  }
}

/** Every message of a datagram, decoded. */
export function decodeDatagram(datagram: Buffer): RtnetlinkMessage[] {
  let base = 0;
  return splitMessages(datagram).map((m) => {
    const d = decodeMessage(m, base);
    base += align4(m.payload.length + NLMSG_HDRLEN);
    return d;
  });
}

/** Encodes one netlink message (host byte order). */
export function encodeMessage(h: { type: number; flags: number; seq?: number; pid?: number }, payload: Buffer): Buffer {
  const len = NLMSG_HDRLEN + payload.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt32LE(len, 0);
  out.writeUInt16LE(h.type, 4);
  out.writeUInt16LE(h.flags, 6);
  out.writeUInt32LE(h.seq ?? 0, 8);
  out.writeUInt32LE(h.pid ?? 0, 12);
  payload.copy(out, NLMSG_HDRLEN);
  return out;
}

/** RTM_GETADDR dump request (family AF_UNSPEC: both IPv4 and IPv6). */
export function encodeGetAddrDump(seq: number, family = AF_UNSPEC): Buffer {
  const ifa = Buffer.alloc(IFADDRMSG_LEN);
  ifa.writeUInt8(family, 0);
  return encodeMessage({ type: RTM_GETADDR, flags: NLM_F_REQUEST | NLM_F_DUMP, seq }, ifa);
}

/** RTM_GETLINK dump request. */
export function encodeGetLinkDump(seq: number): Buffer {
  return encodeMessage({ type: RTM_GETLINK, flags: NLM_F_REQUEST | NLM_F_DUMP, seq }, Buffer.alloc(IFINFOMSG_LEN));
}

function encodeAttributes(attrs: Array<[number, Buffer]>): Buffer {
  return Buffer.concat(attrs.map(([type, value]) => {
    const b = Buffer.alloc(align4(4 + value.length));
    b.writeUInt16LE(4 + value.length, 0);
    b.writeUInt16LE(type, 2);
    value.copy(b, 4);
    return b;
  }));
}

/**
 * Encodes an RTM_NEWADDR / RTM_DELADDR as the kernel sends it (for fakes in tests and for
 * synthetic traces), or with `request` as `ip addr add/del` asks it (NLM_F_REQUEST | NLM_F_ACK):
 * IPv4 carries IFA_LOCAL and IFA_ADDRESS, IPv6 IFA_ADDRESS; IFA_FLAGS always.
 */
export function encodeAddressMessage(m: { op: 'new' | 'del'; local: Buffer; prefixLen: number; ifindex: number; flags?: number; scope?: number; label?: string; seq?: number; pid?: number; multi?: boolean; request?: boolean }): Buffer {
  const family = m.local.length === 4 ? AF_INET : AF_INET6;
  const flags = m.flags ?? IFA_F_PERMANENT;
  const ifa = Buffer.alloc(IFADDRMSG_LEN);
  ifa.writeUInt8(family, 0);
  ifa.writeUInt8(m.prefixLen, 1);
  ifa.writeUInt8(flags & 0xff, 2);
  ifa.writeUInt8(m.scope ?? 0, 3);
  ifa.writeUInt32LE(m.ifindex, 4);
  const u32 = Buffer.alloc(4);
  u32.writeUInt32LE(flags, 0);
  const attrs: Array<[number, Buffer]> = [[IFA_ADDRESS, m.local]];
  if (family === AF_INET) attrs.push([IFA_LOCAL, m.local]);
  if (m.label) attrs.push([IFA_LABEL, Buffer.from(`${m.label}\0`)]);
  attrs.push([IFA_FLAGS, u32]);
  return encodeMessage(
    { type: m.op === 'new' ? RTM_NEWADDR : RTM_DELADDR, flags: (m.multi ? NLM_F_MULTI : 0) | (m.request ? NLM_F_REQUEST | NLM_F_ACK : 0), seq: m.seq, pid: m.pid },
    Buffer.concat([ifa, encodeAttributes(attrs)]),
  );
}

/** Encodes an RTM_NEWLINK / RTM_DELLINK as the kernel sends it (for fakes and synthetic traces). */
export function encodeLinkMessage(m: { op: 'new' | 'del'; ifindex: number; flags: number; ifname?: string; seq?: number; pid?: number; multi?: boolean }): Buffer {
  const ifi = Buffer.alloc(IFINFOMSG_LEN);
  ifi.writeUInt16LE(1, 2); // ARPHRD_ETHER
  ifi.writeInt32LE(m.ifindex, 4);
  ifi.writeUInt32LE(m.flags, 8);
  const attrs: Array<[number, Buffer]> = m.ifname ? [[IFLA_IFNAME, Buffer.from(`${m.ifname}\0`)]] : [];
  return encodeMessage(
    { type: m.op === 'new' ? RTM_NEWLINK : RTM_DELLINK, flags: m.multi ? NLM_F_MULTI : 0, seq: m.seq, pid: m.pid },
    Buffer.concat([ifi, encodeAttributes(attrs)]),
  );
}

/** NLMSG_DONE closing a dump. */
export const encodeDone = (seq: number, pid = 0): Buffer => encodeMessage({ type: NLMSG_DONE, flags: NLM_F_MULTI, seq, pid }, Buffer.alloc(4));
