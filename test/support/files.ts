// Helpers for tests on real files: filesystems mounted inside the test's private mount namespace
// (tmpfs, an ext4 image on a loop device) and a lock holder that is a separate process (python3's
// fcntl: POSIX and OFD locks), as a local user of the exported files would be.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { sh } from './netns';

export interface Mounted {
  dir: string;
  dispose(): void;
}

/** A fresh tmpfs on a new directory (needs root in a private mount namespace). */
export function mountTmpfs(sizeMiB = 16): Mounted {
  const dir = mkdtempSync(join(tmpdir(), 'lockdrop-tmpfs-'));
  sh('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'lockdrop-test', dir]);
  return {
    dir,
    dispose: () => {
      sh('umount', [dir]); // fails (EBUSY) while a file of it is still open: a leak to report
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * mkfs.ext4 on a file, mounted through a loop device (needs root in a private mount namespace).
 * `mount -o loop` sets the device's autoclear flag: it detaches itself when the filesystem goes,
 * by dispose or by the namespace dying with the process, so no loop device outlives a test.
 */
export function mountExt4(sizeMiB = 16): Mounted & { device: string } {
  const base = mkdtempSync(join(tmpdir(), 'lockdrop-ext4-'));
  const image = join(base, 'fs.img');
  const dir = join(base, 'mnt');
  mkdirSync(dir);
  sh('truncate', ['-s', `${sizeMiB}M`, image]);
  sh('mkfs.ext4', ['-q', '-F', image]);
  sh('mount', ['-o', 'loop', image, dir]);
  const device = sh('findmnt', ['-n', '-o', 'SOURCE', '--mountpoint', dir]).trim();
  return {
    dir,
    device,
    dispose: () => {
      sh('umount', [dir]); // fails (EBUSY) while a file of it is still open: a leak to report
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** How many threads and open fds this process has now. */
export const taskCount = (): number => readdirSync('/proc/self/task').length;
export const fdCount = (): number => readdirSync('/proc/self/fd').length;

// One command per line on stdin, one answer per line on stdout:
//   posix|ofd r|w|u START LEN   -> ok | EAGAIN | <errno name>   (F_SETLK / F_OFD_SETLK)
//   test r|w START LEN          -> none | r|w START LEN PID      (F_GETLK)
const HOLDER = `
import fcntl, os, struct, sys, errno
fd = os.open(sys.argv[1], os.O_RDWR)
T = {'r': fcntl.F_RDLCK, 'w': fcntl.F_WRLCK, 'u': fcntl.F_UNLCK}
N = {fcntl.F_RDLCK: 'r', fcntl.F_WRLCK: 'w'}
def fl(t, s, l): return struct.pack('=hh4xqqi4x', T[t], 0, int(s), int(l), 0)
print('ready', flush=True)
for line in sys.stdin:
    w = line.split()
    try:
        if w[0] == 'test':
            r = struct.unpack('=hh4xqqi4x', fcntl.fcntl(fd, fcntl.F_GETLK, fl(w[1], w[2], w[3])))
            print('none' if r[0] == fcntl.F_UNLCK else '%s %d %d %d' % (N[r[0]], r[2], r[3], r[4]), flush=True)
        else:
            fcntl.fcntl(fd, fcntl.F_SETLK if w[0] == 'posix' else fcntl.F_OFD_SETLK, fl(w[1], w[2], w[3]))
            print('ok', flush=True)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
`;

/** A separate process holding POSIX (fcntl F_SETLK) and OFD locks on one file. */
export class OutsideLocker {
  private readonly answers: Array<(line: string) => void> = [];
  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => this.answers.shift()?.(line));
  }

  static async start(path: string): Promise<OutsideLocker> {
    const child = spawn('/usr/bin/python3', ['-u', '-c', HOLDER, path], { stdio: ['pipe', 'pipe', 'inherit'] });
    const locker = new OutsideLocker(child);
    const ready = await locker.next();
    if (ready !== 'ready') throw new Error(`lock holder did not start: ${ready}`);
    return locker;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** One command (see HOLDER above) and its answer. */
  request(command: string): Promise<string> {
    const answer = this.next();
    this.child.stdin!.write(`${command}\n`);
    return answer;
  }

  private next(): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('lock holder did not answer in 5 s')), 5000);
      this.answers.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }

  /** Ends the process (its locks go with it) and waits for it to be gone. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGKILL');
    await gone;
  }
}

const LEASE_HOLDER = String.raw`
import fcntl, os, signal, sys
signal.signal(signal.SIGIO, signal.SIG_IGN)
F_SETLEASE, F_GETLEASE = 1024, 1025
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, F_SETLEASE, fcntl.F_RDLCK)
print('leased', flush=True)
for line in sys.stdin:
    if line.strip() == 'release':
        fcntl.fcntl(fd, F_SETLEASE, fcntl.F_UNLCK)
    print('read' if fcntl.fcntl(fd, F_GETLEASE) == fcntl.F_RDLCK else 'breaking' if line.strip() == '?' else 'released', flush=True)
`;

/**
 * A separate process holding a read lease on a file (what knfsd takes for an NFSv4 read
 * delegation, Samba for an oplock); it ignores the break signal, so a break stays pending.
 */
export class LeaseHolder {
  private constructor(
    private readonly child: ChildProcess,
    private readonly lines: AsyncIterator<string>,
  ) {}

  static async start(path: string): Promise<LeaseHolder> {
    const child = spawn('python3', ['-u', '-c', LEASE_HOLDER, path], { stdio: ['pipe', 'pipe', 'inherit'] });
    const holder = new LeaseHolder(child, createInterface({ input: child.stdout! })[Symbol.asyncIterator]());
    const first = await holder.next();
    if (first !== 'leased') throw new Error(`lease holder did not start: ${first}`);
    return holder;
  }

  /** 'read' while the lease is intact, 'breaking' once someone's open started its break. */
  state(): Promise<string> {
    this.child.stdin!.write('?\n');
    return this.next();
  }

  /** Gives the lease up, as its holder does when told of a break. */
  release(): Promise<string> {
    this.child.stdin!.write('release\n');
    return this.next();
  }

  private async next(): Promise<string> {
    return String((await this.lines.next()).value);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGKILL');
    await gone;
  }
}
