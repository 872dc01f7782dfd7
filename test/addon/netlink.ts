// Just enough netlink framing for the addon's tests to find their own changes in raw datagrams
// (the real parser lives in src/watch).
import { ip, sh, uniqueName } from '../support/netns';
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

/**
 * An interface to put test addresses on. This kernel has no dummy driver (support/netns.ts's
 * dummyInterface fails with "Unknown device type"), so: one end of a veth pair, both ends up.
 */
export function testInterface(addresses: string[] = []): { name: string; ifindex: number; dispose(): void } {
  const name = uniqueName('lda');
  ip('link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`);
  ip('link', 'set', `${name}p`, 'up');
  ip('link', 'set', name, 'up');
  for (const a of addresses) ip('addr', 'add', a, 'dev', name, ...(a.includes(':') ? ['nodad'] : []));
  const ifindex = (JSON.parse(ip('-j', 'link', 'show', 'dev', name)) as Array<{ ifindex: number }>)[0].ifindex;
  return { name, ifindex, dispose: () => void sh('ip', ['link', 'del', name], { allowFail: true }) };
}
