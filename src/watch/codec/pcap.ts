// Traces of netlink traffic as pcap files with LINKTYPE_NETLINK (253): the format of a
// `tcpdump -i nlmon0` capture, so Wireshark opens ours and real captures replay.
// Each packet starts with the 16-byte "cooked" header of LINKTYPE_LINUX_SLL, in network byte
// order: packet type, ARPHRD_NETLINK (824), address length and 8 address bytes (unused: 0),
// then the netlink protocol (0 = NETLINK_ROUTE). The netlink datagram follows in host order.
// The packet type is what nlmon puts there: the kind of socket the message was delivered to
// (net/netlink/af_netlink.c: pkt_type = netlink_is_kernel(skb->sk), skb->sk being the
// receiver) — PACKET_KERNEL for a request sent to the kernel, PACKET_USER for what the kernel
// sends to a program. LINKTYPE_NETLINK calls the field unused, so readers should not rely on it
// (the replay source tells requests by NLM_F_REQUEST).
// See https://www.tcpdump.org/linktypes/LINKTYPE_NETLINK.html and Wireshark's packet-netlink.c.
// Reading also takes pcapng, the default of dumpcap and tshark. Pure: files are trace.ts's.

export const LINKTYPE_NETLINK = 253;
export const ARPHRD_NETLINK = 824;
export const NETLINK_ROUTE = 0;
/** nlmon's packet types (include/uapi/linux/if_packet.h): delivered to a user socket, or to the kernel. */
export const PACKET_USER = 6;
export const PACKET_KERNEL = 7;

const MAGIC_USEC = 0xa1b2c3d4;
const MAGIC_NSEC = 0xa1b23c4d;
const GLOBAL_HEADER_LEN = 24;
const RECORD_HEADER_LEN = 16;
const COOKED_LEN = 16;
const SNAPLEN = 262144;

