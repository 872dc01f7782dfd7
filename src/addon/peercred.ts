// SO_PEERCRED over the native addon (native/src/peercred.cc): Node's net.Socket has no way to ask
// who connected to a unix socket.
import { loadAddon } from './native';

/** The peer of a connected unix socket as the kernel recorded it when the peer called connect(). */
export interface PeerCredentials {
  /** In our PID namespace; 0 when the peer's process is not visible from it. */
  pid: number;
  /** Effective uid and gid, in our user namespace; 65534 (the overflow id) when unmapped there. */
  uid: number;
  gid: number;
}

/**
 * getsockopt(fd, SOL_SOCKET, SO_PEERCRED); a listening socket answers with its own creator.
 * Throws an errno error ('EBADF', 'ENOTSOCK', 'EAFNOSUPPORT' for a socket that is not AF_UNIX,
 * 'ENOTCONN' for one that never connected), a TypeError for an fd that is not a non-negative
 * integer, AddonUnavailable without the addon.
 */
export const peerCredentials = (fd: number): PeerCredentials => loadAddon().peerCredentials(fd);
