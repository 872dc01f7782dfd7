// `lockdrop record --out FILE`: writes what an rtnetlink socket receives to a pcap trace — the
// initial dump (its requests too, so a replay knows a snapshot from a notification), every
// notification, and a re-dump after each overflow.
import { encodeGetAddrDump, encodeGetLinkDump } from './codec/netlink';
import { NETLINK_ROUTE } from './codec/pcap';
import { TraceWriter } from './trace';
import { nowMs, type RtnetlinkTransport } from './types';

export interface TraceRecorder {
  /** Resolves once the initial dump is in the file: changes made after it are recorded. */
  ready: Promise<void>;
  /** Records written so far. */
  readonly count: number;
  /** Overflows seen (each followed by a re-dump in the trace). */
  readonly overflows: number;
  /** Stops and closes the file (after an in-flight dump, if any, is written). */
  stop(): Promise<void>;
}

let nextSeq = 0x10000; // apart from the netlink source's sequence numbers

export function recordTrace(opts: { out: string; transport: RtnetlinkTransport; now?: () => number }): TraceRecorder {
  const now = opts.now ?? nowMs;
  const writer = new TraceWriter(opts.out);
  let overflows = 0;
  let stopped = false;
  const write = (from: 'kernel' | 'user', datagram: Buffer): void => {
    if (!stopped) writer.write({ at: now(), from, protocol: NETLINK_ROUTE, datagram });
  };
  const dump = async (request: Buffer): Promise<void> => {
    write('user', request);
    for (const d of await opts.transport.dump(request)) write('kernel', d);
  };
  let pending: Promise<void> = Promise.resolve();
  // Each re-dump runs after the previous one, whether that one worked or not.
  const redump = (): Promise<void> => (pending = pending.catch(() => undefined).then(async () => {
    await dump(encodeGetLinkDump(nextSeq++));
    await dump(encodeGetAddrDump(nextSeq++));
  }));
  const sub = opts.transport.messages$.subscribe((m) => {
    if (Buffer.isBuffer(m)) write('kernel', m);
    else {
      overflows++;
      redump().catch(() => undefined); // a failed re-dump leaves a gap in the trace, nothing worse
    }
  });
  const ready = redump();
  return {
    ready,
    get count() { return writer.count; },
    get overflows() { return overflows; },
    async stop() {
      sub.unsubscribe();
      await pending.catch(() => undefined);
      stopped = true;
      writer.close();
    },
  };
}
