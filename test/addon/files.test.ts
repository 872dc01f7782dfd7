import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmdirSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { constants, tmpdir } from 'node:os';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import {
  awaitCloses, checkHandle, closeFd, handleOwner, closesPending, errnoName, fileType, lockRefusal, nameToHandle, nofileLimit, ofdCancelAll, ofdCancelWait, ofdGetLock, ofdSetLock, ofdWait,
  openByHandle, openLock, openPath, openRegular, raiseNofileLimit, releaseFds, setWaitPoolSize, waitPoolStats, LOCK_READ, LOCK_REFUSED, LOCK_UNLOCK, LOCK_WRITE,
  type FileHandle, type HoldType, type Position,
} from '../../src/addon';
import { addonPath, loadAddon } from '../../src/addon/native';
import { requireNamespaceRoot, sh } from '../support/netns';
import { fdCount, mountExt4, mountTmpfs, LeaseHolder, OutsideLocker, taskCount, type Mounted } from '../support/files';

const { EAGAIN, EBADF, EBUSY, ECANCELED, EINVAL, EISDIR, ELOOP, EROFS, ESTALE } = constants.errno;

/** The mount id /proc/self/mountinfo gives the mount at `dir`. */
function mountIdOf(dir: string): number {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === dir).pop();
  assert.ok(line, `${dir} in mountinfo`);
  return Number(line.split(' ')[0]);
}

// Holds a read lease on argv[1]; on each stdin line prints what it holds: read, or breaking (the
// kernel asked it to let go: F_GETLEASE then reports the type it must drop to).

/** done(result) of one wait as a promise, with the time it came. */
function waitFor(fd: number, type: HoldType, start: Position, len: Position): { id: number; done: Promise<{ result: number; at: number }> } {
  let resolve!: (v: { result: number; at: number }) => void;
  const done = new Promise<{ result: number; at: number }>((r) => (resolve = r));
  const id = ofdWait(fd, type, start, len, (result) => resolve({ result, at: performance.now() }));
  return { id, done };
}

/** How many of this process's fds are open on `path`. */
const fdsOn = (path: string): number => readdirSync('/proc/self/fd').filter((fd) => {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === path;
  } catch {
    return false; // the directory's own fd, gone by now
  }
}).length;

