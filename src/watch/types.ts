// The contract of the watch part: what address sources observe (AddressChange) and what the
// pipeline hands to failover (AddressEvent). The bpf source (src/watch/sources/bpf.ts) and the
// failover controller code against these types.
import type { Observable } from 'rxjs';
import type { AddressFamily, RtnetlinkOverflow } from '../net';

export type { AddressFamily, RtnetlinkOverflow };
export type SourceName = 'netlink' | 'bpf' | 'poll' | 'replay';

export interface AddressFlags {
  /** IPv6 address still doing duplicate address detection: not usable yet. */
  tentative?: boolean;
  /** IPv6 duplicate address detection failed: never usable. */
  dadfailed?: boolean;
  deprecated?: boolean;
}

/** One source's normalised observation of one address. */
export interface AddressChange {
  /** Textual address, IPv4 dotted quad or compressed IPv6 (never `::ffff:` mapped). */
  address: string;
  family: AddressFamily;
  prefixLen?: number;
  ifindex: number;
  label?: string;
  /**
   * added / removed: the address is (no longer) configured.
   * remove-intent: a request to remove it was seen before the kernel acted (bpf source);
   * intent-failed: that request failed (bpf source).
   */
  kind: 'added' | 'removed' | 'remove-intent' | 'intent-failed';
  source: SourceName;
  /** Milliseconds on the performance.timeOrigin + performance.now() clock, or the kernel event time. */
  at: number;
  flags?: AddressFlags;
  /** Who asked (bpf source): the process id and its command name. */
  pid?: number;
  comm?: string;
  /** Network namespace inode number of the change (bpf source). */
  netns?: number;
}

/**
 * A source lost events (e.g. the netlink receive buffer overflowed, ENOBUFS). Sources that can
 * resynchronise do so themselves and emit the difference; the marker tells the pipeline and the
 * metrics that a gap happened.
 */
export interface SourceOverflow {
  kind: 'overflow';
  source: SourceName;
  at: number;
  /** Why, in words (e.g. "ENOBUFS"). */
  reason?: string;
}

/** What a source emits. */
export type SourceItem = AddressChange | SourceOverflow;

export const isOverflow = (item: SourceItem): item is SourceOverflow => item.kind === 'overflow';

/** An address source: a cold Observable that starts observing on subscribe. */
export type AddressSource = Observable<SourceItem>;

/** The pipeline's output: one real transition of one (floating) address. */
export interface AddressEvent {
  /**
   * up: the address became local and usable; down: it stopped being local;
   * draining: its removal was requested (refuse new locks through it, keep the existing ones);
   * drain-ended: that removal did not happen (failed or timed out) — the address is up as before.
   */
  type: 'up' | 'down' | 'draining' | 'drain-ended';
  address: string;
  family: AddressFamily;
  ifindex: number;
  /** The source that saw the change first. */
  source: SourceName;
  /** Earliest observation time of the change (ms, same clock as AddressChange.at). */
  at: number;
  /** Attribution, when some source (bpf) knew who made the change. */
  pid?: number;
  comm?: string;
  /** When the pipeline emitted this event (ms, same clock): detectedAt - at is the detection delay. */
  detectedAt: number;
}

/**
 * Where an address stands in the pipeline's output. Per address the events are real transitions:
 * each one leaves the phase the one before it left (the first leaves 'down'), as TRANSITIONS
 * says; whoever follows the stream knows an address's phase from its last event alone.
 */
export type AddressPhase = 'down' | 'up' | 'draining';

export const TRANSITIONS: { readonly [T in AddressEvent['type']]: { readonly from: readonly AddressPhase[]; readonly to: AddressPhase } } = {
  up: { from: ['down'], to: 'up' },
  down: { from: ['up', 'draining'], to: 'down' },
  draining: { from: ['up'], to: 'draining' },
  'drain-ended': { from: ['draining'], to: 'up' },
};

/** Milliseconds on the clock every AddressChange.at uses. */
export const nowMs = (): number => performance.timeOrigin + performance.now();

// CLOCK_MONOTONIC (the probes' ts_ns, process.hrtime.bigint()) → the same clock, in ms.
const monotonicAtOriginNs = process.hrtime.bigint() - BigInt(Math.round(performance.now() * 1e6));
export const monotonicNsToMs = (ns: bigint): number => performance.timeOrigin + Number(ns - monotonicAtOriginNs) / 1e6;

/**
 * What the netlink source needs from an rtnetlink socket (the native addon provides one; tests use
 * a fake). messages$ carries whole datagrams (one or more netlink messages each) received on the
 * multicast groups; dump sends one request (NLM_F_DUMP) and resolves with every reply datagram up
 * to and including NLMSG_DONE.
 */
export interface RtnetlinkTransport {
  messages$: Observable<Buffer | RtnetlinkOverflow>;
  dump(request: Buffer): Promise<Buffer[]>;
}

/**
 * What the bpf source needs from lockdrop's kernel probes (the native addon loads them; tests may
 * use a fake): records$ carries the ring buffer's records, one struct lockdrop_event each
 * (codec/probe-event.ts decodes them); lostEvents counts the events the probes could not queue.
 */
export interface KernelProbes {
  records$: Observable<Buffer>;
  lostEvents(): number;
  close(): void;
}
