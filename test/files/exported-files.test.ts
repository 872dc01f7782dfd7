// ExportedFiles on a real tmpfs, its system calls counted: a LOCK of a file nobody has open is
// one addon call (open, check, lock), an UNLOCK that leaves the owner nothing one close; checking
// a handle no lock follows (TEST, UNLOCK of nothing, a table conflict, grace) opens it for no
// I/O and leaves nothing open; a stale handle answers stale_fh on each of those paths; a drop's
// descriptions are closed in one batch; an NFS-Ganesha handle whose fsid names another filesystem
// than the export root's is stale.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, readdirSync, readlinkSync, unlinkSync } from 'node:fs';
import { closeFd, filesystemId, nameToHandle, openPath } from '../../src/addon/files';
import { ExportsTable, GANESHA_FSID_DEVICE, GANESHA_FSID_TWO_UINT32, GANESHA_FSID_TWO_UINT64 } from '../../src/exports';
import { ExportedFiles, type FileSyscalls } from '../../src/files';
import { nativeFileSyscalls } from '../../src/files/native';
import { LockTable, hostKey } from '../../src/locks';
import { checkIndexes } from '../../src/locks/testing';
import { encodeGaneshaHandle } from '../support/ganesha-handle';
import { requireNamespaceRoot } from '../support/netns';
import { waitFor } from '../support/wait';
import { LeaseHolder, OutsideLocker } from '../support/files';
import { knfsdHandle, makeFile, mountTmpfs, openFdCount, type Mounted } from './support';