async function until(what: string, check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

for (const kind of ['tmpfs', 'ext4'] as const) {
  describe(`addon files: handles on ${kind}`, function () {
    let fs: Mounted | undefined;
    let root = -1;
    const opened: number[] = [];
    const open = (h: FileHandle, mode: 'rw' | 'ro'): number => {
      const fd = openByHandle(root, h.type, h.handle, mode);
      if (fd >= 0) opened.push(fd);
      return fd;
    };
    before(function () {
      requireNamespaceRoot(this);
      fs = kind === 'tmpfs' ? mountTmpfs() : mountExt4();
      root = openPath(fs.dir);
    });
    after(async () => {
      for (const fd of opened.splice(0)) closeFd(fd);
      if (root >= 0) closeFd(root);
      root = -1;
      const device = fs && 'device' in fs ? (fs.device as string) : undefined;
      fs?.dispose();
      // The kernel detaches an autoclear device shortly after the last user lets go.
      if (device) await until(`${device} detached after umount`, () => !sh('losetup', ['--list', '--noheadings', '--output', 'NAME']).split('\n').includes(device));
    });

    it('turns a path into a handle and the handle back into the same file', () => {
      const path = join(fs!.dir, 'a');
      writeFileSync(path, 'hello');
      const h = nameToHandle(path);
      assert.equal(h.mountId, mountIdOf(fs!.dir));
      assert.ok(h.handle.length > 0 && h.handle.length <= 128);
      const fd = open(h, 'rw');
      assert.ok(fd >= 0, `openByHandle: ${errnoName(fd)}`);
      assert.equal(fstatSync(fd).ino, statSync(path).ino);
      assert.equal(fileType(fd), 'file');
      // The same handle again: a second open file description of the same inode.
      const ro = open(h, 'ro');
      assert.ok(ro >= 0);
      assert.equal(fstatSync(ro).ino, statSync(path).ino);
    });

    it('opens a directory read-only only, and says what it is', () => {
      const dir = join(fs!.dir, 'd');
      mkdirSync(dir);
      const h = nameToHandle(dir);
      assert.equal(open(h, 'rw'), -EISDIR);
      const fd = open(h, 'ro');
      assert.ok(fd >= 0);
      assert.equal(fileType(fd), 'directory');
    });

    it('openRegular opens a regular file only: a directory and a FIFO are -EISDIR without an open of them', () => {
      const path = join(fs!.dir, 'regular');
      writeFileSync(path, 'x');
      const fd = openRegular(root, nameToHandle(path).type, nameToHandle(path).handle, 'ro');
      assert.ok(fd >= 0, errnoName(fd));
      closeFd(fd);
      mkdirSync(join(fs!.dir, 'dir'));
      const d = nameToHandle(join(fs!.dir, 'dir'));
      assert.equal(openRegular(root, d.type, d.handle, 'ro'), -EISDIR);
      sh('mkfifo', [join(fs!.dir, 'fifo')]);
      const f = nameToHandle(join(fs!.dir, 'fifo'));
      // An open of a FIFO with no writer would succeed (O_NONBLOCK): this one never opens it.
      assert.equal(openRegular(root, f.type, f.handle, 'rw'), -EISDIR);
      assert.equal(openLock(root, f.type, f.handle, 'ro', LOCK_READ, 0, 0), -EISDIR);
      assert.equal(openRegular(root, f.type, Buffer.alloc(0), 'ro'), -EINVAL);
      // handleOwner reads a regular file's permission bits and owner on an O_PATH open.
      chmodSync(path, 0o640);
      chownSync(path, 1000, 3000);
      assert.deepEqual(handleOwner(root, nameToHandle(path).type, nameToHandle(path).handle), { mode: 0o640, uid: 1000, gid: 3000 });
      assert.equal(handleOwner(root, f.type, f.handle), -EISDIR);
      assert.equal(handleOwner(root, d.type, d.handle), -EISDIR);
      assert.throws(() => openRegular(root, f.type, 'x' as unknown as Buffer, 'ro'), TypeError);
    });

    it('answers -ESTALE for a deleted file and for corrupted handle bytes, -EINVAL for impossible lengths', () => {
      const path = join(fs!.dir, 'gone');
      writeFileSync(path, '');
      const h = nameToHandle(path);
      unlinkSync(path);
      writeFileSync(join(fs!.dir, 'other'), ''); // the inode number may be reused: the generation tells them apart
      assert.equal(open(h, 'rw'), -ESTALE);

      writeFileSync(path, '');
      const live = nameToHandle(path);
      const corrupt = Buffer.from(live.handle);
      for (let i = 0; i < corrupt.length; i++) corrupt[i] = corrupt[i]! ^ 0xa5;
      assert.equal(open({ ...live, handle: corrupt }, 'rw'), -ESTALE);
      // Too short for this filesystem's handle type: it decodes to no file.
      assert.equal(open({ ...live, handle: live.handle.subarray(0, 4) }, 'rw'), -ESTALE);
      assert.equal(open({ ...live, handle: Buffer.alloc(0) }, 'rw'), -EINVAL);
      assert.equal(open({ ...live, handle: Buffer.alloc(129) }, 'rw'), -EINVAL);
      assert.ok(open(live, 'rw') >= 0, 'the intact handle still opens');
    });

    it('gives a symlink its own handle (not followed), which opens to -ELOOP', () => {
      const target = join(fs!.dir, 'target');
      writeFileSync(target, '');
      const link = join(fs!.dir, 'link');
      symlinkSync(target, link);
      const h = nameToHandle(link);
      assert.notDeepEqual(h.handle, nameToHandle(target).handle);
      assert.equal(open(h, 'ro'), -ELOOP);
    });

    it('openLock opens, checks and locks in one call; a refused lock, a directory or a stale handle leave nothing open', () => {
      assert.equal(loadAddon().lockRefused, LOCK_REFUSED);
      const path = join(fs!.dir, 'one-call');
      writeFileSync(path, '');
      const h = nameToHandle(path);
      const fd = openLock(root, h.type, h.handle, 'rw', LOCK_WRITE, 0, 10);
      assert.ok(fd >= 0, `openLock: ${errnoName(fd)}`);
      opened.push(fd);
      assert.equal(lockRefusal(fd), undefined);
      assert.equal(fstatSync(fd).ino, statSync(path).ino);
      const other = open(h, 'rw');
      assert.deepEqual(ofdGetLock(other, LOCK_READ, 5, 1), { exclusive: true, start: 0, len: 10, pid: -1 }, 'the lock is held on the returned description');
      const refused = openLock(root, h.type, h.handle, 'rw', LOCK_READ, 9, 2);
      assert.ok(refused <= -LOCK_REFUSED);
      assert.equal(lockRefusal(refused), -EAGAIN);
      assert.equal(fdsOn(path), 2, 'the refused lock closed its description');
      const ro = openLock(root, h.type, h.handle, 'ro', LOCK_READ, 20, 0);
      assert.ok(ro >= 0);
      opened.push(ro);
      assert.equal(lockRefusal(openLock(root, h.type, h.handle, 'ro', LOCK_WRITE, 100, 1)), -EBADF, 'a write lock on a read-only open');
      const dir = join(fs!.dir, 'one-call-dir');
      mkdirSync(dir);
      const hd = nameToHandle(dir);
      assert.equal(openLock(root, hd.type, hd.handle, 'ro', LOCK_READ, 0, 0), -EISDIR);
      assert.equal(fdsOn(dir), 0);
      const gone = join(fs!.dir, 'one-call-gone');
      writeFileSync(gone, '');
      const hg = nameToHandle(gone);
      unlinkSync(gone);
      assert.equal(openLock(root, hg.type, hg.handle, 'rw', LOCK_WRITE, 0, 0), -ESTALE);
      assert.equal(openLock(root, h.type, Buffer.alloc(0), 'rw', LOCK_WRITE, 0, 0), -EINVAL);
    });

    it('checkHandle tells a regular file from a directory and a stale handle, leaving nothing open', () => {
      const path = join(fs!.dir, 'checked');
      writeFileSync(path, '');
      const h = nameToHandle(path);
      const before = fdCount();
      assert.equal(checkHandle(root, h.type, h.handle), 0);
      const dir = join(fs!.dir, 'checked-dir');
      mkdirSync(dir);
      const hd = nameToHandle(dir);
      assert.equal(checkHandle(root, hd.type, hd.handle), -EISDIR);
      unlinkSync(path);
      assert.equal(checkHandle(root, h.type, h.handle), -ESTALE);
      assert.equal(checkHandle(root, h.type, Buffer.alloc(129)), -EINVAL);
      assert.equal(checkHandle(999999, h.type, h.handle), -EBADF);
      assert.equal(fdCount(), before);
    });

    it("checkHandle breaks no lease (an NFSv4 server's delegation): a read-write open does", async () => {
      const path = join(fs!.dir, 'leased');
      writeFileSync(path, '');
      const h = nameToHandle(path);
      // A separate process holds a read lease (what knfsd takes for a read delegation).
      const holder = await LeaseHolder.start(path);
      try {
        assert.equal(checkHandle(root, h.type, h.handle), 0);
        assert.equal(await holder.state(), 'read', 'the lease is intact after checkHandle');
        // A read-write open starts the lease's break (O_NONBLOCK: EWOULDBLOCK at once, not a wait).
        assert.equal(openByHandle(root, h.type, h.handle, 'rw'), -EAGAIN);
        assert.equal(await holder.state(), 'breaking');
      } finally {
        await holder.stop();
      }
    });

    it('releaseFds: every lock is released when it returns, the closes follow on threads the addon keeps', () => {
      const path = join(fs!.dir, 'batch');
      writeFileSync(path, '');
      const h = nameToHandle(path);
      // The pool's threads by name (other tests' wait threads come and go meanwhile).
      const closers = () => readdirSync('/proc/self/task').filter((t) => readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'lockdrop-close').length;
      let pool = closers();
      for (const [n, threads] of [[1, 3], [300, 3], [2000, 3], [2000, 1], [5000, 2]] as const) {
        const fds = new Int32Array(n);
        for (let i = 0; i < n; i++) {
          fds[i] = openLock(root, h.type, h.handle, 'rw', LOCK_WRITE, i * 2, 1);
          assert.ok(fds[i]! >= 0, errnoName(fds[i]!));
        }
        assert.equal(fdsOn(path), n);
        assert.equal(releaseFds(fds, threads), 0);
        // Before any close is awaited: another description takes the whole file at once.
        const all = openLock(root, h.type, h.handle, 'rw', LOCK_WRITE, 0, 0);
        assert.ok(all >= 0, `${n} fds on ${threads} threads: the whole file locks again at once: ${errnoName(all)}`);
        closeFd(all);
        awaitCloses();
        assert.equal(closesPending(), 0);
        assert.equal(fdsOn(path), 0, `${n} fds on ${threads} threads: all closed`);
        if (n >= 300 && threads > 1) pool = Math.max(pool, closers());
        assert.ok(closers() === pool && pool <= 2, `the pool's threads are kept and reused (${closers()} of them)`);
      }
      assert.ok(pool >= 1, 'large batches were helped by a pool thread');
      // Batches back to back: the second comes while the pool may still close the first.
      const batch = (n: number, from: number) => Int32Array.from({ length: n }, (_, i) => openLock(root, h.type, h.handle, 'rw', LOCK_WRITE, (from + i) * 2, 1));
      const first = batch(1000, 0);
      const second = batch(1000, 1000);
      assert.equal(releaseFds(first, 3), 0);
      assert.equal(releaseFds(second, 3), 0);
      const whole = openLock(root, h.type, h.handle, 'rw', LOCK_WRITE, 0, 0);
      assert.ok(whole >= 0, `both batches unlocked when they return: ${errnoName(whole)}`);
      closeFd(whole);
      awaitCloses();
      assert.equal(fdsOn(path), 0);
      const fds = new Int32Array(400);
      for (let i = 0; i < 400; i++) fds[i] = open(h, 'ro');
      opened.length -= 400;
      const closedAlready = fds[7]!;
      closeFd(closedAlready);
      assert.equal(releaseFds(fds, 3), 1, 'a fd that was not open is counted');
      awaitCloses();
      assert.equal(fdsOn(path), 0);
      const fd = open(h, 'ro');
      opened.pop();
      assert.equal(releaseFds(Int32Array.of(fd, 999999, -1), 3), 2, 'fds that were not open are counted');
      assert.equal(releaseFds(new Int32Array(0), 3), 0);
      assert.throws(() => (releaseFds as (...a: unknown[]) => number)([fd], 3), TypeError);
      assert.throws(() => (releaseFds as (...a: unknown[]) => number)(new Uint32Array(1), 3), TypeError);
    });

    it('refuses rw on a read-only mount with -EROFS and locks for reading there', () => {
      const path = join(fs!.dir, 'ro-file');
      writeFileSync(path, '');
      const h = nameToHandle(path);
      const ro = mkdtempSync(join(tmpdir(), 'lockdrop-ro-'));
      sh('mount', ['--bind', fs!.dir, ro]);
      try {
        sh('mount', ['-o', 'remount,bind,ro', ro]);
        const roRoot = openPath(ro);
        try {
          assert.equal(openByHandle(roRoot, h.type, h.handle, 'rw'), -EROFS);
          const fd = openByHandle(roRoot, h.type, h.handle, 'ro');
          assert.ok(fd >= 0);
          assert.equal(ofdSetLock(fd, LOCK_READ, 0, 0), 0);
          assert.equal(ofdSetLock(fd, LOCK_WRITE, 0, 0), -EBADF, 'a write lock needs a file open for writing');
          closeFd(fd);
        } finally {
          closeFd(roRoot);
        }
      } finally {
        sh('umount', [ro]);
        rmdirSync(ro);
      }
    });
  });
}

describe('addon files: errors and bad input', function () {
  before(function () {
    requireNamespaceRoot(this);
  });

  it('throws errno errors from nameToHandle and openPath', () => {
    assert.throws(() => nameToHandle('/proc/self/status'), { code: 'EOPNOTSUPP' });
    assert.throws(() => nameToHandle('/nonexistent/x'), { code: 'ENOENT' });
    assert.throws(() => openPath('/nonexistent'), { code: 'ENOENT' });
    assert.throws(() => openPath('/etc/hostname'), { code: 'ENOTDIR' });
  });

  it('returns -EBADF for a bad mount fd or lock fd and throws TypeErrors for wrong arguments', () => {
    const h = nameToHandle('/etc/hostname');
    assert.equal(openByHandle(999999, h.type, h.handle, 'ro'), -EBADF);
    assert.equal(ofdSetLock(999999, LOCK_WRITE, 0, 0), -EBADF);
    assert.equal(ofdWait(999999, LOCK_WRITE, 0, 0, () => assert.fail('no wait started')), -EBADF);
    assert.throws(() => ofdGetLock(999999, LOCK_READ, 0, 0), { code: 'EBADF' });
    assert.throws(() => fileType(999999), { code: 'EBADF' });
    assert.throws(() => closeFd(999999), { code: 'EBADF' });
    const bad: unknown[][] = [[0, 3, 0, 0], [0, 1, -1, 0], [0, 1, 0, -5], [0, 1, 0.5, 0], [0, 1, 2 ** 53, 0], [0, 1, -1n, 0], [0, 1, 2n ** 63n, 0], [-1, 1, 0, 0], ['0', 1, 0, 0], [0, 1, 0]];
    for (const args of bad) assert.throws(() => (ofdSetLock as (...a: unknown[]) => number)(...args), TypeError, JSON.stringify(args, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)));
    assert.throws(() => (ofdGetLock as (...a: unknown[]) => unknown)(0, LOCK_UNLOCK, 0, 0), TypeError);
    assert.throws(() => (ofdWait as (...a: unknown[]) => unknown)(0, LOCK_UNLOCK, 0, 0, () => {}), TypeError);
    assert.throws(() => (ofdWait as (...a: unknown[]) => unknown)(0, LOCK_WRITE, 0, 0), TypeError);
    assert.throws(() => (openByHandle as (...a: unknown[]) => unknown)(0, 1, 'not a buffer', 'rw'), TypeError);
    assert.throws(() => openByHandle(0, 1.5, h.handle, 'rw'), TypeError);
    assert.throws(() => openByHandle(0, 2 ** 31, h.handle, 'rw'), TypeError);
    assert.throws(() => (openLock as (...a: unknown[]) => unknown)(0, 1, h.handle, 'rw', LOCK_UNLOCK, 0, 0), TypeError);
    assert.throws(() => (openLock as (...a: unknown[]) => unknown)(0, 1, h.handle, 'rw', LOCK_WRITE, -1, 0), TypeError);
    assert.throws(() => (openLock as (...a: unknown[]) => unknown)(0, 1, h.handle, 'rw', LOCK_WRITE, 0), TypeError);
    assert.throws(() => (checkHandle as (...a: unknown[]) => unknown)(0, 1, 'not a buffer'), TypeError);
    assert.throws(() => setWaitPoolSize(0), TypeError);
    assert.equal(ofdCancelWait(-1), false);
    assert.equal(ofdCancelWait(1e15), false);
  });

  it('raises the soft fd limit to the hard one', () => {
    const raised = raiseNofileLimit();
    assert.equal(raised.soft, raised.hard);
    assert.deepEqual(nofileLimit(), raised);
    const fromShell = Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim());
    assert.equal(raised.hard, fromShell);
  });
});

