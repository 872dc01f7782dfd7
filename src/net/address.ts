// An IP address as lockdrop keys and compares it, wherever it came from (a socket's peer, netlink
// bytes, a probe event, the configuration, an operator's command): one canonical text.
//  - IPv4: dotted quad. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket
//    reports for an IPv4 peer) is the IPv4 address itself.
//  - IPv6: RFC 5952 text: lower case, no leading zeros, the longest run (first on a tie) of two or
//    more zero words as `::`.
//  - A zone id (`fe80::1%eth0`) is kept, verbatim (interface names are case-sensitive): a
//    link-local address without its zone names no single host. Byte forms and CIDR matching
//    ignore it.
import { isIPv4, isIPv6 } from 'node:net';

export type AddressFamily = 4 | 6;

export class AddressParseError extends Error {
  override readonly name = 'AddressParseError';
}

/** Canonical dotted quads pass untouched: the common case costs one test. */
const CANONICAL_V4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

const isMapped = (b: Uint8Array, at: number): boolean => {
  for (let i = 0; i < 10; i++) if (b[at + i] !== 0) return false;
  return b[at + 10] === 0xff && b[at + 11] === 0xff;
};

/** 4 or 16 address bytes (at offset, for length) as canonical text. */
export function formatAddress(bytes: Uint8Array, offset = 0, length = bytes.length - offset): string {
  if (length === 4 || (length === 16 && isMapped(bytes, offset))) {
    const at = offset + length - 4;
    return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`;
  }
  if (length !== 16) throw new AddressParseError(`an address has 4 or 16 bytes, not ${length}`);
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!);
  // RFC 5952 4.2.2/4.2.3: only a run of two or more zero words is compressed, the first longest.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return words.map((w) => w.toString(16)).join(':');
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

function splitZone(text: string): [string, string | undefined] {
  const at = text.indexOf('%');
  if (at < 0) return [text, undefined];
  const zone = text.slice(at + 1);
  if (zone === '' || /[\s%/]/.test(zone)) throw new AddressParseError(`bad zone id in ${JSON.stringify(text)}`);
  return [text.slice(0, at), zone];
}

/** Text to bytes: 4 for IPv4, 16 for IPv6 (a zone id is ignored). Throws AddressParseError. */
export function parseAddress(text: string): Buffer {
  const [s, zone] = splitZone(text);
  if (isIPv4(s) && zone === undefined) return Buffer.from(s.split('.').map(Number));
  if (!isIPv6(s)) throw new AddressParseError(`not an IP address: ${JSON.stringify(text)}`);
  const out = Buffer.alloc(16);
  let head = s;
  let words = 8;
  const dot = s.lastIndexOf(':');
  if (s.includes('.', dot)) {
    // Trailing dotted quad (`::ffff:1.2.3.4`): the last two words.
    out.set(s.slice(dot + 1).split('.').map(Number), 12);
    head = s.slice(0, dot + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
    words = 6;
  }
  const gap = head.indexOf('::');
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const left = groups(gap < 0 ? head : head.slice(0, gap));
  const right = gap < 0 ? [] : groups(head.slice(gap + 2));
  const all = gap < 0 ? left : [...left, ...Array<string>(words - left.length - right.length).fill('0'), ...right];
  all.forEach((w, i) => out.writeUInt16BE(parseInt(w, 16), i * 2));
  return out;
}

/**
 * Spellings seen → canonical text. Every IPv6 datagram's peer is normalised, and the same few
 * peers come back again and again: a lookup costs ~50 ns, a parse ~5 µs. Bounded, so a flood of
 * distinct addresses cannot grow it without end.
 */
const seen = new Map<string, string>();
const SEEN_MAX = 4096;

/** The canonical text of an address (see the top of this file). Throws AddressParseError. */
export function normaliseAddress(text: string): string {
  if (CANONICAL_V4.test(text)) return text;
  const known = seen.get(text);
  if (known !== undefined) return known;
  const bytes = parseAddress(text);
  const plain = formatAddress(bytes);
  const [, zone] = splitZone(text);
  const out = zone === undefined || bytes.length === 4 || isMapped(bytes, 0) ? plain : `${plain}%${zone}`;
  if (seen.size >= SEEN_MAX) seen.clear();
  seen.set(text, out);
  return out;
}

const parses = (parse: () => unknown): boolean => {
  try {
    parse();
    return true;
  } catch {
    return false;
  }
};

/** True when the text is an IP address (in any spelling normaliseAddress takes). */
export const isAddress = (text: string): boolean => parses(() => parseAddress(text));

export function familyOf(address: string): AddressFamily {
  const bytes = parseAddress(address);
  return bytes.length === 4 || isMapped(bytes, 0) ? 4 : 6;
}

/** A network: `10.0.0.0/24`, `fd00::/64`, or one address (its full length). */
export interface Cidr {
  bytes: Buffer;
  prefixLen: number;
}

export function parseCidr(text: string): Cidr {
  const [addr = '', len, extra] = text.trim().split('/');
  if (extra !== undefined) throw new AddressParseError(`bad network: ${JSON.stringify(text)}`);
  const bytes = parseAddress(addr);
  const max = bytes.length * 8;
  if (len !== undefined && !/^\d{1,3}$/.test(len)) throw new AddressParseError(`bad prefix length: ${JSON.stringify(text)}`);
  const prefixLen = len === undefined ? max : Number(len);
  if (prefixLen > max) throw new AddressParseError(`bad prefix length: ${JSON.stringify(text)}`);
  // A mapped network (::ffff:10.0.0.0/104) is the IPv4 network it maps (10.0.0.0/8).
  if (isMapped(bytes, 0) && prefixLen >= 96) return { bytes: bytes.subarray(12), prefixLen: prefixLen - 96 };
  return { bytes, prefixLen };
}

/** True when the text is an address or a CIDR network parseCidr takes. */
export const isNetwork = (text: string): boolean => parses(() => parseCidr(text));

/** Whether the network holds the address; an IPv4 network never holds an IPv6 address, nor the reverse. */
export function cidrContains(cidr: Cidr, address: string | Buffer): boolean {
  let bytes = typeof address === 'string' ? parseAddress(address) : address;
  if (bytes.length === 16 && isMapped(bytes, 0)) bytes = bytes.subarray(12);
  if (bytes.length !== cidr.bytes.length) return false;
  const full = cidr.prefixLen >> 3;
  for (let i = 0; i < full; i++) if (bytes[i] !== cidr.bytes[i]) return false;
  const rest = cidr.prefixLen & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[full]! & mask) === (cidr.bytes[full]! & mask);
}

/**
 * A set of networks (addresses and/or CIDRs) as a test: true when one of them holds the address.
 * A malformed network throws AddressParseError; an address that does not parse is in no set.
 */
export function networkSet(networks: readonly string[]): (address: string) => boolean {
  const cidrs = networks.map(parseCidr);
  return (address) => {
    let bytes: Buffer;
    try {
      bytes = parseAddress(address);
    } catch {
      return false;
    }
    return cidrs.some((c) => cidrContains(c, bytes));
  };
}

const LOOPBACK = [parseCidr('127.0.0.0/8'), parseCidr('::1/128')];
const LINK_LOCAL = parseCidr('fe80::/10');

/** 127.0.0.0/8 (mapped or not) and ::1. */
export const isLoopback = (address: string): boolean => {
  try {
    const bytes = parseAddress(address);
    return LOOPBACK.some((c) => cidrContains(c, bytes));
  } catch {
    return false;
  }
};

/** IPv6 link-local (fe80::/10): usable only with a zone id. */
export const isLinkLocal = (address: string): boolean => {
  try {
    return cidrContains(LINK_LOCAL, parseAddress(address));
  } catch {
    return false;
  }
};
