// The one thing besides datagrams that an rtnetlink socket hands its reader: the native addon's
// socket (src/addon) emits it, the netlink source and the recorder (src/watch) act on it.

/** Multicast messages were lost (ENOBUFS) or the socket's poll failed: re-dump to resynchronise. */
export interface RtnetlinkOverflow {
  overflow: true;
  /** Why, in words (e.g. "ENOBUFS"). */
  reason: string;
}
