// Just enough netlink framing for the addon's tests to find their own changes in raw datagrams
// (the real parser lives in src/watch).
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const NLMSG_DONE = 3;
export const NLMSG_ERROR = 2;

export interface RawMessage { type: number; flags: number; seq: number; body: Buffer }

export function splitMessages(datagram: Buffer): RawMessage[] {
  const out: RawMessage[] = [];
  for (let off = 0; off + 16 <= datagram.length; ) {
    const len = datagram.readUInt32LE(off);
    if (len < 16 || off + len > datagram.length) break;
    out.push({ type: datagram.readUInt16LE(off + 4), flags: datagram.readUInt16LE(off + 6), seq: datagram.readUInt32LE(off + 8), body: datagram.subarray(off + 16, off + len) });
    off += (len + 3) & ~3;
  }
  return out;
}

/** An RTM_GETADDR dump request for every family. */
export function getAddrRequest(seq: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(24, 0);
  b.writeUInt16LE(RTM_GETADDR, 4);
  b.writeUInt16LE(0x1 | 0x300, 6); // NLM_F_REQUEST | NLM_F_DUMP
  b.writeUInt32LE(seq, 8);
  return b;
}

/** True when an address message's attributes carry this IPv4 address. */
export const carriesIPv4 = (m: RawMessage, address: string): boolean => m.body.includes(Buffer.from(address.split('.').map(Number)));
