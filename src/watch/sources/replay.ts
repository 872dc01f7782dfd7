// The replay source: a pcap trace's netlink messages, folded exactly as the netlink source folds
// live ones, with their recorded spacing or as fast as possible. Time comes from an rxjs
// scheduler, so a TestScheduler replays a trace in virtual time.
import { Observable, asyncScheduler, concatMap, defer, from, map, of, timer, type SchedulerLike } from 'rxjs';
import {
  AF_INET, AF_INET6, NetlinkDecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, RTM_DELADDR, RTM_GETADDR, RTM_GETLINK,
  decodeAddress, decodeDatagram, splitMessages, type AddressMessage, type LinkMessage, type NetlinkMessage,
} from '../codec/netlink';
import { NETLINK_ROUTE, type TraceRecord } from '../codec/pcap';
import { readTrace } from '../trace';
import { AddressTable } from '../table';
import { nowMs, type AddressChange, type SourceItem, type SourceName } from '../types';

interface PendingDump {
  what: 'links' | 'addresses';
  families: Array<4 | 6>;
  links: LinkMessage[];
  addresses: AddressMessage[];
}

/**
 * Folds trace records into source items. A dump whose request is in the trace (ours, or any
 * unfiltered one in an nlmon capture) replaces the table like a resync; other messages are
 * notifications. An RTM_DELADDR request (an nlmon capture sees `ip addr del`'s own message) is a
 * remove-intent, and its failed ack an intent-failed, as the bpf source reports them live.
 */
export class TraceFolder {
  private readonly table: AddressTable;
  private readonly dumps = new Map<number, PendingDump>();
  /** RTM_DELADDR requests awaiting their ack, by seq and type (an nlmon capture sees both). */
  private readonly intents = new Map<string, AddressChange>();

  constructor(private readonly source: SourceName = 'replay') {
    this.table = new AddressTable(source);
  }

  fold(r: TraceRecord, at: number): SourceItem[] {
    if (r.protocol !== NETLINK_ROUTE) return [];
    try {
      // Requests are told by NLM_F_REQUEST (the kernel never sets it), not by the packet type.
      const messages = splitMessages(r.datagram);
      return messages.length > 0 && messages[0].flags & NLM_F_REQUEST ? this.request(messages, at) : this.kernel(r.datagram, at);
    } catch (err) {
      if (!(err instanceof NetlinkDecodeError)) throw err;
      return [{ kind: 'overflow', source: this.source, at, reason: `malformed datagram: ${err.message}` }];
    }
  }

  private request(messages: NetlinkMessage[], at: number): SourceItem[] {
    const out: SourceItem[] = [];
    for (const m of messages) {
      if (!(m.flags & NLM_F_REQUEST)) continue;
      // Someone's `ip addr del` in an nlmon capture: the intent, before the kernel acts.
      if (m.type === RTM_DELADDR) {
        const a = decodeAddress(m);
        if (a.local && (a.family === AF_INET || a.family === AF_INET6)) {
          const intent: AddressChange = { address: a.local, family: a.family === AF_INET ? 4 : 6, prefixLen: a.prefixLen, ifindex: a.ifindex, kind: 'remove-intent', source: this.source, at };
          if (m.flags & NLM_F_ACK) this.intents.set(`${m.seq}:${m.type}`, intent);
          if (this.intents.size > 4096) this.intents.delete(this.intents.keys().next().value!);
          out.push(intent);
        }
      }
      if ((m.flags & NLM_F_DUMP) !== NLM_F_DUMP) continue;
      if (m.type === RTM_GETLINK) this.dumps.set(m.seq, { what: 'links', families: [], links: [], addresses: [] });
      // A dump filtered to one interface is not a snapshot of the table: leave it to merge.
      if (m.type === RTM_GETADDR && (m.payload.length < 8 || m.payload.readUInt32LE(4) === 0)) {
        const family = m.payload.length > 0 ? m.payload[0] : 0;
        const families: Array<4 | 6> = family === AF_INET ? [4] : family === AF_INET6 ? [6] : [4, 6];
        this.dumps.set(m.seq, { what: 'addresses', families, links: [], addresses: [] });
      }
    }
    return out;
  }

  private kernel(datagram: Buffer, at: number): SourceItem[] {
    const out: SourceItem[] = [];
    for (const m of decodeDatagram(datagram)) {
      const dump = m.header.seq !== 0 ? this.dumps.get(m.header.seq) : undefined;
      if (dump && m.kind === 'link') dump.links.push(m);
      else if (dump && m.kind === 'address') dump.addresses.push(m);
      else if (dump && (m.kind === 'done' || m.kind === 'error')) {
        this.dumps.delete(m.header.seq);
        if (m.kind === 'done') {
          out.push(...this.table.replace(dump.what === 'links' ? { links: dump.links } : { addresses: dump.addresses, families: dump.families }, at));
        }
      } else if (m.kind === 'error' && m.request) {
        // The ack of a request: a failed RTM_DELADDR ends its intent.
        const key = `${m.request.seq}:${m.request.type}`;
        const intent = this.intents.get(key);
        this.intents.delete(key);
        if (intent && m.errno !== 0) out.push({ ...intent, kind: 'intent-failed', at });
      } else out.push(...this.table.apply(m, at));
    }
    return out;
  }
}

export interface ReplayOptions {
  /** 'recorded': the trace's own spacing (default); 'fast': as fast as possible. */
  pace?: 'recorded' | 'fast';
  scheduler?: SchedulerLike;
  source?: SourceName;
  /** The clock stamped on changes: default the given scheduler's, else the watch clock (nowMs). */
  now?: () => number;
}

/** Replays a trace (records, or the path of a pcap file); completes at its end. */
export function replaySource(trace: TraceRecord[] | string, opts: ReplayOptions = {}): Observable<SourceItem> {
  const scheduler = opts.scheduler ?? asyncScheduler;
  const now = opts.now ?? (opts.scheduler ? () => scheduler.now() : nowMs);
  return defer(() => {
    const records = typeof trace === 'string' ? readTrace(trace) : trace;
    const folder = new TraceFolder(opts.source ?? 'replay');
    const start = scheduler.now();
    const t0 = records.length > 0 ? records[0].at : 0;
    const records$ = opts.pace !== 'fast'
      ? from(records).pipe(concatMap((r) => {
        const due = start + (r.at - t0) - scheduler.now();
        return due > 0 ? timer(due, scheduler).pipe(map(() => r)) : of(r);
      }))
      : from(records);
    // Each record folds into zero or more items, emitted in place (no inner Observable per record).
    return new Observable<SourceItem>((subscriber) => records$.subscribe({
      next: (r) => {
        for (const item of folder.fold(r, now())) subscriber.next(item);
      },
      error: (err) => subscriber.error(err),
      complete: () => subscriber.complete(),
    }));
  });
}
