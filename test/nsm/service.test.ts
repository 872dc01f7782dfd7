// The statd program over real sockets: every procedure, the local-caller rule, the status
// callback to an RPC monitor (found through rpcbind, as statd does), and bad input.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XdrWriter } from '../../src/xdr';
import { registerWithRpcbind, RpcClient, RpcReplyError, RpcServer, type Procedure } from '../../src/rpc';
import {
  decodeSmStat, decodeSmStatRes, decodeSmStatus, encodeMon, encodeMonId, encodeMyId, encodeSmName, encodeStatChge, encodeVoid,
  NSM_PROGRAM, NSM_VERSION, SM_MAXSTRLEN, SM_MON, SM_NOTIFY, SM_NULL, SM_SIMU_CRASH, SM_STAT, SM_UNMON, SM_UNMON_ALL, STAT_FAIL, STAT_SUCC,
  type MyId, type SmStatus,
} from '../../src/nsm';
import { hasCommand, ip, requireNamespaceRoot, startRpcbind } from '../support/netns';

import { startNsm, waitFor, type NsmUnderTest } from './support';

const SERVER = '10.166.0.1';
const REMOTE = '10.166.0.2'; // another address of this namespace: a caller that is neither loopback nor the server address
const myId: MyId = { myName: 'lockd', myProg: 100021, myVers: 4, myProc: 16 };
const priv = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');

