// NLM locks on real files, over the wire: every lock an NLM client holds is an OFD lock on the
// file its handle names, so a separate local process sees it and is seen by it; blocking requests
// wait for holders outside lockdrop; stale handles and read-only filesystems answer as Linux's
// lockd; releases and drops reach the kernel before the reply; descriptors never leak.
import assert from 'node:assert/strict';
import { closeSync, openSync, readdirSync, readlinkSync, rmSync, unlinkSync } from 'node:fs';
import { LOCK_WRITE, ofdSetLock } from '../../src/addon/files';
import { NlmClient, type NlmClientOptions } from '../../src/nlm';
import { LeaseHolder } from '../support/files';
import { localLock, releaseLocalLocks } from '../support/local-locker';
import { requireNamespaceRoot, sh, startRpcbind } from '../support/netns';
import { knfsdHandle, makeFile, mountExt4, mountTmpfs, openFdCount, startFileServer, type FileServer, type Mounted } from './support';

const S = '127.0.0.1';

/** This process's fds on files under dir (the kernel wait threads' dups included). */
const fdsUnder = (dir: string): number => readdirSync('/proc/self/fd').filter((fd) => {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${dir}/`);
  } catch {
    return false;
  }
}).length;

async function until(cond: () => boolean, what: string, ms = 2_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const fsKind of ['tmpfs', 'ext4'] as const) {
  describe(`files: NLM locks on real files (${fsKind})`, function () {
    this.timeout(60_000);
    let fs: Mounted;
    let server: FileServer;
    let stopRpcbind: () => Promise<void>;
    const clients: NlmClient[] = [];
    const client = async (o: Partial<NlmClientOptions> = {}): Promise<NlmClient> => {
      const c = await NlmClient.create({ server: { address: S, port: server.port }, transport: 'udp', vers: 4, callerName: 'client-a', ...o });
      clients.push(c);
      return c;
    };
    let callbacks: NlmClient | undefined;
    /** The suite's one client serving callbacks: the server keeps one callback port per client address (as for a host's lockd). */
    const callbackClient = async (): Promise<NlmClient> => (callbacks ??= await client({ callerName: 'client-b', callback: { rpcbind: true } }));
    let n = 0;
    const newFile = (): { path: string; fh: Buffer } => {
      const path = makeFile(fs.dir, `f${++n}`);
      return { path, fh: knfsdHandle(path, 7) };
    };

    before(async function () {
      requireNamespaceRoot(this);
      stopRpcbind = await startRpcbind();
      fs = fsKind === 'tmpfs' ? mountTmpfs() : mountExt4();
      server = await startFileServer([S], [{ path: fs.dir, fsid: 7 }], { options: { grantRetryInitialMs: 100 } });
    });
    after(async () => {
      for (const c of clients.splice(0)) await c.close();
      await releaseLocalLocks();
      await server?.close();
      fs?.dispose();
      await stopRpcbind?.();
    });

    it('an NLM lock holds against a local process, and a local lock against NLM; TEST names the outside holder', async () => {
      const a = await client();
      const { path, fh } = newFile();
      assert.equal((await a.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 100n })).status, 'granted');
      assert.equal(await localLock(path, { start: 50, length: 10 }).outcome, 'refused', 'local write lock inside the NLM range');
      const beside = localLock(path, { start: 100, length: 10 });
      assert.equal(await beside.outcome, 'locked', 'local write lock next to it');
      assert.equal((await a.lock({ fh, svid: 2, exclusive: false, offset: 105n, length: 1n })).status, 'denied', 'NLM over the local lock');
      const t = await a.test({ fh, svid: 2, exclusive: false, offset: 100n, length: 30n });
      assert.equal(t.status, 'denied');
      assert.deepEqual({ ...t.holder, oh: t.holder!.oh.length }, { exclusive: true, svid: 0, oh: 0, offset: 100n, length: 10n }, 'held outside: svid 0, no owner handle');
      const ofd = localLock(path, { kind: 'ofd', type: 'read', start: 200, length: 10 });
      assert.equal(await ofd.outcome, 'locked');
      assert.equal((await a.lock({ fh, svid: 2, exclusive: true, offset: 205n, length: 1n })).status, 'denied', 'NLM over a local OFD lock');
      assert.equal((await a.lock({ fh, svid: 2, exclusive: false, offset: 205n, length: 1n })).status, 'granted', 'shared beside a shared one');
      await beside.release();
      await ofd.release();
      assert.equal((await a.unlock({ fh, svid: 1, offset: 0n, length: 100n })).status, 'granted');
      assert.equal(await localLock(path, { start: 0, length: 100 }).outcome, 'locked', 'the unlock reached the file before the reply');
    });

    it("a read lease (an NFSv4 read delegation): a shared lock is granted and breaks nothing; an exclusive lock's reply is dropped while the lease breaks, and its retransmission is granted", async () => {
      const a = await client({ callerName: 'client-lease' });
      const { path, fh } = newFile();
      const lease = await LeaseHolder.start(path);
      try {
        assert.equal((await a.lock({ fh, svid: 1, exclusive: false, offset: 0n, length: 10n })).status, 'granted');
        assert.equal(await lease.state(), 'read', 'the shared lock left the lease alone');
        let answered: string | undefined;
        const exclusive = a.lock({ fh, svid: 2, exclusive: true, offset: 20n, length: 10n }).then((r) => (answered = r.status));
        for (let i = 0; i < 100 && (await lease.state()) !== 'breaking'; i++) await new Promise((r) => setTimeout(r, 10));
        assert.equal(await lease.state(), 'breaking', "the exclusive lock's open started the break");
        await new Promise((r) => setTimeout(r, 700));
        assert.equal(answered, undefined, 'no answer while the lease is breaking (not denied, not failed)');
        assert.equal(await lease.release(), 'released');
        assert.equal(await exclusive, 'granted', 'the client\'s retransmission (same xid) is granted');
        assert.equal(await localLock(path, { start: 25, length: 1 }).outcome, 'refused', 'the lock is on the file');
      } finally {
        await lease.stop();
      }
    });

    it('mirrors splits, upgrades and downgrades exactly on the file', async () => {
      const a = await client();
      const { path, fh } = newFile();
      assert.equal((await a.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 100n })).status, 'granted');
      await a.unlock({ fh, svid: 1, offset: 40n, length: 20n });
      const hole = localLock(path, { start: 40, length: 20 });
      assert.equal(await hole.outcome, 'locked', 'the unlocked middle is free on the file');
      await hole.release();
      assert.equal(await localLock(path, { start: 39, length: 1 }).outcome, 'refused', 'the left part is still held');
      assert.equal(await localLock(path, { start: 60, length: 1 }).outcome, 'refused', 'the right part is still held');
      // Downgrade [0, 40) to shared: a local reader gets in there, a writer does not.
      assert.equal((await a.lock({ fh, svid: 1, exclusive: false, offset: 0n, length: 40n })).status, 'granted');
      const reader = localLock(path, { type: 'read', start: 10, length: 5 });
      assert.equal(await reader.outcome, 'locked');
      assert.equal(await localLock(path, { type: 'write', start: 10, length: 1 }).outcome, 'refused');
      // Upgrade over the local reader is refused, and the owner keeps its shared lock.
      assert.equal((await a.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 40n })).status, 'denied');
      assert.equal(await localLock(path, { type: 'write', start: 20, length: 1 }).outcome, 'refused', 'still held shared after the refused upgrade');
      await reader.release();
      assert.equal((await a.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 40n })).status, 'granted', 'upgrade once the reader left');
      assert.equal(await localLock(path, { type: 'read', start: 20, length: 1 }).outcome, 'refused');
      await a.unlock({ fh, svid: 1 });
      assert.equal(await localLock(path).outcome, 'locked', 'whole-file unlock leaves nothing');
    });

    it('a blocking LOCK behind a local holder is granted (GRANTED callback) when it lets go; CANCEL withdraws the wait', async () => {
      const a = await callbackClient();
      const { path, fh } = newFile();
      const local = localLock(path, { start: 0, length: 10 });
      assert.equal(await local.outcome, 'locked');
      assert.equal((await a.lock({ fh, svid: 5, exclusive: true, offset: 0n, length: 10n, block: true })).status, 'blocked');
      const granted = a.waitGranted({ svid: 5 }, 3_000);
      const released = Date.now();
      await local.release();
      await granted;
      const ms = Date.now() - released;
      assert.ok(ms < 1_000, `granted ${ms} ms after the local holder let go`);
      assert.equal(await localLock(path, { start: 5, length: 1 }).outcome, 'refused', 'the granted lock is on the file');

      const { path: p2, fh: fh2 } = newFile();
      const l2 = localLock(p2, { kind: 'ofd' });
      assert.equal(await l2.outcome, 'locked');
      assert.equal((await a.lock({ fh: fh2, svid: 6, exclusive: true, block: true })).status, 'blocked');
      assert.equal((await a.cancel({ fh: fh2, svid: 6, exclusive: true, block: true })).status, 'granted');
      await until(() => server.files.stats().waits === 0, 'the kernel wait ends once cancelled');
      await l2.release();
      assert.equal(await localLock(p2).outcome, 'locked', 'a cancelled wait holds nothing');
      assert.equal(a.granted.filter((g) => g.lock.svid === 6).length, 0);
    });

    it('stale handles answer stale_fh (v4) / denied_nolocks (v3) on every procedure', async () => {
      const a4 = await client();
      const a3 = await client({ vers: 3 });
      const { path, fh } = newFile();
      unlinkSync(path);
      const corrupt = Buffer.from(fh);
      corrupt.writeUInt32LE(0xdeadbeef, 8); // the inode number inside the kernel handle
      const short = fh.subarray(0, fh.length - 2);
      const noExport = Buffer.from(fh);
      noExport.writeUInt32LE(99, 4);
      for (const [what, bad] of [['deleted', fh], ['corrupted', corrupt], ['truncated', short], ['of no export', noExport]] as const) {
        for (const [c, want] of [[a4, 'stale_fh'], [a3, 'denied_nolocks']] as const) {
          const l = { fh: bad, svid: 1, exclusive: true };
          assert.equal((await c.lock(l)).status, want, `LOCK, ${what}`);
          assert.equal((await c.test(l)).status, want, `TEST, ${what}`);
          assert.equal((await c.cancel(l)).status, want, `CANCEL, ${what}`);
          assert.equal((await c.unlock(l)).status, want, `UNLOCK, ${what}`);
          assert.equal((await c.share({ fh: bad, mode: 0, access: 1 })).status, want, `SHARE, ${what}`);
        }
      }
      const badKeys = new Set([fh, corrupt, short, noExport].map((b) => b.toString('hex')));
      assert.deepEqual([...server.table.locks()].filter((l) => badKeys.has(l.fh.toString('hex'))), []);
    });

    it('drops by address and by host release the kernel locks; descriptors come back to idle after 2,000 lock/drop cycles', async () => {
      const a = await client();
      const files = Array.from({ length: 20 }, () => newFile());
      server.table.dropByServerAddress(S); // what earlier cases left
      await until(() => server.files.stats().waits === 0, 'no kernel wait left');
      const idle = openFdCount();
      for (let round = 0; round < 100; round++) {
        for (const [i, f] of files.entries()) {
          const st = (await a.lock({ fh: f.fh, svid: i % 3, exclusive: i % 2 === 0, offset: BigInt(round % 7), length: 3n })).status;
          assert.equal(st, 'granted');
        }
        if (round % 2) server.table.dropByServerAddress(S);
        else server.table.dropByHost([...server.table.locks()][0]!.owner.host);
      }
      assert.equal(server.files.stats().open, 0);
      assert.equal(openFdCount(), idle);
      for (const f of files) {
        const l = localLock(f.path);
        assert.equal(await l.outcome, 'locked', 'nothing stays locked on the file');
        await l.release();
      }
    });

    it('refuses with denied_nolocks when the descriptor budget is spent, and never leaks', async () => {
      const a = await client();
      server.files.setBudget(server.files.stats().roots + 2);
      try {
        const fs3 = [newFile(), newFile(), newFile()];
        assert.equal((await a.lock({ fh: fs3[0]!.fh, svid: 1, exclusive: true })).status, 'granted');
        assert.equal((await a.lock({ fh: fs3[1]!.fh, svid: 1, exclusive: true })).status, 'granted');
        assert.equal((await a.lock({ fh: fs3[2]!.fh, svid: 1, exclusive: true })).status, 'denied_nolocks');
        assert.ok(server.files.stats().budgetRefusals >= 1);
        for (const f of fs3) await a.unlock({ fh: f.fh, svid: 1 });
        assert.equal(server.files.stats().open, 0);
      } finally {
        server.files.setBudget(10_000);
      }
    });

    it('LOCK_MSG on a leased file: neither its RPC reply nor a LOCK_RES until the lease is broken, then LOCK_RES granted', async () => {
      const m = await callbackClient();
      const { path, fh } = newFile();
      const again = await LeaseHolder.start(path);
      try {
        const sent = m.lockMsg({ fh, svid: 3, exclusive: true });
        for (let i = 0; i < 100 && (await again.state()) !== 'breaking'; i++) await new Promise((r) => setTimeout(r, 10));
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(m.results.length, 0, 'no LOCK_RES while the lease is breaking');
        assert.equal(await again.release(), 'released');
        assert.equal((await m.waitRes(await sent, 5_000)).status, 'granted', 'the retransmitted LOCK_MSG is answered by LOCK_RES granted');
      } finally {
        await again.stop();
      }
    });
  });
}

describe('files: read-only filesystems and unmounting after a drop', function () {
  this.timeout(60_000);
  let stopRpcbind: () => Promise<void>;
  before(async function () {
    requireNamespaceRoot(this);
    stopRpcbind = await startRpcbind();
  });
  after(async () => stopRpcbind?.());

  it('an exclusive lock on a read-only filesystem answers rofs (v4), a shared one is granted', async () => {
    const rw = mountExt4();
    makeFile(rw.dir, 'data');
    const fh = knfsdHandle(`${rw.dir}/data`, 9);
    sh('mount', ['-o', 'remount,ro', rw.dir]);
    const server = await startFileServer([S], [{ path: rw.dir, fsid: 9 }]);
    const c4 = await NlmClient.create({ server: { address: S, port: server.port }, transport: 'tcp', vers: 4, callerName: 'ro-client' });
    const c3 = await NlmClient.create({ server: { address: S, port: server.port }, transport: 'tcp', vers: 3, callerName: 'ro-client' });
    try {
      assert.equal((await c4.lock({ fh, svid: 1, exclusive: true })).status, 'rofs');
      assert.equal((await c3.lock({ fh, svid: 1, exclusive: true })).status, 'denied_nolocks');
      assert.equal((await c4.lock({ fh, svid: 1, exclusive: false })).status, 'granted');
      // An exclusive request that meets that shared lock can never be granted here: the files
      // part says so when the request arrives (the table asks it with the request's mode).
      const key = fh.toString('latin1');
      assert.equal(server.files.validate(key, fh, true), 'rofs');
      assert.equal(server.files.validate(key, fh), undefined);
      assert.equal(server.files.validate(key, fh, false), undefined);
      assert.equal((await c4.lock({ fh, svid: 2, exclusive: true, block: true })).status, 'rofs', 'a blocking one is refused at once, not queued for ever');
      assert.equal([...server.table.blocked()].length, 0);
    } finally {
      await c4.close();
      await c3.close();
      await server.close();
      rw.dispose();
    }
  });

  it('a queued request that can never be granted when woken (its file gone, its filesystem read-only) is removed: no GRANTED, and its re-sent request gets the refusal', async () => {
    const m = mountTmpfs();
    const server = await startFileServer([S], [{ path: m.dir, fsid: 12 }]);
    const holder = await NlmClient.create({ server: { address: S, port: server.port }, transport: 'udp', vers: 4, callerName: 'holder' });
    const waiter = await NlmClient.create({ server: { address: S, port: server.port }, transport: 'udp', vers: 4, callerName: 'waiter', callback: { rpcbind: true } });
    try {
      // Stale: the file is removed while the holder has it open; its last close frees it.
      const gone = `${m.dir}/gone`;
      makeFile(m.dir, 'gone');
      const fh = knfsdHandle(gone, 12);
      assert.equal((await holder.lock({ fh, svid: 1, exclusive: true })).status, 'granted');
      assert.equal((await waiter.lock({ fh, svid: 2, exclusive: true, block: true })).status, 'blocked');
      unlinkSync(gone);
      assert.equal((await holder.unlock({ fh, svid: 1 })).status, 'granted');
      assert.equal([...server.table.blocked()].length, 0, 'removed when woken');
      // Read-only: remounted while an exclusive request waits behind a shared lock (held read-only).
      const fh2 = knfsdHandle(makeFile(m.dir, 'data'), 12);
      assert.equal((await holder.lock({ fh: fh2, svid: 1, exclusive: false })).status, 'granted');
      assert.equal((await waiter.lock({ fh: fh2, svid: 3, exclusive: true, block: true })).status, 'blocked');
      sh('mount', ['-o', 'remount,ro', m.dir]);
      assert.equal((await holder.unlock({ fh: fh2, svid: 1 })).status, 'granted');
      assert.equal([...server.table.blocked()].length, 0, 'removed when woken');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(waiter.granted.length, 0, 'no GRANTED for either');
      assert.equal((await waiter.lock({ fh, svid: 2, exclusive: true, block: true })).status, 'stale_fh', 'the re-sent request');
      assert.equal((await waiter.lock({ fh: fh2, svid: 3, exclusive: true, block: true })).status, 'rofs');
      assert.equal(server.files.stats().open, 0);
    } finally {
      await holder.close();
      await waiter.close();
      await server.close();
      m.dispose();
    }
  });

  it('after dropByExport and closeExport nothing of the export is open: umount succeeds at once', async () => {
    const m = mountTmpfs();
    let unmounted = false;
    const server = await startFileServer([S], [{ path: m.dir, fsid: 11 }]);
    const c = await NlmClient.create({ server: { address: S, port: server.port }, transport: 'udp', vers: 4, callerName: 'umount-client' });
    try {
      for (let i = 0; i < 5; i++) assert.equal((await c.lock({ fh: knfsdHandle(makeFile(m.dir, `u${i}`), 11), svid: i, exclusive: true })).status, 'granted');
      // Enough descriptions that the drop's closes run on the addon's threads after it returns.
      const many = knfsdHandle(makeFile(m.dir, 'many'), 11);
      for (let i = 0; i < 400; i++) {
        const owner = { host: 'many@10.0.0.5', svid: i, oh: Buffer.from('m') };
        assert.equal(server.table.lock({ fh: many, owner, exclusive: true, offset: BigInt(i * 2), length: 1n, serverAddress: S }, { block: false, reclaim: false }), 'granted');
      }
      assert.throws(() => sh('umount', [m.dir]), /busy/i, 'held files keep the filesystem busy');
      const counts = server.table.dropByExport(m.dir);
      assert.equal(counts.locks, 405);
      await server.files.closeExport(m.dir);
      sh('umount', [m.dir]);
      unmounted = true;
    } finally {
      await c.close();
      await server.close();
      if (unmounted) rmSync(m.dir, { recursive: true, force: true });
      else m.dispose();
    }
  });

  it('closeExport resolves once the cancelled kernel waits have let go of the file too: umount right after succeeds', async () => {
    const m = mountTmpfs();
    let unmounted = false;
    const server = await startFileServer([S], [{ path: m.dir, fsid: 12 }]);
    // A holder outside the table: a description of this process's own, closed without yielding below.
    const held = makeFile(m.dir, 'held');
    const holder = openSync(held, 'r+');
    let holderOpen = true;
    try {
      assert.equal(ofdSetLock(holder, LOCK_WRITE, 0, 0), 0);
      const fh = knfsdHandle(held, 12);
      // 64 blocking requests behind it, each waiting in the kernel on a dup of its description.
      for (let i = 0; i < 64; i++) {
        const owner = { host: 'waiter@10.0.0.6', svid: i, oh: Buffer.from('w') };
        assert.equal(server.table.lock({ fh, owner, exclusive: true, offset: 0n, length: 0n, serverAddress: S }, { block: true, reclaim: false }), 'blocked');
      }
      await until(() => server.files.stats().waits === 64, '64 kernel waits');
      assert.equal(server.table.dropByExport(m.dir).blocked, 64);
      await server.files.closeExport(m.dir);
      // A wait's end is reported only after its thread closed its dup of the description.
      assert.equal(server.files.stats().waits, 0, 'every wait has ended');
      closeSync(holder);
      holderOpen = false;
      assert.equal(fdsUnder(m.dir), 0, 'no fd of this process on the export');
      sh('umount', [m.dir]);
      unmounted = true;
    } finally {
      await server.close();
      if (unmounted) rmSync(m.dir, { recursive: true, force: true });
      else {
        if (holderOpen) closeSync(holder);
        m.dispose();
      }
    }
  });
});