describe('files: ExportedFiles opens each file once per lock', function () {
  let fs: Mounted;
  let files: ExportedFiles;
  let table: LockTable;
  const calls = { opens: 0, openLocks: 0, checks: 0, closes: 0, batches: [] as number[] };
  const reset = (): void => {
    calls.opens = calls.openLocks = calls.checks = calls.closes = 0;
    calls.batches = [];
  };
  before(function () {
    requireNamespaceRoot(this);
    fs = mountTmpfs();
    const n = nativeFileSyscalls;
    const sys: FileSyscalls = {
      ...n,
      openRegular: (...a) => (calls.opens++, n.openRegular(...a)),
      openLock: (...a) => (calls.openLocks++, n.openLock(...a)),
      checkHandle: (...a) => (calls.checks++, n.checkHandle(...a)),
      closeFd: (fd) => (calls.closes++, n.closeFd(fd)),
      releaseFds: (fds, threads) => (calls.batches.push(fds.length), n.releaseFds(fds, threads)),
    };
    const exports = new ExportsTable([{ path: fs.dir, fsid: 5, clients: [], secure: false, fileLocks: true }]);
    // The root closes with the export's last description: every count below is exact.
    files = new ExportedFiles({ sys, kernelHandle: (fh) => exports.kernelHandle(fh), maxOpen: 100, rootLingerMs: 0 });
    files.setExports([{ path: fs.dir, fileLocks: true }]);
    table = new LockTable({ locker: files, exportOf: (fh) => exports.exportOf(fh) });
  });
  after(() => {
    files?.setExports([]);
    fs?.dispose();
  });

  const owner = (svid: number) => ({ host: hostKey('c', '10.0.0.1'), svid, oh: Buffer.from(`oh${svid}`) });
  const req = (fh: Buffer, svid: number, exclusive = true, serverAddress = '10.0.0.9') => ({ fh, owner: owner(svid), exclusive, offset: 0n, length: 10n, serverAddress });
  const NB = { block: false, reclaim: false };

  it('LOCK of a new file: one addon call and no validation open; UNLOCK closes it', () => {
    const fh = knfsdHandle(makeFile(fs.dir, 'a'), 5);
    const idle = openFdCount();
    reset();
    assert.equal(table.lock(req(fh, 1), NB), 'granted');
    assert.deepEqual({ openLocks: calls.openLocks, opens: calls.opens, checks: calls.checks }, { openLocks: 1, opens: 0, checks: 0 });
    assert.equal(files.stats().open, 1);
    assert.equal(table.unlock(req(fh, 1)), 'granted');
    assert.equal(calls.closes, 2, 'the description, then the root of the export it left idle');
    assert.equal(files.stats().open, 0);
    assert.equal(openFdCount(), idle);
  });

  it('a validation no lock takes (TEST, UNLOCK of nothing, a table conflict) opens nothing for I/O and leaves nothing open', () => {
    const fh = knfsdHandle(makeFile(fs.dir, 'b'), 5);
    const other = knfsdHandle(makeFile(fs.dir, 'c'), 5);
    const idle = openFdCount();
    reset();
    assert.equal(table.unlock(req(other, 1)), 'granted');
    assert.equal(table.cancel(req(other, 1)), 'denied');
    assert.deepEqual({ checks: calls.checks, opens: calls.opens, openLocks: calls.openLocks }, { checks: 2, opens: 0, openLocks: 0 });
    assert.equal(table.test(req(fh, 1)).status, 'granted');
    assert.equal(calls.checks, 2, "TEST's own open checks the handle");
    assert.equal(files.validate(fh.toString('latin1'), fh, true), undefined, 'an exclusive request on a writable filesystem');
    assert.equal(calls.checks, 3);
    assert.equal(files.stats().open, 0);
    assert.equal(openFdCount(), idle);
    // Held by owner 1: owner 2's LOCK is refused by the table with no open at all.
    assert.equal(table.lock(req(fh, 1), NB), 'granted');
    reset();
    assert.equal(table.lock(req(fh, 2), NB), 'denied');
    assert.deepEqual({ opens: calls.opens, openLocks: calls.openLocks, checks: calls.checks }, { opens: 0, openLocks: 0, checks: 0 }, 'a file already open needs no check');
    table.unlock(req(fh, 1));
    assert.equal(files.stats().open, 0);
    assert.equal(openFdCount(), idle);
  });

  it('a stale handle answers stale_fh on the answers that never reach the file: grace, draining, fbig', () => {
    const path = makeFile(fs.dir, 'gone');
    const fh = knfsdHandle(path, 5);
    unlinkSync(path);
    assert.equal(table.lock(req(fh, 1), NB), 'stale_fh');
    assert.equal(table.test(req(fh, 1)).status, 'stale_fh');
    assert.equal(table.unlock(req(fh, 1)), 'stale_fh');
    table.grace.start({ kind: 'address', address: '10.0.0.8' }, 60);
    assert.equal(table.lock(req(fh, 1, true, '10.0.0.8'), NB), 'stale_fh', 'not denied_grace_period');
    assert.equal(table.test(req(fh, 1, true, '10.0.0.8')).status, 'stale_fh');
    table.grace.end({ kind: 'address', address: '10.0.0.8' });
    assert.equal(table.test({ ...req(fh, 1), offset: 2n ** 63n, length: 2n ** 63n }).status, 'stale_fh', 'not fbig');
    assert.equal(files.stats().open, 0);
    table.setDraining('10.0.0.6', true);
    assert.equal(table.lock(req(fh, 1, true, '10.0.0.6'), NB), 'stale_fh', 'not denied_nolocks');
    table.setDraining('10.0.0.6', false);
    assert.deepEqual(checkIndexes(table), []);
    assert.equal(table.stats().locks, 0);
  });

  it("a FIFO's handle is never opened for I/O: LOCK and TEST answer failed, and a writer blocked on it stays blocked", async () => {
    const fifo = `${fs.dir}/fifo`;
    execFileSync('mkfifo', [fifo]);
    const fh = knfsdHandle(fifo, 5);
    // open(O_WRONLY) of a FIFO blocks until someone opens it for reading (or read-write).
    const writer = spawn('/bin/sh', ['-c', `echo x > ${fifo}`], { stdio: 'ignore' });
    const exited = new Promise((resolve) => writer.once('exit', resolve));
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(table.lock(req(fh, 1, false), NB), 'failed', 'a shared lock');
      assert.equal(table.lock(req(fh, 1, true), NB), 'failed', 'an exclusive lock');
      assert.equal(table.test(req(fh, 1)).status, 'failed');
      assert.equal(await Promise.race([exited.then(() => 'woken'), new Promise((resolve) => setTimeout(() => resolve('still blocked'), 200))]), 'still blocked');
      assert.equal(files.stats().open, 0);
    } finally {
      writer.kill('SIGKILL');
      await exited;
      unlinkSync(fifo);
    }
  });

  it('opens by lock mode: a shared lock breaks no read lease and keeps no program from running; the first exclusive lock takes a second, read-write description', async () => {
    const path = makeFile(fs.dir, 'leased');
    const fh = knfsdHandle(path, 5);
    const range = (svid: number, exclusive: boolean, offset: bigint, length: bigint) => ({ ...req(fh, svid, exclusive), offset, length });
    const lease = await LeaseHolder.start(path);
    let outside: OutsideLocker | undefined;
    try {
      assert.equal(table.lock(range(1, false, 0n, 10n), NB), 'granted');
      assert.equal(table.lock(range(1, false, 20n, 10n), NB), 'granted');
      assert.equal(await lease.state(), 'read', 'the shared locks broke no lease');
      // An exclusive lock needs the file open for writing: that open breaks the lease, and until
      // its holder lets go the request gets no answer (the client sends it again), the shared
      // locks kept; a blocking one is not queued either (Linux's lockd drops both replies).
      assert.equal(table.lock(range(1, true, 0n, 10n), NB), 'drop_reply');
      assert.equal(await lease.state(), 'breaking');
      assert.equal(table.lock(range(1, true, 0n, 10n), { block: true, reclaim: false }), 'drop_reply');
      assert.equal([...table.blocked()].length, 0);
      assert.equal(files.stats().open, 1, 'the read-only description only');
      assert.equal(await lease.release(), 'released');
      assert.equal(table.lock(range(1, true, 0n, 10n), NB), 'granted', 'the request sent again');
      assert.equal(files.stats().open, 1, 'one description per owner and file, the read-only one closed');
      // (Opened for writing only now: it would have waited for the lease's break.)
      outside = await OutsideLocker.start(path);
      assert.equal(await outside.request('ofd r 0 10'), 'EAGAIN', '[0, 10) exclusive on the file');
      assert.equal(await outside.request('ofd w 20 10'), 'EAGAIN', '[20, 30) still held (shared) across the upgrade');
      assert.equal(await outside.request('ofd r 20 10'), 'ok');
      assert.equal(await outside.request('ofd u 20 10'), 'ok');
      assert.equal(await outside.request('ofd w 10 10'), 'ok', 'nothing held between');
      assert.equal(await outside.request('ofd u 10 10'), 'ok');
      table.unlock(range(1, false, 0n, 0n));
      assert.equal(files.stats().open, 0);
    } finally {
      await lease.stop();
      await outside?.stop();
    }
    // A program on the server runs while a client holds a shared lock on it (not ETXTBSY).
    const program = `${fs.dir}/program`;
    copyFileSync('/bin/true', program);
    chmodSync(program, 0o755);
    const pfh = knfsdHandle(program, 5);
    assert.equal(table.lock(req(pfh, 2, false), NB), 'granted');
    execFileSync(program);
    table.unlock(req(pfh, 2, false));
  });

  it("a queued exclusive request woken while a lease is held tries again on a timer until its holder lets go", async () => {
    const path = makeFile(fs.dir, 'leased-queued');
    const fh = knfsdHandle(path, 5);
    const lease = await LeaseHolder.start(path);
    try {
      assert.equal(table.lock(req(fh, 2, false), NB), 'granted');
      // Behind owner 2's shared lock: queued (its check for writing opens nothing, the lease intact).
      assert.equal(table.lock(req(fh, 1, true), { block: true, reclaim: false }), 'blocked');
      assert.equal(await lease.state(), 'read');
      table.unlock(req(fh, 2, false));
      assert.equal(await lease.state(), 'breaking', "the woken request's open started the break");
      assert.equal([...table.blocked()].length, 1, 'still queued');
      assert.equal(await lease.release(), 'released');
      await waitFor('the queued exclusive lock granted', () => [...table.locks()].some((l) => l.exclusive && l.fh.equals(fh)), 3_000);
      table.unlock(req(fh, 1, true));
      assert.equal(files.stats().open, 0);
    } finally {
      await lease.stop();
    }
  });

  it("a drop closes its descriptions in one batch and every kernel lock is gone when it returns", () => {
    const fhs = Array.from({ length: 20 }, (_, i) => knfsdHandle(makeFile(fs.dir, `drop${i}`), 5));
    const idle = openFdCount();
    for (let i = 0; i < 20; i++) assert.equal(table.lock(req(fhs[i]!, 100 + i, true, '10.0.0.7'), NB), 'granted');
    assert.equal(files.stats().open, 20);
    reset();
    assert.equal(table.dropByServerAddress('10.0.0.7').locks, 20);
    assert.deepEqual(calls.batches, [20]);
    assert.equal(calls.closes, 1, 'only the root of the export the drop left idle');
    assert.equal(files.stats().open, 0);
    assert.equal(openFdCount(), idle);
  });

  it('a drop of many descriptions: an outside process locks what it held as soon as the drop returns; the closes follow', async () => {
    const path = makeFile(fs.dir, 'many');
    const fh = knfsdHandle(path, 5);
    // Only this file's fds: tsx and mocha open and close their own meanwhile.
    const fdsOnFile = () => readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === path;
      } catch {
        return false;
      }
    }).length;
    const n = 400;
    files.setBudget(n + 10);
    for (let i = 0; i < n; i++) assert.equal(table.lock({ ...req(fh, 1000 + i, true, '10.0.0.8'), offset: BigInt(i * 10), length: 5n }, NB), 'granted');
    assert.equal(files.stats().open, n);
    assert.equal(fdsOnFile(), n);
    const outside = await OutsideLocker.start(path);
    try {
      assert.equal(await outside.request('ofd w 0 0'), 'EAGAIN', 'held while the locks are');
      reset();
      assert.equal(table.dropByServerAddress('10.0.0.8').locks, n);
      assert.deepEqual(calls.batches, [n]);
      // No await of the closes: the kernel locks are gone when the drop returns.
      assert.equal(await outside.request('ofd w 0 0'), 'ok', 'the whole file is free right after the drop');
      assert.equal(await outside.request('ofd u 0 0'), 'ok');
      files.awaitCloses();
      assert.deepEqual(files.stats(), { ...files.stats(), open: 0, closing: 0 });
      assert.equal(fdsOnFile(), 0);
    } finally {
      files.setBudget(100);
      await outside.stop();
    }
  });
});

