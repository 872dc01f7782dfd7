// Addresses as lockdrop compares them: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
// dual-stack socket reports for an IPv4 peer) is the IPv4 address itself.
import { isIPv6 } from 'node:net';

const MAPPED_V4 = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

export function normaliseAddress(address: string): string {
  const m = MAPPED_V4.exec(address);
  if (m) return m[1]!;
  return isIPv6(address) ? address.toLowerCase() : address;
}
