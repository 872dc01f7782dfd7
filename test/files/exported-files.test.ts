// ExportedFiles on a real tmpfs, its system calls counted: a LOCK of a file nobody has open opens
// it once (the description validate() opened is the one the lock takes), and a validation that
// no lock follows leaves nothing open once the current job ends.
import assert from 'node:assert/strict';
import { ExportsTable } from '../../src/exports';
import { ExportedFiles, type FileSyscalls } from '../../src/files';
import { nativeFileSyscalls } from '../../src/files/native';
import { LockTable, hostKey } from '../../src/locks';
import { requireNamespaceRoot } from '../support/netns';
import { knfsdHandle, makeFile, mountTmpfs, openFdCount, type Mounted } from './support';

describe('files: ExportedFiles opens each file once per lock', function () {
  let fs: Mounted;
  let files: ExportedFiles;
  let table: LockTable;
  const opens = { n: 0 };
  before(function () {
    requireNamespaceRoot(this);
    fs = mountTmpfs();
    const sys: FileSyscalls = { ...nativeFileSyscalls, openByHandle: (...a) => (opens.n++, nativeFileSyscalls.openByHandle(...a)) };
    const exports = new ExportsTable([{ path: fs.dir, fsid: 5, clients: [], secure: false, fileLocks: true }]);
    files = new ExportedFiles({ sys, kernelHandle: (fh) => exports.kernelHandle(fh), maxOpen: 100 });
    files.setExports([{ path: fs.dir, fileLocks: true }]);
    table = new LockTable({ locker: files, exportOf: (fh) => exports.exportOf(fh) });
  });
  after(() => {
    files?.setExports([]);
    fs?.dispose();
  });

  const owner = (svid: number) => ({ host: hostKey('c', '10.0.0.1'), svid, oh: Buffer.from(`oh${svid}`) });
  const req = (fh: Buffer, svid: number, exclusive = true) => ({ fh, owner: owner(svid), exclusive, offset: 0n, length: 10n, serverAddress: '10.0.0.9' });
  const NB = { block: false, reclaim: false };
  const job = (): Promise<void> => new Promise((r) => setImmediate(r));

  it('LOCK of a new file: one open; UNLOCK closes it', async () => {
    const fh = knfsdHandle(makeFile(fs.dir, 'a'), 5);
    const idle = openFdCount();
    opens.n = 0;
    assert.equal(table.lock(req(fh, 1), NB), 'granted');
    assert.equal(opens.n, 1, 'validation and lock share one open');
    assert.equal(files.stats().open, 1);
    assert.equal(table.unlock(req(fh, 1)), 'granted');
    assert.equal(files.stats().open, 0);
    await job();
    assert.equal(openFdCount(), idle);
  });

  it('a validation no lock takes (a table conflict, TEST, UNLOCK of nothing) is closed when the job ends', async () => {
    const fh = knfsdHandle(makeFile(fs.dir, 'b'), 5);
    const other = knfsdHandle(makeFile(fs.dir, 'c'), 5);
    const idle = openFdCount();
    assert.equal(table.test(req(fh, 1)).status, 'granted');
    assert.equal(table.unlock(req(other, 1)), 'granted');
    assert.equal(files.stats().open, 1, 'at most one spare description at a time');
    await job();
    assert.equal(files.stats().open, 0);
    assert.equal(openFdCount(), idle);
    // Held by owner 1: owner 2's LOCK is refused by the table, after validation opened nothing new.
    assert.equal(table.lock(req(fh, 1), NB), 'granted');
    opens.n = 0;
    assert.equal(table.lock(req(fh, 2), NB), 'denied');
    assert.equal(opens.n, 0, 'a file already open needs no validation open');
    table.unlock(req(fh, 1));
    await job();
    assert.equal(files.stats().open, 0);
  });

  it('closeExport closes a spare description at once (the filesystem can be unmounted)', () => {
    const fh = knfsdHandle(makeFile(fs.dir, 'd'), 5);
    assert.equal(table.test(req(fh, 3)).status, 'granted');
    assert.equal(files.stats().open, 1);
    files.closeExport(fs.dir);
    assert.equal(files.stats().open, 0);
  });
});