export class PcapDecodeError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} (at byte ${offset})`);
    this.name = 'PcapDecodeError';
  }
}

/** One captured netlink datagram. */
export interface TraceRecord {
  /** Capture time, ms since the epoch (µs precision in the file). */
  at: number;
  /** Who sent it: the kernel (notifications, dump replies) or a user socket (requests), from the packet type. */
  from: 'kernel' | 'user';
  /** Netlink protocol (0 = NETLINK_ROUTE). */
  protocol: number;
  datagram: Buffer;
}

export function encodePcapHeader(): Buffer {
  const h = Buffer.alloc(GLOBAL_HEADER_LEN);
  h.writeUInt32LE(MAGIC_USEC, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeInt32LE(0, 8); // thiszone
  h.writeUInt32LE(0, 12); // sigfigs
  h.writeUInt32LE(SNAPLEN, 16);
  h.writeUInt32LE(LINKTYPE_NETLINK, 20);
  return h;
}

export function encodePcapRecord(r: TraceRecord): Buffer {
  const totalUs = Math.round(r.at * 1000);
  const len = COOKED_LEN + r.datagram.length;
  const out = Buffer.alloc(RECORD_HEADER_LEN + len);
  out.writeUInt32LE(Math.floor(totalUs / 1e6), 0);
  out.writeUInt32LE(totalUs % 1e6, 4);
  out.writeUInt32LE(len, 8);
  out.writeUInt32LE(len, 12);
  out.writeUInt16BE(r.from === 'kernel' ? PACKET_USER : PACKET_KERNEL, 16); // the receiver's kind
  out.writeUInt16BE(ARPHRD_NETLINK, 18);
  out.writeUInt16BE(0, 20); // address length; the 8 address bytes stay 0
  out.writeUInt16BE(r.protocol, 30);
  r.datagram.copy(out, RECORD_HEADER_LEN + COOKED_LEN);
  return out;
}

/** Reads a whole trace: pcap (either byte order, µs or ns) or pcapng (as dumpcap and tshark write). */
export function decodePcap(file: Buffer): TraceRecord[] {
  if (file.length < GLOBAL_HEADER_LEN) throw new PcapDecodeError(`pcap header truncated: ${file.length} bytes`, 0);
  if (file.readUInt32LE(0) === PCAPNG_SHB) return decodePcapng(file);
  const le = file.readUInt32LE(0);
  const be = file.readUInt32BE(0);
  const magic = le === MAGIC_USEC || le === MAGIC_NSEC ? le : be;
  if (magic !== MAGIC_USEC && magic !== MAGIC_NSEC) throw new PcapDecodeError(`not a pcap file (magic 0x${be.toString(16)})`, 0);
  const u32 = magic === le ? (o: number) => file.readUInt32LE(o) : (o: number) => file.readUInt32BE(o);
  const linktype = u32(20) & 0x0fffffff; // the top bits may carry FCS information
  if (linktype !== LINKTYPE_NETLINK) throw new PcapDecodeError(`link type ${linktype}, not LINKTYPE_NETLINK (253)`, 20);
  const fraction = magic === MAGIC_NSEC ? 1e6 : 1e3;
  const out: TraceRecord[] = [];
  let off = GLOBAL_HEADER_LEN;
  while (off < file.length) {
    if (file.length - off < RECORD_HEADER_LEN) throw new PcapDecodeError('record header truncated', off);
    const incl = u32(off + 8);
    if (incl > file.length - off - RECORD_HEADER_LEN) throw new PcapDecodeError(`record of ${incl} bytes runs past the file`, off);
    out.push(cooked(file.subarray(off + RECORD_HEADER_LEN, off + RECORD_HEADER_LEN + incl), u32(off) * 1000 + u32(off + 4) / fraction, off));
    off += RECORD_HEADER_LEN + incl;
  }
  return out;
}

/** One packet: the cooked header, then the netlink datagram. */
function cooked(data: Buffer, at: number, off: number): TraceRecord {
  if (data.length < COOKED_LEN) throw new PcapDecodeError(`packet of ${data.length} bytes has no netlink cooked header`, off);
  if (data.readUInt16BE(2) !== ARPHRD_NETLINK) throw new PcapDecodeError(`hatype ${data.readUInt16BE(2)}, not ARPHRD_NETLINK`, off);
  return { at, from: data.readUInt16BE(0) === PACKET_KERNEL ? 'user' : 'kernel', protocol: data.readUInt16BE(14), datagram: data.subarray(COOKED_LEN) };
}

const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_IDB = 1;
const PCAPNG_SPB = 3;
const PCAPNG_EPB = 6;
const PCAPNG_BYTE_ORDER = 0x1a2b3c4d;
const IF_TSRESOL = 9;

/**
 * pcapng (draft-ietf-opsawg-pcapng): section headers, interface descriptions (link type, time
 * resolution), enhanced and simple packet blocks. Packets of interfaces that are not netlink are
 * skipped; a file without a netlink interface is an error.
 */
function decodePcapng(file: Buffer): TraceRecord[] {
  const out: TraceRecord[] = [];
  let le = true;
  let interfaces: Array<{ netlink: boolean; unitsPerMs: number }> = [];
  let sawNetlink = false;
  let off = 0;
  while (off < file.length) {
    if (file.length - off < 12) throw new PcapDecodeError('pcapng block truncated', off);
    const type = file.readUInt32LE(off);
    if (type === PCAPNG_SHB) {
      const bom = file.readUInt32LE(off + 8);
      if (bom !== PCAPNG_BYTE_ORDER && file.readUInt32BE(off + 8) !== PCAPNG_BYTE_ORDER) throw new PcapDecodeError('pcapng section without its byte-order magic', off);
      le = bom === PCAPNG_BYTE_ORDER;
      interfaces = []; // interface ids are per section
    }
    const u32 = (o: number): number => (le ? file.readUInt32LE(o) : file.readUInt32BE(o));
    const u16 = (o: number): number => (le ? file.readUInt16LE(o) : file.readUInt16BE(o));
    const len = u32(off + 4);
    if (len < 12 || len % 4 !== 0 || len > file.length - off) throw new PcapDecodeError(`pcapng block length ${len}`, off);
    const body = off + 8;
    const end = off + len - 4;
    const blockType = u32(off);
    if (blockType === PCAPNG_IDB) {
      if (end - body < 8) throw new PcapDecodeError('interface description truncated', off);
      let tsresol = 6;
      for (let o = body + 8; o + 4 <= end; ) {
        const code = u16(o);
        const olen = u16(o + 2);
        if (code === 0) break;
        if (code === IF_TSRESOL && olen >= 1 && o + 4 < end) tsresol = file[o + 4];
        o += 4 + ((olen + 3) & ~3);
      }
      const perSecond = tsresol & 0x80 ? 2 ** (tsresol & 0x7f) : 10 ** tsresol;
      const netlink = (u16(body) & 0x0fff) === LINKTYPE_NETLINK;
      sawNetlink ||= netlink;
      interfaces.push({ netlink, unitsPerMs: perSecond / 1000 });
    } else if (blockType === PCAPNG_EPB) {
      if (end - body < 20) throw new PcapDecodeError('enhanced packet block truncated', off);
      const iface = interfaces[u32(body)];
      if (!iface) throw new PcapDecodeError(`packet of undeclared interface ${u32(body)}`, off);
      const captured = u32(body + 12);
      if (captured > end - body - 20) throw new PcapDecodeError(`packet of ${captured} bytes runs past its block`, off);
      if (iface.netlink) {
        const ts = u32(body + 4) * 2 ** 32 + u32(body + 8);
        out.push(cooked(file.subarray(body + 20, body + 20 + captured), ts / iface.unitsPerMs, off));
      }
    } else if (blockType === PCAPNG_SPB) {
      // No timestamp and the length of the original packet: only for a single interface.
      const iface = interfaces[0];
      if (!iface) throw new PcapDecodeError('simple packet block before any interface', off);
      const captured = Math.min(u32(body), end - body - 4);
      if (iface.netlink) out.push(cooked(file.subarray(body + 4, body + 4 + captured), out.at(-1)?.at ?? 0, off));
    }
    off += len;
  }
  if (!sawNetlink) throw new PcapDecodeError('no LINKTYPE_NETLINK interface in this pcapng file', 0);
  return out;
}
