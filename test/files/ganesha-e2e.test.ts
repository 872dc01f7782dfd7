// lockdropd beside a real NFS-Ganesha 4.3 on one node, as a cluster node runs them: Ganesha serves
// NFSv3 + MOUNT with Enable_NLM = false, lockdropd serves NLM + statd, both registered with the
// node's one rpcbind, over one FSAL_VFS export (a tmpfs) that lockdropd knows by Ganesha's
// Export_Id. The handles are Ganesha's own, from its MOUNT3 MNT and NFSv3 LOOKUP replies: an NLM
// lock with one is an OFD lock on the file Ganesha serves, so a separate local process's fcntl
// lock is refused, and the other way round; a corrupted Ganesha handle answers stale_fh.
import assert from 'node:assert/strict';
import { unlinkSync } from 'node:fs';
import path from 'node:path';
import type { StatusReport } from '../../src/control';
import { parseGaneshaHandle } from '../../src/exports';
import { NlmClient, type NlmClientOptions } from '../../src/nlm';
import { RpcClient } from '../../src/rpc';
import { ensureBuilt, spawnDaemon, type DaemonProcess } from '../daemon/harness';
import { ganeshaUnavailable, nodeExec, startGanesha, startNfsNode, type Ganesha, type NfsNode } from '../support/ganesha';
import { localLock, releaseLocalLocks } from '../support/local-locker';
import { requireNamespaceRoot, skipBecause, startRpcbind } from '../support/netns';
import { lookup, mount } from '../support/nfs3';
import { makeFile, mountTmpfs, type Mounted } from './support';

const HOST = '10.213.9.1';
const NODE = '10.213.9.2';
const EXPORT_ID = 77;

/** `rpcinfo -p` rows as "prog/vers/proto" → port. */
function registrations(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [prog, vers, proto, port] = line.trim().split(/\s+/);
    if (/^\d+$/.test(prog ?? '')) m.set(`${prog}/${vers}/${proto}`, Number(port));
  }
  return m;
}

