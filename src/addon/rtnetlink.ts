// rtnetlink over the native addon: a multicast socket as an Observable of datagrams (with loss
// notices), and one-shot dumps. Parsing the messages is src/watch's job.
import { Observable, type Subscriber } from 'rxjs';
import type { RtnetlinkOverflow } from '../net';
import { loadAddon } from './native';

export interface RtnetlinkOptions {
  /** Receive buffer in bytes, set with SO_RCVBUFFORCE (default 8 MiB; tests make it tiny). */
  rcvbuf?: number;
  /** RTMGRP_* bit mask (default: link, IPv4 and IPv6 address groups, as the addon's rtnetlinkGroups has them). */
  groups?: number;
}

export interface RtnetlinkSocket {
  /**
   * Every datagram received on the groups (one or more netlink messages each), and an overflow
   * notice where messages were lost; the socket keeps working after one. Reading starts with the
   * first subscriber; until then the kernel queues messages in the receive buffer.
   */
  messages$: Observable<Buffer | RtnetlinkOverflow>;
  /** Sends a request on a separate socket and resolves with every reply datagram (to NLMSG_DONE/ERROR). */
  dump(request: Buffer): Promise<Buffer[]>;
  /** The receive buffer the kernel granted (it doubles the requested size for bookkeeping). */
  receiveBufferSize(): number;
  /** Closes the socket and completes messages$. */
  close(): void;
}

const DEFAULT_RCVBUF = 8 * 1024 * 1024;

/** Opens an rtnetlink socket in this process's network namespace. Throws AddonUnavailable without the addon. */
export function openRtnetlink(options: RtnetlinkOptions = {}): RtnetlinkSocket {
  const addon = loadAddon();
  const g = addon.rtnetlinkGroups;
  const subscribers = new Set<Subscriber<Buffer | RtnetlinkOverflow>>();
  let closed = false;
  const socket = new addon.RtnetlinkSocket(options.groups ?? (g.link | g.ipv4Ifaddr | g.ipv6Ifaddr), options.rcvbuf ?? DEFAULT_RCVBUF, (items) => {
    for (const item of items) {
      const value = typeof item === 'string' ? { overflow: true as const, reason: item } : item;
      for (const s of subscribers) s.next(value);
    }
  });
  const messages$ = new Observable<Buffer | RtnetlinkOverflow>((subscriber) => {
    if (closed) return subscriber.complete();
    subscribers.add(subscriber);
    if (subscribers.size === 1) socket.start();
    return () => {
      subscribers.delete(subscriber);
      if (subscribers.size === 0 && !closed) socket.stop();
    };
  });
  return {
    messages$,
    dump: rtnetlinkDump,
    receiveBufferSize: () => socket.receiveBufferSize(),
    close: () => {
      if (closed) return;
      closed = true;
      socket.close();
      for (const s of [...subscribers]) s.complete();
      subscribers.clear();
    },
  };
}

/** One request (e.g. RTM_GETADDR with NLM_F_DUMP) on its own socket: every reply datagram, in order. */
export function rtnetlinkDump(request: Buffer): Promise<Buffer[]> {
  return new Promise((resolvePromise, reject) => {
    try {
      loadAddon().rtnetlinkDump(request, (err, replies) => (err ? reject(err) : resolvePromise(replies)));
    } catch (err) {
      reject(err);
    }
  });
}