describe("files: an NFS-Ganesha handle's fsid must name the export root's filesystem", function () {
  let fs: Mounted;
  let files: ExportedFiles;
  let table: LockTable;
  let id: { fsid: Buffer; devMajor: number; devMinor: number };
  before(function () {
    requireNamespaceRoot(this);
    fs = mountTmpfs();
    const exports = new ExportsTable([{ path: fs.dir, ganeshaExportId: 77, clients: [], secure: false, fileLocks: true }]);
    files = new ExportedFiles({ sys: nativeFileSyscalls, kernelHandle: (fh) => exports.kernelHandle(fh), maxOpen: 100 });
    files.setExports([{ path: fs.dir, fileLocks: true }]);
    table = new LockTable({ locker: files, exportOf: (fh) => exports.exportOf(fh) });
    const root = openPath(fs.dir);
    id = filesystemId(root);
    closeFd(root);
  });
  after(() => {
    files?.setExports([]);
    fs?.dispose();
  });

  const words = (a: number, b: number) => {
    const w = Buffer.alloc(8);
    w.writeUInt32LE(a, 0);
    w.writeUInt32LE(b, 4);
    return w;
  };
  const handle = (fsidType: number, fsid: Buffer): Buffer => {
    const k = nameToHandle(makeFile(fs.dir, 'g'));
    return encodeGaneshaHandle({ exportId: 77, big: false, fsidType, fsid, width: 4, type: k.type, kernel: k.handle });
  };
  const req = (fh: Buffer) => ({ fh, owner: { host: hostKey('g', '10.0.0.1'), svid: 1, oh: Buffer.from('g') }, exclusive: true, offset: 0n, length: 1n, serverAddress: '10.0.0.9' });
  const NB = { block: false, reclaim: false };
  const locks = (fh: Buffer): string => {
    const status = table.lock(req(fh), NB);
    if (status === 'granted') table.unlock(req(fh));
    return status;
  };

  it('statfs f_fsid (what Ganesha puts in a tmpfs handle): the right one locks, another is stale_fh on every procedure', () => {
    assert.ok(!id.fsid.equals(Buffer.alloc(8)), 'tmpfs has an f_fsid here');
    assert.equal(locks(handle(GANESHA_FSID_TWO_UINT32, id.fsid)), 'granted');
    const other = Buffer.from(id.fsid);
    other[0] ^= 1;
    const fh = handle(GANESHA_FSID_TWO_UINT32, other);
    assert.equal(table.lock(req(fh), NB), 'stale_fh');
    assert.equal(table.test(req(fh)).status, 'stale_fh');
    assert.equal(table.unlock(req(fh)), 'stale_fh');
    assert.equal(files.stats().open, 0);
  });

  it('the device numbers (fsid_device): the right ones lock, others are stale_fh; a blkid uuid cannot be told and passes', () => {
    assert.equal(locks(handle(GANESHA_FSID_DEVICE, words(id.devMajor, id.devMinor))), 'granted');
    assert.equal(locks(handle(GANESHA_FSID_DEVICE, words(id.devMajor, id.devMinor + 1))), 'stale_fh');
    assert.equal(locks(handle(GANESHA_FSID_TWO_UINT64, Buffer.alloc(16, 7))), 'granted');
  });
});
