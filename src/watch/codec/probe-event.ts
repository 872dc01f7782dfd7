// lockdrop's probe event (bpf/event.h), decoded from the ring buffer's records (the addon reads
// them, as it reads rtnetlink datagrams; decoding is this part's). Pure. A test checks
// EVENT_LAYOUT against the compiled object's BTF.
import { formatAddress } from '../../net';
import { AF_INET, AF_INET6, RTM_DELADDR, RTM_NEWADDR } from './netlink';

export const EVENT_VERSION = 1;
export const EVENT_SIZE = 104;

/** Field offsets and sizes of struct lockdrop_event (bytes). */
export const EVENT_LAYOUT = {
  version: { offset: 0, size: 2 },
  kind: { offset: 2, size: 2 },
  pid: { offset: 4, size: 4 },
  tgid: { offset: 8, size: 4 },
  netns: { offset: 12, size: 4 },
  ts_ns: { offset: 16, size: 8 },
  comm: { offset: 24, size: 16 },
  family: { offset: 40, size: 1 },
  prefix: { offset: 41, size: 1 },
  msg_type: { offset: 42, size: 2 },
  ifindex: { offset: 44, size: 4 },
  error: { offset: 48, size: 4 },
  seq: { offset: 52, size: 4 },
  address: { offset: 56, size: 16 },
  link_flags: { offset: 72, size: 4 },
  link_change: { offset: 76, size: 4 },
  nl_flags: { offset: 80, size: 2 },
  reserved: { offset: 82, size: 2 },
  ifname: { offset: 84, size: 16 },
  reserved2: { offset: 100, size: 4 },
} as const;

/**
 * intent: an rtnetlink request seen before the kernel acted on it; outcome: its result (error 0
 * or -errno, matched to the intent by tgid and seq); kernel: the kernel removed an address or
 * closed a link (fentry/kprobe), whoever asked.
 */
export type ProbeEventKind = 'intent' | 'outcome' | 'kernel';
const KINDS: Record<number, ProbeEventKind> = { 1: 'intent', 2: 'outcome', 3: 'kernel' };

export interface ProbeEvent {
  kind: ProbeEventKind;
  /** The thread (kernel pid) and the process (tgid: what ps calls the pid). */
  tid: number;
  pid: number;
  comm: string;
  netns: number;
  /** CLOCK_MONOTONIC nanoseconds (the clock of process.hrtime.bigint()). */
  tsNs: bigint;
  /** RTM_* of the request (of the acked request for an outcome). */
  msgType: number;
  /** 4 or 6 for address requests, 0 otherwise. */
  family: 0 | 4 | 6;
  prefixLen: number;
  ifindex: number;
  /** The interface name when the request named it (IFLA_IFNAME, IFA_LABEL) or the kernel event's device. */
  ifname?: string;
  /** Address requests: the address (IFA_LOCAL, else IFA_ADDRESS); undefined for links. */
  address?: string;
  /** Outcome: 0 or a negative errno. */
  error: number;
  seq: number;
  nlFlags: number;
  linkFlags: number;
  linkChange: number;
}

export class ProbeEventError extends Error {
  override readonly name = 'ProbeEventError';
}

function cString(record: Buffer, field: { offset: number; size: number }): string {
  const bytes = record.subarray(field.offset, field.offset + field.size);
  const nul = bytes.indexOf(0);
  return bytes.subarray(0, nul < 0 ? bytes.length : nul).toString('utf8');
}

/** Decodes one ring buffer record; a short record or another version is a ProbeEventError. */
export function decodeEvent(record: Buffer): ProbeEvent {
  if (record.length < EVENT_SIZE) throw new ProbeEventError(`probe event of ${record.length} bytes, expected ${EVENT_SIZE}`);
  const L = EVENT_LAYOUT;
  const version = record.readUInt16LE(L.version.offset);
  if (version !== EVENT_VERSION) throw new ProbeEventError(`probe event version ${version}, expected ${EVENT_VERSION}`);
  const kind = KINDS[record.readUInt16LE(L.kind.offset)];
  if (!kind) throw new ProbeEventError(`unknown probe event kind ${record.readUInt16LE(L.kind.offset)}`);
  const af = record[L.family.offset];
  const family = af === AF_INET ? 4 : af === AF_INET6 ? 6 : 0;
  const msgType = record.readUInt16LE(L.msg_type.offset);
  const isAddress = family !== 0 && (msgType === RTM_NEWADDR || msgType === RTM_DELADDR) && kind !== 'outcome';
  return {
    kind,
    tid: record.readUInt32LE(L.pid.offset),
    pid: record.readUInt32LE(L.tgid.offset),
    comm: cString(record, L.comm),
    netns: record.readUInt32LE(L.netns.offset),
    tsNs: record.readBigUInt64LE(L.ts_ns.offset),
    msgType,
    family,
    prefixLen: record[L.prefix.offset],
    ifindex: record.readUInt32LE(L.ifindex.offset),
    ifname: cString(record, L.ifname) || undefined,
    address: isAddress ? formatAddress(record, L.address.offset, family === 4 ? 4 : 16) : undefined,
    error: record.readInt32LE(L.error.offset),
    seq: record.readUInt32LE(L.seq.offset),
    nlFlags: record.readUInt16LE(L.nl_flags.offset),
    linkFlags: record.readUInt32LE(L.link_flags.offset),
    linkChange: record.readUInt32LE(L.link_change.offset),
  };
}
