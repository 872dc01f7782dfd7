// One lockdropd per machine and state directory. The state directory may sit on shared storage
// (the NSM records move with the addresses), so the lock file is per host name: a second
// instance on this host is refused, another node's daemon is not.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

export class AlreadyRunningError extends Error {
  constructor(readonly path: string, readonly pid: number) {
    super(`another lockdropd (pid ${pid}) is running with this state directory (lock file ${path})`);
    this.name = 'AlreadyRunningError';
  }
}

/**
 * A zombie is a dead daemon its parent has not reaped yet: one a planned restart started
 * (`lockdropctl restart`) is reparented when the old one exits, to whoever reaps orphans there.
 */
const zombie = (pid: number): boolean => {
  try {
    return /^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return !zombie(pid);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

export interface InstanceLock {
  path: string;
  release(): void;
}

/** Takes the lock file, replacing one left by a process that is gone. */
export function acquireInstanceLock(stateDir: string): InstanceLock {
  const path = join(stateDir, `.lockdropd-${hostname()}.pid`);
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
      if (pid > 0 && pid !== process.pid && alive(pid)) throw new AlreadyRunningError(path, pid);
      unlinkSync(path); // stale: its process is gone
    }
  }
  return {
    path,
    release: () => {
      try {
        if (Number.parseInt(readFileSync(path, 'utf8'), 10) === process.pid) unlinkSync(path);
      } catch {
        /* already gone */
      }
    },
  };
}