describe('addon files: OFD locks', function () {
  let fs: Mounted | undefined;
  let path = '';
  let locker: OutsideLocker | undefined;
  const fds: number[] = [];
  const openFile = (flags: 'r' | 'r+' = 'r+'): number => {
    const fd = openSync(path, flags);
    fds.push(fd);
    return fd;
  };
  before(function () {
    requireNamespaceRoot(this);
    fs = mountTmpfs();
    path = join(fs.dir, 'locked');
    writeFileSync(path, '');
  });
  afterEach(async () => {
    ofdCancelAll();
    await until('every wait delivered', () => waitPoolStats().pending === 0);
    setWaitPoolSize(64);
    for (const fd of fds.splice(0)) closeSync(fd);
    await locker?.stop();
    locker = undefined;
  });
  after(() => fs?.dispose());

  it('enforces conflicts between two open file descriptions of this process', () => {
    const a = openFile();
    const b = openFile();
    assert.equal(ofdSetLock(a, LOCK_WRITE, 0, 100), 0);
    assert.equal(ofdSetLock(b, LOCK_WRITE, 50, 10), -EAGAIN);
    assert.equal(ofdSetLock(b, LOCK_READ, 99, 1), -EAGAIN);
    assert.equal(ofdSetLock(b, LOCK_WRITE, 100, 0), 0, 'adjacent, to end of file');
    assert.deepEqual(ofdGetLock(b, LOCK_READ, 10, 1), { exclusive: true, start: 0, len: 100, pid: -1 });
    assert.deepEqual(ofdGetLock(a, LOCK_READ, 200, 1), { exclusive: true, start: 100, len: 0, pid: -1 });
    assert.equal(ofdGetLock(a, LOCK_WRITE, 0, 100), null, 'its own locks never conflict');
    // Downgrade a's lock: readers may share, writers still wait.
    assert.equal(ofdSetLock(a, LOCK_READ, 0, 100), 0);
    assert.equal(ofdSetLock(b, LOCK_READ, 0, 50), 0);
    assert.equal(ofdSetLock(b, LOCK_WRITE, 0, 50), -EAGAIN);
    // An unlock in the middle splits a's lock in two.
    assert.equal(ofdSetLock(a, LOCK_UNLOCK, 40, 20), 0);
    const c = openFile();
    assert.deepEqual(ofdGetLock(c, LOCK_WRITE, 50, 10), null, 'between b\'s read lock [0, 50) and a\'s rest [60, 100)');
    assert.deepEqual(ofdGetLock(c, LOCK_WRITE, 60, 40), { exclusive: false, start: 60, len: 40, pid: -1 });
  });

  it('carries positions beyond 2^53 as bigint', () => {
    const a = openFile();
    const b = openFile();
    const start = 2n ** 60n;
    assert.equal(ofdSetLock(a, LOCK_WRITE, start, 2n ** 40n), 0);
    assert.deepEqual(ofdGetLock(b, LOCK_WRITE, 0, 0), { exclusive: true, start, len: 2 ** 40, pid: -1 });
    assert.equal(ofdSetLock(b, LOCK_WRITE, start + 2n ** 40n - 1n, 1), -EAGAIN);
    assert.equal(ofdSetLock(b, LOCK_WRITE, start + 2n ** 40n, 1), 0);
    assert.equal(ofdSetLock(a, LOCK_WRITE, 2n ** 63n - 1n, 2), -constants.errno.EOVERFLOW);
    assert.equal(ofdSetLock(a, LOCK_WRITE, 2 ** 53 - 1, 1), 0, 'the largest exact number');
  });

  it('conflicts with a POSIX lock of a separate process and reports its range, type and pid', async () => {
    locker = await OutsideLocker.start(path);
    assert.equal(await locker.request('posix w 10 10'), 'ok');
    const a = openFile();
    assert.equal(ofdSetLock(a, LOCK_WRITE, 15, 5), -EAGAIN);
    assert.equal(ofdSetLock(a, LOCK_READ, 0, 0), -EAGAIN);
    assert.equal(ofdSetLock(a, LOCK_WRITE, 20, 5), 0);
    assert.deepEqual(ofdGetLock(a, LOCK_READ, 0, 0), { exclusive: true, start: 10, len: 10, pid: locker.pid });
    // And the other way round: the kernel refuses the outside process what this one holds.
    assert.equal(await locker.request('posix r 20 1'), 'EAGAIN');
    assert.equal(await locker.request('test w 0 0'), `w 20 5 -1`);
  });

  it('conflicts with an OFD read lock of a separate process (pid -1) and shares with it', async () => {
    locker = await OutsideLocker.start(path);
    assert.equal(await locker.request('ofd r 0 0'), 'ok');
    const a = openFile();
    assert.equal(ofdSetLock(a, LOCK_WRITE, 1000, 1), -EAGAIN);
    assert.equal(ofdSetLock(a, LOCK_READ, 1000, 1), 0);
    assert.deepEqual(ofdGetLock(a, LOCK_WRITE, 5, 5), { exclusive: false, start: 0, len: 0, pid: -1 });
    assert.equal(await locker.request('ofd w 1000 1'), 'EAGAIN');
  });

  it('a wait is granted within a second of the outside holder letting go, and then holds the lock', async () => {
    locker = await OutsideLocker.start(path);
    assert.equal(await locker.request('posix w 0 0'), 'ok');
    const a = openFile();
    const w = waitFor(a, LOCK_WRITE, 0, 100);
    assert.ok(w.id > 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(waitPoolStats().busy, 1);
    assert.equal(await locker.request('posix u 0 0'), 'ok');
    const released = performance.now();
    const { result, at } = await w.done;
    assert.equal(result, 0);
    assert.ok(at - released < 1000, `granted ${(at - released).toFixed(1)} ms after the release`);
    assert.equal(await locker.request('posix r 50 1'), 'EAGAIN', 'the outside process now meets our lock');
    assert.equal(await locker.request('posix r 100 1'), 'ok');
  });

  it('a wait on an fd open for reading only ends with -EBADF for a write lock', async () => {
    const b = openFile();
    assert.equal(ofdSetLock(b, LOCK_WRITE, 0, 1), 0);
    const w = waitFor(openFile('r'), LOCK_WRITE, 0, 1);
    assert.equal((await w.done).result, -EBADF);
  });

  it('cancels a single wait: it ends with ECANCELED, promptly (the holder never lets go)', async () => {
    const holder = openFile();
    assert.equal(ofdSetLock(holder, LOCK_WRITE, 0, 0), 0);
    const a = openFile();
    for (let i = 0; i < 20; i++) {
      const w = waitFor(a, LOCK_WRITE, 0, 0);
      await new Promise((r) => setTimeout(r, 1 + (i % 5)));
      const cancelled = performance.now();
      assert.equal(ofdCancelWait(w.id), true);
      const { result, at } = await w.done;
      assert.equal(result, -ECANCELED);
      // Its speed is bench/files.ts's to measure; a bound here only rules out a wait that polls for its cancel.
      assert.ok(at - cancelled < 1000, `cancel took ${(at - cancelled).toFixed(1)} ms`);
      assert.equal(ofdCancelWait(w.id), false, 'done: the id is gone');
    }
  });

  it('cancels 1000 pending waits promptly and leaks no thread and no fd', async () => {
    const holder = openFile();
    assert.equal(ofdSetLock(holder, LOCK_WRITE, 0, 0), 0);
    const a = openFile();
    const tasks = taskCount();
    const fdsBefore = fdCount();
    setWaitPoolSize(1000);
    const waits = Array.from({ length: 1000 }, () => waitFor(a, LOCK_WRITE, 0, 0));
    assert.ok(waits.every((w) => w.id > 0), `every wait started (first failure ${errnoName(waits.find((w) => w.id <= 0)?.id ?? 0)})`);
    assert.ok(taskCount() >= tasks + 1000, 'a thread per wait');
    await new Promise((r) => setTimeout(r, 200)); // let them reach F_OFD_SETLKW
    assert.deepEqual(waitPoolStats(), { size: 1000, busy: 1000, pending: 1000 });
    assert.equal(ofdSetLock(a, LOCK_WRITE, 0, 0), -EAGAIN);
    const cancelled = performance.now();
    assert.equal(ofdCancelAll(), 1000);
    const results = await Promise.all(waits.map((w) => w.done));
    const took = performance.now() - cancelled;
    assert.ok(results.every((r) => r.result === -ECANCELED));
    assert.ok(took < 1000, `1000 cancels took ${took.toFixed(0)} ms`);
    assert.deepEqual(waitPoolStats(), { size: 1000, busy: 0, pending: 0 });
    await until('the threads to be gone', () => taskCount() === tasks);
    assert.equal(fdCount(), fdsBefore, 'every dup closed');
  });

  it('answers -EBUSY beyond the pool size without queueing', async () => {
    const holder = openFile();
    assert.equal(ofdSetLock(holder, LOCK_WRITE, 0, 0), 0);
    const a = openFile();
    setWaitPoolSize(4);
    const waits = Array.from({ length: 4 }, () => waitFor(a, LOCK_READ, 0, 0));
    assert.ok(waits.every((w) => w.id > 0));
    assert.equal(ofdWait(a, LOCK_READ, 0, 0, () => assert.fail('not started')), -EBUSY);
    assert.deepEqual(waitPoolStats(), { size: 4, busy: 4, pending: 4 });
    assert.equal(ofdCancelWait(waits[0]!.id), true);
    assert.equal((await waits[0]!.done).result, -ECANCELED);
    const again = waitFor(a, LOCK_READ, 0, 0);
    assert.ok(again.id > 0, 'room again after one finished');
    assert.equal(ofdSetLock(holder, LOCK_UNLOCK, 0, 0), 0);
    const all = await Promise.all([...waits.slice(1), again].map((w) => w.done));
    assert.deepEqual(all.map((r) => r.result), [0, 0, 0, 0], 'readers all granted together');
  });

  it('release and cancel at the same moment: every result is 0 or -ECANCELED, and a 0 holds the lock', async function () {
    this.timeout(60000);
    const holder = openFile();
    const a = openFile();
    const counts = { granted: 0, cancelled: 0 };
    for (let i = 0; i < 400; i++) {
      assert.equal(ofdSetLock(holder, LOCK_WRITE, 0, 0), 0);
      const w = waitFor(a, LOCK_WRITE, 0, 0);
      assert.ok(w.id > 0);
      // Cancel as the worker starts, as it is about to enter fcntl, or once it waits; release together.
      const pause = i % 4;
      if (pause > 0) await new Promise((r) => (pause === 1 ? setImmediate(r) : setTimeout(r, pause - 1)));
      if (i % 2 === 0) {
        ofdSetLock(holder, LOCK_UNLOCK, 0, 0);
        ofdCancelWait(w.id);
      } else {
        ofdCancelWait(w.id);
        ofdSetLock(holder, LOCK_UNLOCK, 0, 0);
      }
      const { result } = await w.done;
      const seen = ofdGetLock(holder, LOCK_WRITE, 0, 0);
      if (result === 0) {
        counts.granted++;
        assert.deepEqual(seen, { exclusive: true, start: 0, len: 0, pid: -1 }, `cycle ${i}: a 0 holds the lock`);
        assert.equal(ofdSetLock(a, LOCK_UNLOCK, 0, 0), 0);
      } else {
        assert.equal(result, -ECANCELED, `cycle ${i}: ${errnoName(result)}`);
        counts.cancelled++;
        assert.equal(seen, null, `cycle ${i}: a cancelled wait holds nothing`);
      }
    }
    // Both outcomes must occur, or the test did not race anything.
    assert.ok(counts.granted > 0 && counts.cancelled > 0, JSON.stringify(counts));
  });

  it('closing the fd of a pending wait is safe: the wait goes on, and its lock dies with the description', async () => {
    const holder = openFile();
    assert.equal(ofdSetLock(holder, LOCK_WRITE, 0, 0), 0);
    const fd = openSync(path, 'r+');
    const w = waitFor(fd, LOCK_WRITE, 0, 0);
    await until('the wait in the kernel', () => waitPoolStats().busy === 1);
    closeSync(fd);
    const other = openFile(); // may reuse the fd number: the wait must not care
    assert.equal(ofdSetLock(holder, LOCK_UNLOCK, 0, 0), 0);
    assert.equal((await w.done).result, 0);
    assert.equal(ofdGetLock(other, LOCK_WRITE, 0, 0), null, 'nothing left holding it');
  });

  it('a worker thread terminated with waits pending cancels and joins them (environment teardown)', async () => {
    const holder = openFile();
    assert.equal(ofdSetLock(holder, LOCK_WRITE, 0, 0), 0);
    const fd = openFile(); // fds are the process's: the worker waits on this one
    const tasks = taskCount();
    const worker = new Worker(`
      const { parentPort, workerData } = require('node:worker_threads');
      const a = require(workerData.addon);
      for (let i = 0; i < 20; i++) if (a.ofdWait(workerData.fd, 1, 0, 0, () => {}) <= 0) throw new Error('no wait');
      parentPort.postMessage(a.waitPoolStats().busy);
      setInterval(() => {}, 1000);`, { eval: true, workerData: { addon: addonPath, fd } });
    const [busy] = await once(worker, 'message');
    assert.equal(busy, 20);
    assert.ok(taskCount() >= tasks + 21, 'the worker and a thread per wait');
    assert.equal(fdsOn(path), 22, 'the holder, fd and a dup per wait');
    await worker.terminate();
    await until('the worker and its wait threads to be gone', () => taskCount() === tasks);
    await until('the waits\' dups to be closed', () => fdsOn(path) === 2);
    assert.equal(ofdGetLock(openFile(), LOCK_WRITE, 0, 0)?.exclusive, true, 'the holder still holds its lock, undisturbed');
  });

  it('lets the process exit with waits pending, by the loop running dry and by process.exit', async function () {
    const holder = openFile();
    assert.equal(ofdSetLock(holder, LOCK_WRITE, 0, 0), 0);
    for (const ending of ['', 'process.exit(0);']) {
      const child = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', `
        const a = require('./src/addon'); const fs = require('node:fs');
        const fd = fs.openSync(${JSON.stringify(path)}, 'r+');
        for (let i = 0; i < 10; i++) if (a.ofdWait(fd, a.LOCK_WRITE, 0, 0, () => { throw new Error('granted?'); }) <= 0) throw new Error('no wait');
        setTimeout(() => { console.log('busy', a.waitPoolStats().busy); ${ending} }, 200);`], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      const started = Date.now();
      const code = await new Promise((resolve) => child.on('exit', resolve));
      assert.equal(code, 0, ending || 'loop ran dry');
      assert.equal(out.trim(), 'busy 10');
      assert.ok(Date.now() - started < 10000);
    }
  });
});
