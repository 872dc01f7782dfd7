// The NLM service behind the RPC dispatcher (no sockets): whatever a peer sends to any NLM
// procedure of any version, well-formed or not, the answer is a protocol reply (SUCCESS,
// GARBAGE_ARGS, AUTH_ERROR, PROC_UNAVAIL) and never SYSTEM_ERR, and the table's indexes stay sound.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LockTable } from '../../src/locks';
import { AUTH_SYS, RpcDispatcher, credentialToOpaqueAuth, decodeReply, encodeCall, NULL_AUTH } from '../../src/rpc';
import { XdrWriter } from '../../src/xdr';
import * as N from '../../src/nlm';
import { checkIndexes } from '../../src/locks/testing';

const SERVER = '192.0.2.1';
const PROCS = [...Object.values(N.NlmProc), 17, 24];

describe('nlm service dispatch', () => {
  let table: LockTable;
  let service: N.NlmService;
  let server: RpcDispatcher;
  beforeEach(() => {
    table = new LockTable({ onBlockGranted: (g) => service.onBlockGranted(g) });
    // Callbacks go nowhere: a caller that always fails, so grants are retried and given up quickly.
    service = createQuietService(table);
    server = new RpcDispatcher();
    for (const p of service.programs) server.register(p);
  });
  afterEach(() => service.close());

  function createQuietService(t: LockTable): N.NlmService {
    return N.createNlmService({
      table: t,
      rpc: { getPort: async () => 0, call: async () => { throw new Error('unreachable'); } },
      options: { grantTimeoutMs: 50, grantRetryInitialMs: 10, grantRetryMaxMs: 10 },
    });
  }

  const cred = credentialToOpaqueAuth({ flavor: AUTH_SYS, stamp: 0, machineName: 'fuzz', uid: 0, gid: 0, gids: [] });
  const call = async (vers: number, proc: number, args: Buffer, peer: string): Promise<Buffer | undefined> =>
    server.handle(encodeCall({ xid: 1, prog: N.NLM_PROG, vers, proc, cred, verf: NULL_AUTH }, args), {
      transport: 'tcp', local: { address: SERVER, port: 4045 }, peer: { address: peer, port: 700 },
    });
  const stat = (reply: Buffer | undefined): string => (reply ? decodeReply(reply).stat : 'none');

  it('random bytes to every procedure of every version: never SYSTEM_ERR', async () => {
    await fc.assert(fc.asyncProperty(fc.constantFrom(1, 3, 4), fc.constantFrom(...PROCS), fc.uint8Array({ maxLength: 120 }), async (vers, proc, bytes) => {
      const s = stat(await call(vers, proc, Buffer.from(bytes), '192.0.2.9'));
      assert.ok(['SUCCESS', 'GARBAGE_ARGS', 'PROC_UNAVAIL', 'AUTH_ERROR'].includes(s), `v${vers} proc ${proc}: ${s}`);
      if (vers === 1 && proc >= 20) assert.equal(s, 'PROC_UNAVAIL');
    }), { numRuns: 400 });
  });

  it('well-formed random lock traffic from several hosts: only protocol answers, sound indexes', async () => {
    const small = fc.bigInt({ min: 0n, max: 40n });
    const op = fc.record({
      vers: fc.constantFrom(1, 3, 4),
      proc: fc.constantFrom(N.NlmProc.TEST, N.NlmProc.LOCK, N.NlmProc.CANCEL, N.NlmProc.UNLOCK, N.NlmProc.NM_LOCK, N.NlmProc.LOCK_MSG, N.NlmProc.FREE_ALL, N.NlmProc.SHARE, N.NlmProc.UNSHARE, N.NlmProc.GRANTED_RES),
      peer: fc.constantFrom('192.0.2.10', '192.0.2.11'),
      name: fc.constantFrom('a', 'b'),
      svid: fc.integer({ min: 1, max: 3 }),
      file: fc.constantFrom('f1', 'f2'),
      offset: small, length: small, exclusive: fc.boolean(), block: fc.boolean(), reclaim: fc.boolean(),
      mode: fc.integer({ min: 0, max: 3 }), access: fc.integer({ min: 0, max: 3 }),
    });
    await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
      for (const o of ops) {
        const w = new XdrWriter();
        const v = o.vers === 1 && o.proc >= 20 ? 3 : o.vers; // v1 has no SHARE..FREE_ALL
        const lock: N.NlmLock = { callerName: o.name, fh: Buffer.from(o.file), oh: Buffer.from(`oh${o.svid}`), svid: o.svid, offset: o.offset, length: o.length };
        const cookie = Buffer.from([o.svid]);
        switch (o.proc) {
          case N.NlmProc.TEST: N.encodeTestArgs(w, v, { cookie, exclusive: o.exclusive, lock }); break;
          case N.NlmProc.CANCEL: N.encodeCancelArgs(w, v, { cookie, block: o.block, exclusive: o.exclusive, lock }); break;
          case N.NlmProc.UNLOCK: N.encodeUnlockArgs(w, v, { cookie, lock }); break;
          case N.NlmProc.FREE_ALL: N.encodeNotify(w, { name: o.name, state: 1 }); break;
          case N.NlmProc.SHARE: case N.NlmProc.UNSHARE: N.encodeShareArgs(w, { cookie, reclaim: o.reclaim, share: { callerName: o.name, fh: lock.fh, oh: lock.oh, mode: o.mode, access: o.access } }); break;
          case N.NlmProc.GRANTED_RES: N.encodeRes(w, { cookie, stat: 0 }); break;
          default: N.encodeLockArgs(w, v, { cookie, block: o.block, exclusive: o.exclusive, lock, reclaim: o.reclaim, state: 1 });
        }
        assert.equal(stat(await call(v, o.proc, w.toBuffer(), o.peer)), 'SUCCESS');
      }
      assert.deepEqual(checkIndexes(table), []);
    }), { numRuns: 60 });
  });

  it('retries an unanswered GRANTED_MSG with backoff, not in a loop, and releases it at the deadline', async () => {
    const sent: number[] = [];
    const quiet = N.createNlmService({
      table,
      rpc: { getPort: async () => 4045, call: async (q) => { if (q.proc === N.NlmProc.GRANTED_MSG) sent.push(Date.now()); return Buffer.alloc(0); } },
      options: { grantTimeoutMs: 1_000, grantRetryInitialMs: 100, grantRetryMaxMs: 400 },
    });
    service = quiet;
    server = new RpcDispatcher();
    for (const p of quiet.programs) server.register(p);
    const lockArgs = (svid: number, block: boolean): Buffer => {
      const w = new XdrWriter();
      N.encodeLockArgs(w, 4, { cookie: Buffer.from([svid]), block, exclusive: true, reclaim: false, state: 0, lock: { callerName: `c${svid}`, fh: Buffer.from('f'), oh: Buffer.from('o'), svid, offset: 0n, length: 1n } });
      return w.toBuffer();
    };
    assert.equal(stat(await call(4, N.NlmProc.LOCK, lockArgs(1, false), '192.0.2.11')), 'SUCCESS');
    await call(4, N.NlmProc.LOCK_MSG, lockArgs(2, true), '192.0.2.12'); // queued behind svid 1
    await call(4, N.NlmProc.UNLOCK, (() => { const w = new XdrWriter(); N.encodeUnlockArgs(w, 4, { cookie: Buffer.from([1]), lock: { callerName: 'c1', fh: Buffer.from('f'), oh: Buffer.from('o'), svid: 1, offset: 0n, length: 1n } }); return w.toBuffer(); })(), '192.0.2.11');
    await new Promise((r) => setTimeout(r, 1_300));
    // 0, 100, 300, 700 ms: a handful of sends in a second, then the grant is released.
    assert.ok(sent.length >= 3 && sent.length <= 6, `${sent.length} GRANTED_MSG sent`);
    assert.equal([...table.locks()].length, 0, 'never acknowledged: released');
  });
});

