// The netlink source: subscribe to the address and link groups, dump links and addresses, then
// fold notifications; on an overflow (or a datagram we cannot decode) re-dump and emit the
// difference. Like a Kubernetes watcher: list, watch, resync on a gap.
import { Observable } from 'rxjs';
import {
  AF_UNSPEC, NetlinkDecodeError, NLM_F_DUMP_INTR, decodeDatagram, encodeGetAddrDump, encodeGetLinkDump,
  type AddressMessage, type LinkMessage,
} from '../codec/netlink';
import { AddressTable } from '../table';
import { nowMs, type RtnetlinkTransport, type SourceItem, type SourceName } from '../types';

export class NetlinkDumpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetlinkDumpError';
  }
}

interface DumpResult {
  links?: LinkMessage[];
  addresses?: AddressMessage[];
  /** NLM_F_DUMP_INTR was set: the table changed during the dump. */
  interrupted: boolean;
}

/** Decodes the reply datagrams of one dump; an NLMSG_ERROR in them is a NetlinkDumpError. */
function decodeDump(datagrams: Buffer[]): DumpResult {
  const links: LinkMessage[] = [];
  const addresses: AddressMessage[] = [];
  let interrupted = false;
  for (const d of datagrams) {
    for (const m of decodeDatagram(d)) {
      if (m.header.flags & NLM_F_DUMP_INTR) interrupted = true;
      if (m.kind === 'link') links.push(m);
      else if (m.kind === 'address') addresses.push(m);
      else if (m.kind === 'error' && m.errno !== 0) throw new NetlinkDumpError(`dump failed: errno ${m.errno}`);
    }
  }
  return { links, addresses, interrupted };
}

export interface NetlinkSourceOptions {
  /** The name put on changes (default 'netlink'). */
  source?: SourceName;
  now?: () => number;
  /** Dumps retried while notifications keep arriving during them (the snapshot may be stale). */
  maxDumpRetries?: number;
}

let nextSeq = 1;

export function netlinkSource(transport: RtnetlinkTransport, opts: NetlinkSourceOptions = {}): Observable<SourceItem> {
  const source = opts.source ?? 'netlink';
  const now = opts.now ?? nowMs;
  const maxRetries = opts.maxDumpRetries ?? 3;
  return new Observable<SourceItem>((subscriber) => {
    const table = new AddressTable(source);
    let queue: Array<{ datagram: Buffer; at: number } | null> = []; // null: resync needed
    let busy = true; // the initial dump runs first
    let closed = false;
    let ended = false;

    const emitAll = (items: SourceItem[]): void => {
      for (const c of items) if (!closed) subscriber.next(c);
    };

    const resync = async (): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        // Whatever was queued before this dump starts is superseded by it.
        queue = [];
        const links = decodeDump(await transport.dump(encodeGetLinkDump(nextSeq++)));
        const addrs = decodeDump(await transport.dump(encodeGetAddrDump(nextSeq++, AF_UNSPEC)));
        if (closed) return;
        // A notification that arrived during the dump may be older or newer than the snapshot:
        // dump again while that happens, then fold the rest in after the snapshot.
        const raced = queue.length > 0 || links.interrupted || addrs.interrupted;
        if (raced && attempt < maxRetries) continue;
        emitAll(table.replace({ links: links.links, addresses: addrs.addresses, families: [4, 6] }, now()));
        return;
      }
    };

    const drain = async (): Promise<void> => {
      while (!closed && queue.length > 0) {
        const item = queue.shift()!;
        if (item === null) {
          await resync();
          continue;
        }
        // A datagram we cannot read, or the kernel saying it dropped some, is a gap: re-dump.
        let gap: string | undefined;
        try {
          for (const m of decodeDatagram(item.datagram)) {
            if (m.kind === 'overrun') {
              gap = 'NLMSG_OVERRUN: the kernel lost messages';
              break;
            }
            emitAll(table.apply(m, item.at));
          }
        } catch (err) {
          if (!(err instanceof NetlinkDecodeError)) throw err;
          gap = `malformed datagram: ${err.message}`;
        }
        if (gap !== undefined) {
          emitAll([{ kind: 'overflow', source, at: now(), reason: gap }]);
          queue.push(null);
        }
      }
    };

    const run = (work: () => Promise<void>): void => {
      busy = true;
      work()
        .then(() => drain())
        .then(() => {
          busy = false;
          if (ended && !closed) subscriber.complete();
        })
        .catch((err) => { if (!closed) subscriber.error(err); });
    };

    const sub = transport.messages$.subscribe({
      next: (m) => {
        if (Buffer.isBuffer(m)) {
          queue.push({ datagram: m, at: now() }); // observed on arrival, even if folded after a dump
        } else {
          emitAll([{ kind: 'overflow', source, at: now(), reason: m.reason }]);
          // Everything queued before the gap is superseded by the re-dump.
          queue = [null];
        }
        if (!busy) run(drain);
      },
      error: (err) => subscriber.error(err),
      complete: () => {
        ended = true;
        if (!busy) subscriber.complete();
      },
    });
    run(resync);

    return () => {
      closed = true;
      sub.unsubscribe();
    };
  });
}
