// One file, many handles (issue 21.9): two exports of one filesystem, a knfsd and an NFS-Ganesha
// handle, a handle with its parent directory (subtree_check) and one without are one file to the lock table, as Linux's lockd keys its files by inode. One
// owner's locks through two handles merge instead of conflicting with each other, a blocking
// request never waits on its own lock, another owner conflicts through any handle, and each
// client's GRANTED callback carries the handle it sent (and its requests confirm the grant).
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { closeFd, filesystemId, nameToHandle, openPath } from '../../src/addon/files';
import { ExportsTable, GANESHA_FSID_TWO_UINT32, knfsdHandle as encodeKnfsdHandle, type ExportEntry } from '../../src/exports';
import { ExportedFiles } from '../../src/files';
import { nativeFileSyscalls } from '../../src/files/native';
import { LockTable, hostKey, type BlockGranted } from '../../src/locks';
import { checkIndexes } from '../../src/locks/testing';
import { NlmClient } from '../../src/nlm';
import { encodeGaneshaHandle } from '../support/ganesha-handle';
import { localLock, releaseLocalLocks } from '../support/local-locker';
import { requireNamespaceRoot, startRpcbind } from '../support/netns';
import { knfsdHandle, makeFile, mountTmpfs, startFileServer, type Mounted } from './support';