describe('nsm statd program over the wire', function () {
  this.timeout(30_000);
  let dir: string;
  let u: NsmUnderTest;
  let stopRpcbind: () => Promise<void>;
  const call = <R>(proc: number, enc: (w: XdrWriter) => void, dec: (r: import('../../src/xdr').XdrReader) => R, from = '127.0.0.1', to = SERVER, sourcePort?: number): Promise<R> => {
    const c = new RpcClient({ transport: 'udp', host: to, port: u.port, source: from, sourcePort, timeoutMs: 3000 });
    return c.call(NSM_PROGRAM, NSM_VERSION, proc, enc, dec).finally(() => c.close());
  };

  before(async function () {
    requireNamespaceRoot(this);
    if (!hasCommand('rpcbind')) this.skip();
    ip('addr', 'add', `${SERVER}/32`, 'dev', 'lo');
    ip('addr', 'add', `${REMOTE}/32`, 'dev', 'lo');
    stopRpcbind = await startRpcbind();
    dir = mkdtempSync(path.join(tmpdir(), 'nsm-svc-'));
    u = await startNsm(dir, [SERVER, '127.0.0.1']);
  });
  after(async () => {
    await u?.close();
    await stopRpcbind?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
    for (const a of [SERVER, REMOTE]) ip('addr', 'del', `${a}/32`, 'dev', 'lo');
  });

  it('answers SM_NULL and SM_STAT with the server address\'s (odd) state', async () => {
    await call(SM_NULL, () => undefined, () => undefined);
    const res = await call(SM_STAT, (w) => encodeSmName(w, 'anyone'), decodeSmStatRes);
    assert.equal(res.res, STAT_SUCC);
    assert.equal(res.state % 2, 1);
    assert.equal(res.state, u.nsm.state(SERVER));
  });

  it('SM_MON from this machine records the host durably under the address it came in on', async () => {
    const res = await call(SM_MON, (w) => encodeMon(w, { monId: { monName: '127.0.0.5', myId }, priv }), decodeSmStatRes);
    assert.deepEqual(res, { res: STAT_SUCC, state: u.nsm.state(SERVER) });
    assert.equal(readdirSync(path.join(dir, SERVER, 'hosts')).length, 1);
    const [r] = u.nsm.records(SERVER);
    assert.equal(r!.address, '127.0.0.5');
    assert.deepEqual(r!.callbacks, [{ ...myId, priv: priv.toString('hex'), callbackAddress: '127.0.0.1' }]);
  });

  it('refuses SM_MON, SM_UNMON, SM_UNMON_ALL and SM_SIMU_CRASH from another machine', async () => {
    const state = u.nsm.state(SERVER);
    const res = await call(SM_MON, (w) => encodeMon(w, { monId: { monName: '127.0.0.6', myId }, priv }), decodeSmStatRes, REMOTE);
    assert.equal(res.res, STAT_FAIL);
    await call(SM_UNMON_ALL, (w) => encodeMyId(w, myId), decodeSmStat, REMOTE);
    await call(SM_SIMU_CRASH, () => undefined, () => undefined, REMOTE);
    assert.equal(u.nsm.records(SERVER).length, 1);
    assert.equal(u.nsm.state(SERVER), state);
  });

  it('calls the monitor back (my_id, priv) when the host reboots, found through rpcbind', async () => {
    const got: SmStatus[] = [];
    const lockd = new RpcServer();
    const proc16: Procedure<SmStatus, undefined> = { name: 'SM_NOTIFY callback', decodeArgs: decodeSmStatus, encodeResult: encodeVoid, handle: (a) => void got.push(a) };
    lockd.register({ prog: myId.myProg, vers: myId.myVers, procedures: new Map([[myId.myProc, proc16]]) });
    await lockd.addAddress('127.0.0.1');
    const reg = await registerWithRpcbind([{ prog: myId.myProg, vers: myId.myVers, protocol: 'udp', port: lockd.port }], { mode: 'auto' });
    try {
      assert.ok(reg.registered, reg.reason);
      await call(SM_NOTIFY, (w) => encodeStatChge(w, { monName: '127.0.0.5', state: 12 }), () => undefined, '127.0.0.5');
      await waitFor('the status callback', () => got[0]);
      assert.deepEqual(got, [{ monName: '127.0.0.5', state: 12, priv }]);
    } finally {
      await reg.unregister();
      await lockd.close();
    }
  });

  it('SM_UNMON of another my_id keeps the record; SM_UNMON of ours removes it', async () => {
    await call(SM_UNMON, (w) => encodeMonId(w, { monName: '127.0.0.5', myId: { ...myId, myName: 'someone-else' } }), decodeSmStat);
    assert.equal(u.nsm.records(SERVER).length, 1);
    const state = await call(SM_UNMON, (w) => encodeMonId(w, { monName: '127.0.0.5', myId }), decodeSmStat);
    assert.equal(state, u.nsm.state(SERVER));
    assert.deepEqual(u.nsm.records(SERVER), []);
    assert.deepEqual(readdirSync(path.join(dir, SERVER, 'hosts')), []);
  });

  it('SM_MON takes only a lock manager\'s callback (my_prog 100021, proc 16 or 24), as nfs-utils', async () => {
    for (const bad of [{ ...myId, myProg: 100024 }, { ...myId, myProc: 1 }, { ...myId, myProg: 200000 }]) {
      const res = await call(SM_MON, (w) => encodeMon(w, { monId: { monName: '127.0.0.7', myId: bad }, priv }), decodeSmStatRes);
      assert.equal(res.res, STAT_FAIL, JSON.stringify(bad));
    }
    assert.equal(u.nsm.records(SERVER).some((r) => r.address === '127.0.0.7'), false);
    const ok = await call(SM_MON, (w) => encodeMon(w, { monId: { monName: '127.0.0.7', myId: { ...myId, myProc: 24 } }, priv }), decodeSmStatRes);
    assert.equal(ok.res, STAT_SUCC);
    await call(SM_UNMON, (w) => encodeMonId(w, { monName: '127.0.0.7', myId: { ...myId, myProc: 24 } }), decodeSmStat);
    assert.deepEqual(u.nsm.records(SERVER), []);
  });

  it('SM_SIMU_CRASH bumps the state number, only when asked from a privileged port', async () => {
    const before = u.nsm.state(SERVER)!;
    await call(SM_SIMU_CRASH, () => undefined, () => undefined, '127.0.0.1', SERVER, 50_000);
    assert.equal(u.nsm.state(SERVER), before, 'an unprivileged port is refused');
    await call(SM_SIMU_CRASH, () => undefined, () => undefined, '127.0.0.1', SERVER, 777);
    assert.equal(u.nsm.state(SERVER), before + 2);
  });

  it('answers bad arguments with GARBAGE_ARGS and keeps serving', async () => {
    const tooLong = (w: XdrWriter): void => void w.uint(SM_MAXSTRLEN + 1).raw(Buffer.alloc(SM_MAXSTRLEN + 4));
    for (const proc of [SM_STAT, SM_MON, SM_UNMON, SM_UNMON_ALL, SM_NOTIFY]) {
      await assert.rejects(call(proc, tooLong, () => undefined), (e: unknown) => e instanceof RpcReplyError && e.stat === 'GARBAGE_ARGS');
    }
    await assert.rejects(call(SM_MON, (w) => void w.raw(Buffer.alloc(7)), () => undefined), (e: unknown) => e instanceof RpcReplyError && e.stat === 'GARBAGE_ARGS');
    await assert.rejects(call(SM_NULL, (w) => void w.uint(1), () => undefined), (e: unknown) => e instanceof RpcReplyError && e.stat === 'GARBAGE_ARGS');
    await assert.rejects(call(9, () => undefined, () => undefined), (e: unknown) => e instanceof RpcReplyError && e.stat === 'PROC_UNAVAIL');
    const res = await call(SM_STAT, (w) => encodeSmName(w, 'still here'), decodeSmStatRes);
    assert.equal(res.res, STAT_SUCC);
  });
});
