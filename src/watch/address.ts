// Textual addresses: bytes ↔ text (RFC 5952 canonical IPv6), normalisation of text from other
// sources, and CIDR matching for the floating-address filter.
import { isIPv4, isIPv6 } from 'node:net';
import type { AddressFamily } from './types';

export class AddressParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AddressParseError';
  }
}

/** 4 or 16 address bytes (at offset, for length) as text: dotted quad, or RFC 5952 IPv6 (IPv4-mapped becomes dotted quad). */
export function formatAddress(bytes: Uint8Array, offset = 0, length = bytes.length - offset): string {
  if (length === 4) return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  if (length !== 16) throw new AddressParseError(`address of ${length} bytes`);
  const words: number[] = new Array(8);
  for (let i = 0; i < 8; i++) words[i] = (bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1];
  // ::ffff:a.b.c.d is an IPv4 address in the field's words (DESIGN: normalise it everywhere).
  if (words[0] === 0 && words[1] === 0 && words[2] === 0 && words[3] === 0 && words[4] === 0 && words[5] === 0xffff) return formatAddress(bytes, offset + 12, 4);
  // RFC 5952 4.2: compress the longest run of two or more zero words, the first on a tie.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += words[i].toString(16);
  }
  return out;
}

/** Text → bytes (4 or 16). A zone suffix (`%eth0`) is ignored. */
export function parseAddress(text: string): Buffer {
  const s = text.split('%')[0];
  if (isIPv4(s)) return Buffer.from(s.split('.').map(Number));
  if (!isIPv6(s)) throw new AddressParseError(`not an IP address: ${JSON.stringify(text)}`);
  let head = s;
  let tail4: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.')) {
    tail4 = s.slice(lastColon + 1).split('.').map(Number);
    head = s.slice(0, lastColon + 1) + '0:0';
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const l = left ? left.split(':') : [];
  const r = right === undefined ? [] : right ? right.split(':') : [];
  const words = right === undefined ? l : [...l, ...Array(8 - l.length - r.length).fill('0'), ...r];
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(parseInt(w, 16), i * 2));
  if (tail4.length === 4) out.set(tail4, 12);
  return out;
}

/** Canonical text of an address given as text (so netlink, poll and bpf agree on the key). */
export const normaliseAddress = (text: string): string => formatAddress(parseAddress(text));

export const familyOf = (address: string): AddressFamily => (parseAddress(address).length === 4 ? 4 : 6);

/** A prefix: `10.0.0.0/24`, `fd00::/64`, or a single address (full length). */
export interface Cidr {
  bytes: Buffer;
  prefixLen: number;
}

export function parseCidr(text: string): Cidr {
  const [addr, len, extra] = text.trim().split('/');
  if (extra !== undefined) throw new AddressParseError(`bad prefix: ${JSON.stringify(text)}`);
  const bytes = parseAddress(addr);
  const max = bytes.length * 8;
  const prefixLen = len === undefined ? max : Number(len);
  if (!/^\d+$/.test(len ?? String(max)) || prefixLen > max) throw new AddressParseError(`bad prefix length: ${JSON.stringify(text)}`);
  return { bytes, prefixLen };
}

export function cidrContains(cidr: Cidr, address: string | Buffer): boolean {
  const bytes = typeof address === 'string' ? parseAddress(address) : address;
  if (bytes.length !== cidr.bytes.length) return false;
  const full = cidr.prefixLen >> 3;
  for (let i = 0; i < full; i++) if (bytes[i] !== cidr.bytes[i]) return false;
  const rest = cidr.prefixLen & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[full] & mask) === (cidr.bytes[full] & mask);
}

const LOOPBACK = [parseCidr('127.0.0.0/8'), parseCidr('::1/128')];

export const isLoopback = (address: string): boolean => {
  const bytes = parseAddress(normaliseAddress(address));
  return LOOPBACK.some((c) => cidrContains(c, bytes));
};

/**
 * The floating-address filter: a list of addresses and/or CIDRs, or (undefined / empty) every
 * address but loopback.
 */
export function addressFilter(floating?: readonly string[]): (address: string) => boolean {
  if (!floating || floating.length === 0) return (a) => !isLoopback(a);
  const cidrs = floating.map(parseCidr);
  return (a) => {
    const bytes = parseAddress(normaliseAddress(a));
    return cidrs.some((c) => cidrContains(c, bytes));
  };
}