describe('files: two handles of one file are one file to the lock table', function () {
  this.timeout(30_000);
  let m: Mounted;
  let sub: string;
  let entries: (ExportEntry & { fsid: number })[];
  let n = 0;
  before(function () {
    requireNamespaceRoot(this);
    m = mountTmpfs();
    sub = `${m.dir}/sub`;
    mkdirSync(sub);
    // The filesystem's root and a directory of it, each an export (as knfsd allows): one file, two handles.
    entries = [
      { path: m.dir, fsid: 21, clients: [], secure: false, fileLocks: true },
      { path: sub, fsid: 22, ganeshaExportId: 78, clients: [], secure: false, fileLocks: true },
    ];
  });
  after(async () => {
    await releaseLocalLocks();
    m?.dispose();
  });

  /** A new file in the shared directory, by three handles: knfsd through each export, and NFS-Ganesha's. */
  const handles = (): { path: string; a: Buffer; b: Buffer; g: Buffer; k: { type: number; handle: Buffer } } => {
    const path = makeFile(sub, `f${++n}`);
    const root = openPath(m.dir);
    const { fsid } = filesystemId(root);
    closeFd(root);
    const k = nameToHandle(path);
    const g = encodeGaneshaHandle({ exportId: 78, big: false, fsidType: GANESHA_FSID_TWO_UINT32, fsid, width: 4, type: k.type, kernel: k.handle });
    return { path, a: knfsdHandle(path, 21), b: knfsdHandle(path, 22), g, k };
  };

  it('one owner through two handles holds one set of locks; another owner conflicts through any; nothing waits on itself', () => {
    const exports = new ExportsTable(entries);
    const files = new ExportedFiles({ sys: nativeFileSyscalls, kernelHandle: (fh) => exports.kernelHandle(fh), maxOpen: 100 });
    files.setExports(entries.map((e) => ({ path: e.path, fileLocks: true })));
    const granted: BlockGranted[] = [];
    const table = new LockTable({ locker: files, exportOf: (fh) => exports.exportOf(fh), onBlockGranted: (g) => granted.push(g) });
    try {
      const { a, b, g, k } = handles();
      // As knfsd's subtree_check makes it: FILEID_INO32_GEN_PARENT, the parent directory after the file (tmpfs opens it).
      const connectable = encodeKnfsdHandle(21, { type: 2, handle: Buffer.concat([k.handle, Buffer.alloc(8, 7)]) });
      assert.notEqual(exports.exportOf(a), exports.exportOf(b), 'two exports');
      const req = (fh: Buffer, svid: number, exclusive: boolean, offset: bigint, length: bigint) => ({ fh, owner: { host: hostKey('c', '10.0.0.1'), svid, oh: Buffer.from(`oh${svid}`) }, exclusive, offset, length, serverAddress: '10.0.0.9' });
      const NB = { block: false, reclaim: false };
      const B = { block: true, reclaim: false, waiter: () => 'w' };
      assert.equal(table.lock(req(a, 1, true, 0n, 10n), NB), 'granted');
      assert.equal(table.lock(req(b, 1, true, 5n, 10n), NB), 'granted', 'the same owner through the other export: not its own conflict');
      assert.equal(table.lock(req(g, 1, false, 20n, 10n), NB), 'granted', 'and through a Ganesha handle');
      const held = [...table.locks()].map((l) => `${l.offset}+${l.length}${l.exclusive ? 'w' : 'r'}`).sort();
      assert.deepEqual(held, ['0+15w', '20+10r'], 'merged on one file');
      assert.equal(files.stats().open, 1, 'one description for the owner and the file');
      assert.equal(table.lock(req(b, 2, false, 0n, 1n), NB), 'denied', 'another owner through the other handle');
      const t = table.test(req(g, 2, true, 25n, 1n));
      assert.equal(t.status, 'denied');
      assert.equal(t.status === 'denied' && t.holder.owner.svid, 1, 'the holder is the table owner, not an outside lock (svid 0)');
      assert.equal(table.lock(req(b, 1, true, 0n, 40n), B), 'granted', 'a blocking request over its own locks through another handle is granted, not queued behind itself');
      assert.equal(table.lock(req(connectable, 1, true, 30n, 10n), NB), 'granted', 'and through a handle that names the parent too');
      assert.equal(table.lock(req(g, 2, true, 0n, 1n), B), 'blocked');
      assert.equal(table.unlock(req(a, 1, false, 0n, 0n)), 'granted');
      assert.equal(granted.length, 1, 'the other owner is granted when the first lets go through its handle');
      assert.equal(table.unlock(req(b, 2, false, 0n, 0n)), 'granted');
      assert.equal(table.stats().locks, 0);
      assert.equal(files.stats().open, 0);
      assert.deepEqual(checkIndexes(table), []);
    } finally {
      files.setExports([]);
    }
  });

  it("a file's descriptions count on the export the table names it by: another export's root closes, and closing that export leaves them", async () => {
    const exports = new ExportsTable(entries);
    const files = new ExportedFiles({ sys: nativeFileSyscalls, kernelHandle: (fh) => exports.kernelHandle(fh), maxOpen: 100, rootLingerMs: 0 });
    files.setExports(entries.map((e) => ({ path: e.path, fileLocks: true })));
    const table = new LockTable({ locker: files, exportOf: (fh) => exports.exportOf(fh) });
    try {
      const { path, a, b } = handles();
      const owner = (svid: number) => ({ host: hostKey('c', '10.0.0.1'), svid, oh: Buffer.from(`oh${svid}`) });
      const req = (fh: Buffer, svid: number, exclusive = false) => ({ fh, owner: owner(svid), exclusive, offset: 0n, length: 10n, serverAddress: '10.0.0.9' });
      const NB = { block: false, reclaim: false };
      assert.equal(table.lock(req(a, 1), NB), 'granted');
      assert.equal(table.lock(req(b, 2), NB), 'granted', 'a second owner through the other export');
      assert.equal(table.lock(req(b, 3, true), NB), 'denied');
      assert.equal(files.stats().roots, 1, "only the root of the file's export stays open");
      // The other export goes: nothing of this file is its (the table drops nothing there either).
      assert.equal(table.dropByExport(sub).locks, 0);
      assert.equal(await files.closeExport(sub), 0, 'no description of the file closed');
      assert.equal(await localLock(path, { start: 0, length: 1 }).outcome, 'refused', 'both owners still hold their locks on the file');
      table.unlock(req(a, 1));
      table.unlock(req(b, 2));
      assert.deepEqual(files.stats(), { ...files.stats(), open: 0, roots: 0 }, 'every root closed with the last description');
      assert.deepEqual(checkIndexes(table), []);
    } finally {
      files.setExports([]);
    }
  });

  it('over NLM: a blocked client is GRANTED with the handle it sent, and the locks are on the file', async () => {
    const stopRpcbind = await startRpcbind();
    const server = await startFileServer(['127.0.0.1'], entries, { options: { grantRetryInitialMs: 100, grantTimeoutMs: 500 } });
    const x = await NlmClient.create({ server: { address: '127.0.0.1', port: server.port }, transport: 'udp', vers: 4, callerName: 'x', callback: { rpcbind: true } });
    const y = await NlmClient.create({ server: { address: '127.0.0.1', port: server.port }, transport: 'udp', vers: 4, callerName: 'y' });
    try {
      const { path, a, b } = handles();
      assert.equal((await y.lock({ fh: a, svid: 1, exclusive: true })).status, 'granted');
      assert.equal((await y.lock({ fh: b, svid: 1, exclusive: true, offset: 0n, length: 10n })).status, 'granted', 'y again, through the other export');
      assert.equal((await x.lock({ fh: b, svid: 2, exclusive: true, block: true })).status, 'blocked');
      // x does not answer the GRANTED (lost): its re-sent LOCK confirms the grant instead.
      x.answerGranted('none');
      const grant = x.waitGranted({ svid: 2 }, 3_000);
      assert.equal((await y.unlock({ fh: a, svid: 1 })).status, 'granted');
      assert.ok((await grant).lock.fh.equals(b), "x's GRANTED names x's own handle");
      assert.equal((await x.lock({ fh: b, svid: 2, exclusive: true, block: true })).status, 'granted');
      await new Promise((r) => setTimeout(r, 800));
      assert.equal([...server.table.locks()].length, 1, 'confirmed by the re-sent LOCK through its handle: not undone when the grant times out');
      assert.equal(await localLock(path, { start: 0, length: 1 }).outcome, 'refused', "x's lock is on the file");
      assert.equal((await x.unlock({ fh: b, svid: 2 })).status, 'granted');
      assert.equal(server.files.stats().open, 0);
    } finally {
      await x.close();
      await y.close();
      await server.close();
      await stopRpcbind();
    }
  });
});
