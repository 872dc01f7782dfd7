// Handing descriptors from one process to the next (native/src/fdstore.cc): systemd's file
// descriptor store (sd_notify FDSTORE=1 with SCM_RIGHTS), the manager's side of that protocol,
// a memfd, and FD_CLOEXEC.
import { loadAddon } from './native';

/** One notification received on a manager's socket: its KEY=VALUE lines, the descriptors attached (close-on-exec), the sender's pid. */
export interface Notification {
  message: string;
  fds: Int32Array;
  pid: number;
}

/**
 * Sends `message` with `fds` attached (at most 253) to the manager's socket (a path or
 * '@abstract'), as sd_pid_notify_with_fds(3). Blocks up to 5 s for a manager that does not read,
 * then throws (EAGAIN); throws an errno error when the send fails.
 */
export function sdNotifyWithFds(socket: string, message: string, fds: readonly number[]): void {
  loadAddon().sendNotifyFds(socket, message, Int32Array.from(fds));
}

/** A non-blocking unix datagram socket bound at `path`, receiving notifications as a service manager does: its fd. */
export function bindNotifySocket(path: string): number {
  return loadAddon().bindNotifySocket(path);
}

/** The next notification queued on the socket, or null. */
export function receiveNotify(fd: number): Notification | null {
  return loadAddon().receiveNotify(fd);
}

/** An anonymous memory file (close-on-exec), named for /proc/PID/fd. */
export function memfdCreate(name: string): number {
  return loadAddon().memfdCreate(name);
}

export function setCloexec(fd: number, on: boolean): void {
  loadAddon().setCloexec(fd, on);
}
