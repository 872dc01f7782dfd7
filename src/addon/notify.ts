// sd_notify(3) over the native addon (native/src/notify.cc): Node has no unix datagram sockets.
import { loadAddon } from './native';

/**
 * Sends `message` (newline-separated KEY=VALUE lines, e.g. 'READY=1\nSTATUS=serving') as one
 * datagram to the service manager's socket: `socket` defaults to $NOTIFY_SOCKET, an absolute path
 * or an '@abstract' name. False when there is no socket (not run by a manager that wants
 * notifications); true when sent. Throws an errno error when the address is unusable
 * ('EAFNOSUPPORT', 'ENAMETOOLONG') or the send fails ('ENOENT', 'ECONNREFUSED', 'EAGAIN' when
 * the receiver's queue is full: the send never blocks).
 */
export function sdNotify(message: string, socket: string | undefined = process.env.NOTIFY_SOCKET): boolean {
  if (socket === undefined || socket === '') return false;
  loadAddon().sendNotify(socket, message);
  return true;
}