describe('files: lockdropd beside a real NFS-Ganesha on one node', function () {
  this.timeout(90_000);
  let fs: Mounted | undefined;
  let node: NfsNode | undefined;
  let ganesha: Ganesha | undefined;
  let daemon: DaemonProcess | undefined;
  let stopRpcbind: (() => Promise<void>) | undefined;
  let nlmPort = 0;
  let nsmPort = 0;
  const rpcClients: RpcClient[] = [];
  const nlmClients: NlmClient[] = [];
  let root: Buffer;
  let dataFh: Buffer;

  const rpc = (transport: 'udp' | 'tcp', port: number): RpcClient => {
    const c = new RpcClient({ transport, host: NODE, port, timeoutMs: 5_000 });
    rpcClients.push(c);
    return c;
  };
  /** An NLM client that finds lockdropd through the node's rpcbind, as a kernel client's lockd does. */
  const nlm = async (o: Partial<NlmClientOptions> = {}): Promise<NlmClient> => {
    const c = await NlmClient.create({ server: { address: NODE }, transport: 'udp', vers: 4, callerName: 'ganesha-client', source: HOST, ...o });
    nlmClients.push(c);
    return c;
  };
  const fileHandle = async (name: string): Promise<Buffer> => (await lookup(rpc('udp', ganesha!.nfsPort.udp), root, name)).fh;

  before(async function () {
    requireNamespaceRoot(this);
    const why = ganeshaUnavailable();
    if (why !== undefined) skipBecause(this, why);
    ensureBuilt();
    // The client's own rpcbind (GRANTED callbacks find the client through it).
    stopRpcbind = await startRpcbind();
    // The export exists before the node: its mount namespace is a copy made when it starts.
    fs = mountTmpfs();
    makeFile(fs.dir, 'data');
    makeFile(fs.dir, 'doomed');
    node = await startNfsNode({ hostAddress: HOST, address: NODE });
    ganesha = await startGanesha({ node, exportPath: fs.dir, exportId: EXPORT_ID });
    // As Ganesha's export (Squash = None): root is root, so it may lock the files it made exclusively.
    daemon = spawnDaemon(['--rpcbind', 'auto'], { node, config: { exports: [{ path: fs.dir, ganeshaExportId: EXPORT_ID, secure: false, rootSquash: false }] } });
    const started = await daemon.started();
    [nlmPort, nsmPort] = [started.nlmPort as number, started.nsmPort as number];
    for (let i = 0; i < 100; i++) {
      const s = JSON.parse(daemon.ctl(['status', '--json']).stdout) as StatusReport;
      if (s.addresses.some((a) => a.address === NODE && a.present && !a.grace)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    root = (await mount(rpc('udp', ganesha.mountPort.udp), fs.dir)).fh;
    dataFh = await fileHandle('data');
  });

  after(async () => {
    for (const c of nlmClients) await c.close();
    for (const c of rpcClients) c.close();
    await releaseLocalLocks();
    if (daemon) {
      await daemon.stop();
      daemon.cleanup();
    }
    await ganesha?.stop();
    await node?.dispose();
    fs?.dispose();
    await stopRpcbind?.();
  });

  it('one rpcbind: Ganesha registers NFS v3 and MOUNT v3, lockdropd NLM v1/v3/v4 and statd', () => {
    const reg = registrations(nodeExec(node!, 'rpcinfo', ['-p', '127.0.0.1']));
    for (const proto of ['udp', 'tcp']) {
      assert.equal(reg.get(`100003/3/${proto}`), ganesha!.nfsPort[proto as 'udp' | 'tcp'], `NFS v3 ${proto}`);
      assert.equal(reg.get(`100005/3/${proto}`), ganesha!.mountPort[proto as 'udp' | 'tcp'], `MOUNT v3 ${proto}`);
      for (const v of [1, 3, 4]) assert.equal(reg.get(`100021/${v}/${proto}`), nlmPort, `NLM v${v} ${proto} is lockdropd's`);
      assert.equal(reg.get(`100024/1/${proto}`), nsmPort, `statd ${proto} is lockdropd's`);
    }
    const s = JSON.parse(daemon!.ctl(['status', '--json']).stdout) as StatusReport;
    assert.deepEqual(s.files.exports, [fs!.dir], 'the export is locked on its files');
    const h = parseGaneshaHandle(dataFh);
    assert.equal(h.exportId, EXPORT_ID, "Ganesha's handle carries its Export_Id");
  });

  it('an NLM lock with Ganesha\'s handle holds against a local fcntl lock, and a local lock against NLM', async () => {
    const a = await nlm();
    const file = path.join(fs!.dir, 'data');
    assert.equal((await a.lock({ fh: dataFh, svid: 1, exclusive: true, offset: 0n, length: 100n })).status, 'granted');
    assert.equal(await localLock(file, { start: 50, length: 10 }).outcome, 'refused', "a local process's fcntl lock inside the NLM range");
    const local = localLock(file, { start: 100, length: 10 });
    assert.equal(await local.outcome, 'locked', 'beside it');
    assert.equal((await a.lock({ fh: dataFh, svid: 2, exclusive: true, offset: 105n, length: 1n })).status, 'denied', 'NLM over the local lock');
    const t = await a.test({ fh: dataFh, svid: 2, exclusive: true, offset: 100n, length: 50n });
    assert.deepEqual([t.status, t.holder?.svid, t.holder?.offset, t.holder?.length], ['denied', 0, 100n, 10n], 'TEST names the holder outside lockdrop');
    await local.release();
    assert.equal((await a.unlock({ fh: dataFh, svid: 1 })).status, 'granted');
    const after = localLock(file);
    assert.equal(await after.outcome, 'locked', 'the unlock reached the file before the reply');
    await after.release();
  });

  it('a blocking LOCK behind a local holder is granted by callback when the holder lets go', async () => {
    const b = await nlm({ callerName: 'ganesha-client-b', callback: { rpcbind: true } });
    const local = localLock(path.join(fs!.dir, 'data'), { kind: 'ofd' });
    assert.equal(await local.outcome, 'locked');
    assert.equal((await b.lock({ fh: dataFh, svid: 7, exclusive: true, block: true })).status, 'blocked');
    const granted = b.waitGranted({ svid: 7 }, 5_000);
    await local.release();
    await granted;
    assert.equal(await localLock(path.join(fs!.dir, 'data'), { start: 0, length: 1 }).outcome, 'refused', 'the granted lock is on the file');
    assert.equal((await b.unlock({ fh: dataFh, svid: 7 })).status, 'granted');
  });

  it('a corrupted or stale Ganesha handle answers stale_fh (v4) / denied_nolocks (v3), as Ganesha itself refuses it', async () => {
    const v4 = await nlm();
    const v3 = await nlm({ vers: 3 });
    const k = parseGaneshaHandle(dataFh).kernel!;
    const at = k.handle.byteOffset - dataFh.byteOffset;
    const wrongInode = Buffer.from(dataFh);
    wrongInode.writeUInt32LE(0xdeadbeef, at); // the inode number inside the kernel handle
    const badLength = Buffer.from(dataFh);
    badLength[4] = badLength[4]! + 4; // fs_len past the end of the handle
    const otherExport = Buffer.from(dataFh);
    otherExport.writeUInt16BE(EXPORT_ID + 1, 2);
    const doomed = await fileHandle('doomed');
    unlinkSync(path.join(fs!.dir, 'doomed'));
    // Ganesha agrees: LOOKUP in the intact file handle is NOTDIR (20), in the corrupted one STALE (70).
    await assert.rejects(lookup(rpc('udp', ganesha!.nfsPort.udp), dataFh, 'x'), /status 20\b/);
    await assert.rejects(lookup(rpc('udp', ganesha!.nfsPort.udp), wrongInode, 'x'), /status 70\b/);
    for (const [what, fh] of [['a corrupted inode', wrongInode], ['a corrupted length', badLength], ['another Export_Id', otherExport], ['a deleted file', doomed]] as const) {
      for (const [c, want] of [[v4, 'stale_fh'], [v3, 'denied_nolocks']] as const) {
        assert.equal((await c.lock({ fh, svid: 3, exclusive: true })).status, want, `LOCK, ${what}`);
        assert.equal((await c.test({ fh, svid: 3, exclusive: true })).status, want, `TEST, ${what}`);
        assert.equal((await c.unlock({ fh, svid: 3 })).status, want, `UNLOCK, ${what}`);
      }
    }
    const s = JSON.parse(daemon!.ctl(['status', '--json']).stdout) as StatusReport;
    assert.equal(s.locks, 0);
    assert.equal(s.files.open, 0, 'nothing left open');
  });
});
