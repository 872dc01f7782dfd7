// The bpf source: lockdrop's kernel probes as address changes with attribution. The probes are
// given (the daemon opens them through the native addon), as the netlink source is given its socket.
//   intent RTM_DELADDR            → remove-intent (before the kernel acts: the pipeline drains)
//   its outcome, error < 0        → intent-failed (the drain ends, nothing is dropped)
//   its outcome, error 0          → removed (confirmed, with who asked)
//   RTM_NEWADDR acked, IPv4       → added (IPv6 waits for netlink: only it knows when DAD is done)
//   kernel probe (fentry/kprobe)  → removed, whoever asked (link deletion, DAD failure, netns teardown)
// Link requests (down, delete) carry no address: the netlink source turns them into removals.
// Events the probes could not queue (ring buffer full) come out as an overflow marker.
import { Observable, map } from 'rxjs';
import { normaliseAddress } from '../../net';
import { RTM_DELADDR, RTM_NEWADDR } from '../codec/netlink';
import { decodeEvent, type ProbeEvent } from '../codec/probe-event';
import { monotonicNsToMs, type AddressChange, type KernelProbes, type SourceItem } from '../types';

/** Requests awaiting their outcome are forgotten after this many (oldest first). */
const MAX_PENDING = 4096;

/** Folds probe events into address changes: pairs each request with its outcome (pid + seq). Pure. */
export class IntentTracker {
  private readonly pending = new Map<string, AddressChange & { msgType: number }>();

  handle(ev: ProbeEvent): AddressChange[] {
    const at = monotonicNsToMs(ev.tsNs);
    if (ev.kind === 'kernel') {
      if (ev.msgType !== RTM_DELADDR || !ev.address || !ev.family) return [];
      return [{ ...this.change(ev, at), kind: 'removed' }];
    }
    const key = `${ev.pid}:${ev.seq}`;
    if (ev.kind === 'intent') {
      if ((ev.msgType !== RTM_DELADDR && ev.msgType !== RTM_NEWADDR) || !ev.address || !ev.family) return [];
      const intent = { ...this.change(ev, at), kind: 'remove-intent' as const, msgType: ev.msgType };
      this.pending.delete(key);
      this.pending.set(key, intent);
      if (this.pending.size > MAX_PENDING) this.pending.delete(this.pending.keys().next().value!);
      return ev.msgType === RTM_DELADDR ? [strip(intent)] : [];
    }
    const intent = this.pending.get(key);
    if (!intent || intent.msgType !== ev.msgType) return [];
    this.pending.delete(key);
    if (intent.msgType === RTM_DELADDR) return [{ ...strip(intent), kind: ev.error < 0 ? 'intent-failed' : 'removed', at }];
    return ev.error === 0 && intent.family === 4 ? [{ ...strip(intent), kind: 'added', at }] : [];
  }

  private change(ev: ProbeEvent, at: number): AddressChange {
    return {
      address: normaliseAddress(ev.address!),
      family: ev.family as 4 | 6,
      prefixLen: ev.prefixLen,
      ifindex: ev.ifindex,
      ...(ev.ifname !== undefined && { label: ev.ifname }),
      kind: 'removed',
      source: 'bpf',
      at,
      pid: ev.pid,
      comm: ev.comm,
      netns: ev.netns,
    };
  }
}

const strip = ({ msgType: _unused, ...change }: AddressChange & { msgType: number }): AddressChange => change;

/**
 * The bpf source. Cold: subscribing opens the probes (loads and attaches them), unsubscribing
 * closes them. Where they cannot run, `open` throws and the source errors at once with that
 * reason (the addon's AddonUnavailable, BpfUnsupported): run on the other sources then. A record
 * of another layout is an error too (ProbeEventError).
 */
export function bpfSource(open: () => KernelProbes): Observable<SourceItem> {
  return new Observable<SourceItem>((subscriber) => {
    const probes = open();
    const tracker = new IntentTracker();
    let lost = 0;
    const sub = probes.records$.pipe(map(decodeEvent)).subscribe({
      next: (ev) => {
        // A full ring buffer drops events (intents, outcomes): say so before what follows the gap.
        const nowLost = probes.lostEvents();
        if (nowLost > lost) {
          subscriber.next({ kind: 'overflow', source: 'bpf', at: monotonicNsToMs(ev.tsNs), reason: `${nowLost - lost} probe events lost (ring buffer full)` });
          lost = nowLost;
        }
        for (const c of tracker.handle(ev)) subscriber.next(c);
      },
      error: (err) => subscriber.error(err),
      complete: () => subscriber.complete(),
    });
    return () => {
      sub.unsubscribe();
      probes.close();
    };
  });
}
