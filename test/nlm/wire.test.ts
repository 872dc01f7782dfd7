// NLM over the wire, UDP and TCP, versions 1, 3 and 4: every procedure and every status a
// client can provoke, blocking locks with GRANTED callbacks, _MSG/_RES through a real rpcbind,
// trust (spoofed hosts, AUTH_NULL), grace per server address, malformed arguments.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { AUTH_NONE, RpcReplyError, registerWithRpcbind, type TransportKind } from '../../src/rpc';
import { XdrWriter } from '../../src/xdr';
import { NLM_PROG, NlmClient, NlmProc, encodeLockArgs, type HostMonitor } from '../../src/nlm';
import type { ClientHost } from '../../src/locks';
import { requireNamespaceRoot, startRpcbind } from '../support/netns';
import { addLoopbackAddresses, clientFor, fh, startServer, type TestServer } from './harness';

const S1 = '192.0.2.1';
const S2 = '192.0.2.2';
const C1 = '192.0.2.11';
const C2 = '192.0.2.12';
const TRANSPORTS: TransportKind[] = ['udp', 'tcp'];

describe('nlm over the wire', function () {
  let removeAddresses: () => void;
  let stopRpcbind: () => Promise<void>;
  before(async function () {
    requireNamespaceRoot(this);
    removeAddresses = addLoopbackAddresses([S1, S2, C1, C2]);
    stopRpcbind = await startRpcbind();
  });
  after(async () => {
    await stopRpcbind?.();
    removeAddresses?.();
  });

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, () => {
      let server: TestServer;
      const clients: NlmClient[] = [];
      const client = async (o: Partial<Parameters<typeof clientFor>[2]> & { vers: 1 | 3 | 4 }, address = S1): Promise<NlmClient> => {
        const c = await clientFor(server, address, { transport, source: C1, ...o });
        clients.push(c);
        return c;
      };
      beforeEach(async () => {
        server = await startServer([S1, S2], { options: { grantTimeoutMs: 1_500 } });
      });
      afterEach(async () => {
        for (const c of clients.splice(0)) await c.close();
        await server.close();
      });

      for (const vers of [1, 3, 4] as const) {
        it(`v${vers}: NULL, TEST, LOCK, denied with the exact holder, UNLOCK, CANCEL, GRANTED`, async () => {
          const a = await client({ vers });
          const b = await client({ vers, callerName: 'client-b' });
          const f = fh(`basic${vers}`);
          await a.null();
          assert.equal((await a.test({ fh: f, svid: 1 })).status, 'granted');
          assert.equal((await a.lock({ fh: f, svid: 1, offset: 10n, length: 5n, cookie: Buffer.from('c1') })).status, 'granted');
          const t = await b.test({ fh: f, svid: 7, offset: 0n, length: 100n });
          assert.equal(t.status, 'denied');
          assert.deepEqual({ ...t.holder, oh: t.holder!.oh.toString() }, { exclusive: true, svid: 1, oh: '', offset: 10n, length: 5n });
          assert.equal((await b.lock({ fh: f, svid: 7, offset: 12n, length: 1n })).status, 'denied');
          assert.equal((await b.test({ fh: f, svid: 7, offset: 15n, length: 1n })).status, 'granted');
          assert.equal((await b.cancel({ fh: f, svid: 7 })).status, 'granted'); // nothing queued: nothing to do (Linux)
          assert.equal((await a.unlock({ fh: f, svid: 1, offset: 10n, length: 5n })).status, 'granted');
          assert.equal((await b.lock({ fh: f, svid: 7, offset: 12n, length: 1n })).status, 'granted');
          assert.equal((await a.grantedCall({ fh: f, svid: 1 })).status, 'denied'); // we are no client
          assert.equal(server.table.stats().locks, 1);
        });
      }

      for (const vers of [3, 4] as const) {
        it(`v${vers}: SHARE / UNSHARE deny modes, NM_LOCK, FREE_ALL`, async () => {
          const a = await client({ vers });
          const b = await client({ vers, callerName: 'client-b' });
          const f = fh(`share${vers}`);
          assert.equal((await a.share({ fh: f, mode: 2, access: 3 })).status, 'granted'); // deny write, read-write access
          assert.equal((await b.share({ fh: f, mode: 0, access: 2 })).status, 'denied'); // wants write
          assert.equal((await b.share({ fh: f, mode: 0, access: 1 })).status, 'granted'); // read is fine
          assert.equal((await a.unshare({ fh: f, mode: 2, access: 3 })).status, 'granted');
          assert.equal((await b.share({ fh: f, mode: 0, access: 2, oh: Buffer.from('w') })).status, 'granted');
          assert.equal((await a.nmLock({ fh: f, svid: 3 })).status, 'granted');
          assert.equal((await a.lock({ fh: fh('other'), svid: 4 })).status, 'granted');
          await a.freeAll();
          assert.equal([...server.table.locks({ host: `client-a@${C1}` })].length, 0);
          assert.equal(server.table.stats().shares, 2); // b's two reservations stay
        });
      }

      for (const vers of [1, 3, 4] as const) {
        it(`v${vers}: TEST and TEST_MSG name the holder without its owner handle (oh of length 0, as Linux)`, async () => {
          const a = await client({ vers });
          const b = await client({ vers, callerName: 'client-b', callback: { rpcbind: true } });
          const f = fh(`oh${vers}`);
          const oh = Buffer.from('secret-owner-handle');
          assert.equal((await a.lock({ fh: f, svid: 4, oh, offset: 0n, length: 8n, exclusive: false })).status, 'granted');
          const t = await b.test({ fh: f, svid: 5 });
          assert.deepEqual([t.status, t.holder?.svid, t.holder?.exclusive, t.holder?.offset, t.holder?.length, t.holder?.oh.length], ['denied', 4, false, 0n, 8n, 0]);
          const r = await b.waitRes(await b.testMsg({ fh: f, svid: 5 }));
          assert.deepEqual([r.status, r.holder?.svid, r.holder?.oh.length], ['denied', 4, 0]);
        });
      }

      it('v4 statuses: blocked, denied_grace_period, deadlck, fbig, denied_nolocks, failed', async () => {
        const a = await client({ vers: 4 });
        const b = await client({ vers: 4, callerName: 'client-b' });
        const [f, g] = [fh('st1'), fh('st2')];
        assert.equal((await a.lock({ fh: f, svid: 1 })).status, 'granted');
        assert.equal((await b.lock({ fh: g, svid: 2 })).status, 'granted');
        assert.equal((await b.lock({ fh: f, svid: 2, block: true })).status, 'blocked');
        assert.equal((await a.lock({ fh: g, svid: 1, block: true })).status, 'deadlck');
        assert.equal((await a.lock({ fh: fh('big'), svid: 1, offset: (1n << 63n), length: 1n })).status, 'fbig');
        server.table.setDraining(S1, true);
        assert.equal((await a.lock({ fh: fh('drain'), svid: 1 })).status, 'denied_nolocks');
        server.table.setDraining(S1, false);
        server.table.grace.start({ kind: 'address', address: S1 }, 30);
        assert.equal((await a.lock({ fh: fh('gr'), svid: 1 })).status, 'denied_grace_period');
        assert.equal((await a.test({ fh: fh('gr'), svid: 1 })).status, 'denied_grace_period');
        assert.equal((await a.lock({ fh: fh('gr'), svid: 1, reclaim: true })).status, 'granted');
        // The other server address is not in grace: non-reclaims work, a late reclaim does not.
        const a2 = await client({ vers: 4 }, S2);
        assert.equal((await a2.lock({ fh: fh('gr2'), svid: 1 })).status, 'granted');
        assert.equal((await a2.lock({ fh: fh('gr3'), svid: 1, reclaim: true })).status, 'denied_grace_period');
      });

      it('v3 and v1 map statuses they cannot express as Linux does; 32-bit ranges past 2^32 run to EOF', async () => {
        for (const vers of [1, 3] as const) {
          const a = await client({ vers });
          const b = await client({ vers, callerName: 'client-b' });
          const [f, g] = [fh(`m${vers}a`), fh(`m${vers}b`)];
          assert.equal((await a.lock({ fh: f, svid: 1 })).status, 'granted');
          assert.equal((await b.lock({ fh: g, svid: 2 })).status, 'granted');
          assert.equal((await b.lock({ fh: f, svid: 2, block: true })).status, 'blocked');
          assert.equal((await a.lock({ fh: g, svid: 1, block: true })).status, 'denied'); // deadlck → denied
          const h = fh(`eof${vers}`);
          assert.equal((await a.lock({ fh: h, svid: 1, offset: 0xfffffff0n, length: 0x20n })).status, 'granted');
          const held = [...server.table.locks({ host: `client-a@${C1}` })].find((l) => l.fh.equals(h))!;
          assert.equal(held.length, 0n);
          const t = await b.test({ fh: h, svid: 2, offset: 0xfffffff8n, length: 1n });
          assert.deepEqual([t.status, t.holder?.offset, t.holder?.length], ['denied', 0xfffffff0n, 0n]);
        }
      });

      it('export policy: refused and insecure-port requests get failed (v4) / denied_nolocks (v3)', async () => {
        await server.close();
        server = await startServer([S1], { exportPolicy: (f) => ({ allowed: !f.toString().includes('secret'), secure: f.toString().includes('secure') }) });
        const a4 = await client({ vers: 4 });
        const a3 = await client({ vers: 3 });
        assert.equal((await a4.lock({ fh: fh('secret'), svid: 1 })).status, 'failed');
        assert.equal((await a3.lock({ fh: fh('secret'), svid: 1 })).status, 'denied_nolocks');
        assert.equal((await a4.lock({ fh: fh('secure'), svid: 1 })).status, 'failed');
        const priv = await client({ vers: 4, sourcePort: 700 + (transport === 'tcp' ? 1 : 0) });
        assert.equal((await priv.lock({ fh: fh('secure'), svid: 1 })).status, 'granted');
      });

      it('blocked LOCK → conflict released → GRANTED callback; the grant is held after the ack', async () => {
        const a = await client({ vers: 4 });
        const b = await client({ vers: 4, callerName: 'client-b', callback: { rpcbind: true } });
        const f = fh('block');
        await a.lock({ fh: f, svid: 1 });
        const cookie = Buffer.from('blocked-cookie');
        assert.equal((await b.lock({ fh: f, svid: 2, block: true, cookie })).status, 'blocked');
        await a.unlock({ fh: f, svid: 1 });
        const g = await b.waitGranted({ svid: 2 });
        assert.deepEqual([g.async, g.transport], [false, transport]); // Linux: the request's transport
        assert.ok(g.cookie.equals(cookie));
        assert.equal(g.lock.callerName, 'nlm-test-server');
        assert.equal(g.from.address, S1); // from the server address the LOCK came in on
        for (let i = 0; i < 50 && server.service.pendingGrants() > 0; i++) await sleep(20);
        assert.equal(server.service.pendingGrants(), 0);
        assert.equal((await a.test({ fh: f, svid: 1 })).status, 'denied');
      });

      it('a GRANTED never acknowledged releases the lock; CANCEL removes a queued block', async () => {
        const a = await client({ vers: 4 });
        const b = await client({ vers: 4, callerName: 'client-b', callback: { rpcbind: true, reply: 'none' } });
        const f = fh('noack');
        await a.lock({ fh: f, svid: 1 });
        assert.equal((await b.lock({ fh: f, svid: 2, block: true })).status, 'blocked');
        await a.unlock({ fh: f, svid: 1 });
        await b.waitGranted({ svid: 2 });
        for (let i = 0; i < 100 && server.service.pendingGrants() > 0; i++) await sleep(50);
        assert.equal(server.service.pendingGrants(), 0);
        assert.equal((await a.lock({ fh: f, svid: 1 })).status, 'granted'); // released
        assert.equal((await b.lock({ fh: f, svid: 2, block: true })).status, 'blocked');
        assert.equal((await b.cancel({ fh: f, svid: 2, block: true })).status, 'granted');
        assert.equal(server.table.stats().blocked, 0);
      });

      it('a GRANTED answered denied releases the lock at once', async () => {
        const a = await client({ vers: 4 });
        const b = await client({ vers: 4, callerName: 'client-b', callback: { rpcbind: true, reply: 'denied' } });
        const f = fh('refused');
        await a.lock({ fh: f, svid: 1 });
        assert.equal((await b.lock({ fh: f, svid: 2, block: true })).status, 'blocked');
        await a.unlock({ fh: f, svid: 1 });
        await b.waitGranted({ svid: 2 });
        for (let i = 0; i < 50 && server.service.pendingGrants() > 0; i++) await sleep(20);
        assert.equal(server.service.pendingGrants(), 0);
        assert.equal((await a.lock({ fh: f, svid: 1 })).status, 'granted');
      });

      it('forgetAddress forgets pending grants without releasing them', async () => {
        const a = await client({ vers: 4 });
        const b = await client({ vers: 4, callerName: 'client-b', callback: { rpcbind: true, reply: 'none' } });
        const f = fh('forget');
        await a.lock({ fh: f, svid: 1 });
        assert.equal((await b.lock({ fh: f, svid: 2, block: true })).status, 'blocked');
        await a.unlock({ fh: f, svid: 1 });
        await b.waitGranted({ svid: 2 });
        assert.equal(server.service.pendingGrants(), 1);
        server.service.forgetAddress(S1);
        assert.equal(server.service.pendingGrants(), 0);
        await sleep(1_700); // past grantTimeoutMs
        assert.equal((await a.lock({ fh: f, svid: 1 })).status, 'denied'); // b still holds it
      });

      it('async: LOCK_MSG → LOCK_RES blocked → GRANTED_MSG → GRANTED_RES; TEST/UNLOCK/CANCEL/GRANTED _MSG round trips', async () => {
        const a = await client({ vers: 4 });
        const b = await client({ vers: 4, callerName: 'client-b', callback: { rpcbind: true } });
        const f = fh('async');
        await a.lock({ fh: f, svid: 1, offset: 0n, length: 10n });
        const tc = await b.testMsg({ fh: f, svid: 2 });
        const tr = await b.waitRes(tc);
        assert.deepEqual([tr.proc, tr.status, tr.holder?.svid, tr.holder?.length, tr.from.address], [NlmProc.TEST_RES, 'denied', 1, 10n, S1]);
        const lc = await b.lockMsg({ fh: f, svid: 2, block: true });
        const lr = await b.waitRes(lc);
        assert.deepEqual([lr.proc, lr.status], [NlmProc.LOCK_RES, 'blocked']);
        await a.unlock({ fh: f, svid: 1, offset: 0n, length: 10n });
        const g = await b.waitGranted({ svid: 2 });
        assert.equal(g.async, true);
        assert.ok(g.cookie.equals(lc));
        for (let i = 0; i < 50 && server.service.pendingGrants() > 0; i++) await sleep(20);
        assert.equal(server.service.pendingGrants(), 0, 'GRANTED_RES completed the grant');
        const uc = await b.unlockMsg({ fh: f, svid: 2 });
        assert.deepEqual([(await b.waitRes(uc)).proc, (await a.lock({ fh: f, svid: 1 })).status], [NlmProc.UNLOCK_RES, 'granted']);
        const cc = await b.cancelMsg({ fh: f, svid: 2 });
        assert.deepEqual([(await b.waitRes(cc)).status], ['granted']);
        const gc = await b.grantedMsg({ fh: f, svid: 2 });
        const gr = await b.waitRes(gc);
        assert.deepEqual([gr.proc, gr.status], [NlmProc.GRANTED_RES, 'denied']);
        // Stray *_RES calls are accepted and ignored.
        await b.sendRes(NlmProc.LOCK_RES, { cookie: Buffer.from('x'), stat: 0 });
        await b.sendRes(NlmProc.GRANTED_RES, { cookie: Buffer.from('x'), stat: 0 });
      });

      it('callbackTransport: the *_RES and GRANTED go over the configured transport', async () => {
        await server.close();
        const other = transport === 'udp' ? 'tcp' : 'udp';
        server = await startServer([S1], { options: { callbackTransport: other } });
        const a = await client({ vers: 4 });
        const b = await client({ vers: 4, callerName: 'client-b', callback: { rpcbind: true } });
        const f = fh('cbt');
        await a.lock({ fh: f, svid: 1 });
        const lr = await b.waitRes(await b.lockMsg({ fh: f, svid: 2, block: true }));
        assert.deepEqual([lr.status, lr.transport], ['blocked', other]);
        await a.unlock({ fh: f, svid: 1 });
        const g = await b.waitGranted({ svid: 2 });
        assert.deepEqual([g.async, g.transport], [true, other]);
        for (let i = 0; i < 50 && server.service.pendingGrants() > 0; i++) await sleep(20);
        assert.equal(server.service.pendingGrants(), 0);
      });

      it('a GRANTED_MSG never acknowledged releases the lock', async () => {
        const a = await client({ vers: 3 });
        const b = await client({ vers: 3, callerName: 'client-b', callback: { rpcbind: true, reply: 'none' } });
        const f = fh('noack-msg');
        await a.lock({ fh: f, svid: 1 });
        const lc = await b.lockMsg({ fh: f, svid: 2, block: true });
        assert.equal((await b.waitRes(lc)).status, 'blocked');
        await a.unlock({ fh: f, svid: 1 });
        assert.equal((await b.waitGranted({ svid: 2 })).async, true);
        for (let i = 0; i < 100 && server.service.pendingGrants() > 0; i++) await sleep(50);
        assert.equal((await a.lock({ fh: f, svid: 1 })).status, 'granted');
      });

      it('a spoofed host (same caller_name, other source address) cannot unlock, cancel or FREE_ALL', async () => {
        const a = await client({ vers: 4 });
        const spoof = await client({ vers: 4, source: C2 });
        const other = await client({ vers: 4, callerName: 'client-b' });
        const f = fh('spoof');
        await a.lock({ fh: f, svid: 1 });
        await other.lock({ fh: fh('spoof2'), svid: 9 });
        assert.equal((await a.lock({ fh: fh('spoof2'), svid: 1, block: true })).status, 'blocked');
        await spoof.unlock({ fh: f, svid: 1 });
        assert.equal((await spoof.cancel({ fh: fh('spoof2'), svid: 1, block: true })).status, 'granted'); // its own (empty) queue
        await spoof.freeAll();
        assert.equal((await other.test({ fh: f, svid: 9 })).status, 'denied');
        assert.equal(server.table.stats().blocked, 1);
        assert.equal((await spoof.lock({ fh: f, svid: 1 })).status, 'denied'); // another host, another owner
      });

      it('AUTH_NULL is refused for LOCK (AUTH_TOOWEAK) but TEST works', async () => {
        const a = await client({ vers: 4, cred: { flavor: AUTH_NONE } });
        const tooWeak = (e: unknown): boolean => e instanceof RpcReplyError && e.reply.stat === 'AUTH_ERROR' && e.reply.authStat === 5;
        await assert.rejects(a.lock({ fh: fh('auth'), svid: 1 }), tooWeak);
        await assert.rejects(a.lockMsg({ fh: fh('auth'), svid: 1 }), tooWeak);
        await assert.rejects(a.unlock({ fh: fh('auth'), svid: 1 }), tooWeak);
        await assert.rejects(a.freeAll(), tooWeak);
        assert.equal((await a.test({ fh: fh('auth'), svid: 1 })).status, 'granted');
      });

      it('malformed arguments get GARBAGE_ARGS, and the server keeps serving', async () => {
        const a = await client({ vers: 4 });
        const good = new XdrWriter();
        encodeLockArgs(good, 4, { cookie: Buffer.from('c'), block: false, exclusive: true, lock: { callerName: 'x', fh: fh('g'), oh: Buffer.from('o'), svid: 1, offset: 0n, length: 0n }, reclaim: false, state: 1 });
        const bytes = good.toBuffer();
        const garbage = (e: unknown): boolean => e instanceof RpcReplyError && e.reply.stat === 'GARBAGE_ARGS';
        await assert.rejects(a.raw(NlmProc.LOCK, bytes.subarray(0, bytes.length - 4)), garbage); // truncated
        await assert.rejects(a.raw(NlmProc.LOCK, Buffer.concat([bytes, Buffer.alloc(4)])), garbage); // trailing
        const badBool = Buffer.from(bytes);
        badBool.writeUInt32BE(7, 8); // block = 7
        await assert.rejects(a.raw(NlmProc.LOCK, badBool), garbage);
        await assert.rejects(a.raw(NlmProc.TEST, new XdrWriter().uint(2000).toBuffer()), garbage); // cookie over 1024
        await assert.rejects(a.raw(NlmProc.FREE_ALL, Buffer.alloc(0)), garbage);
        await assert.rejects(a.raw(NlmProc.SHARE, new XdrWriter().opaque(Buffer.alloc(0)).string('n').opaque(fh('s')).opaque(Buffer.alloc(1)).int(9).int(0).bool(false).toBuffer()), garbage); // mode 9
        await assert.rejects(a.raw(NlmProc.GRANTED_RES, new XdrWriter().opaque(Buffer.alloc(0)).int(12).toBuffer()), garbage); // stat 12
        assert.equal((await a.lock({ fh: fh('after'), svid: 1 })).status, 'granted');
      });
    });
  }

  describe('IPv6', () => {
    it('locks over ::1 with UDP and TCP; the host key carries the IPv6 address', async () => {
      const server = await startServer(['::1']);
      try {
        for (const transport of TRANSPORTS) {
          const c = await NlmClient.create({ server: { address: '::1', port: server.port }, transport, vers: 4, callerName: 'six', source: '::1' });
          assert.equal((await c.lock({ fh: fh(`v6-${transport}`), svid: 1 })).status, 'granted');
          await c.close();
        }
        assert.deepEqual([...server.table.locks({ serverAddress: '::1' })].map((l) => l.owner.host), ['six@::1', 'six@::1']);
      } finally {
        await server.close();
      }
    });
  });

  describe('discovery', () => {
    it('a client without a port finds the server through rpcbind (GETPORT), over UDP and TCP', async () => {
      const server = await startServer([S1]);
      const reg = await registerWithRpcbind((['udp', 'tcp'] as const).map((protocol) => ({ prog: NLM_PROG, vers: 4, protocol, port: server.port })), { mode: 'auto' });
      try {
        assert.ok(reg.registered, reg.reason);
        for (const transport of TRANSPORTS) {
          const c = await NlmClient.create({ server: { address: S1 }, transport, vers: 4, callerName: 'finder', source: C1 });
          assert.equal(c.serverPort, server.port);
          assert.equal((await c.lock({ fh: fh(`find-${transport}`), svid: 1 })).status, 'granted');
          await c.close();
        }
      } finally {
        await reg.unregister();
        await server.close();
      }
    });
  });

  describe('host monitoring and SM_NOTIFY', () => {
    it('monitors once per host and address, not per lock cycle; NM_LOCK does not monitor; idle hosts are unmonitored', async () => {
      const calls: string[] = [];
      const monitor: HostMonitor = {
        monitor: async (h: ClientHost, addr: string) => {
          calls.push(`mon ${h.key} ${addr}`);
          return h.callerName !== 'unmonitorable';
        },
        unmonitor: (h: ClientHost, addr: string) => void calls.push(`unmon ${h.key} ${addr}`),
      };
      const server = await startServer([S1, S2], { monitor, options: { hostIdleMs: 1_000, hostGcIntervalMs: 3_600_000 } });
      const a = await NlmClient.create({ server: { address: S1, port: server.port }, transport: 'udp', vers: 4, callerName: 'client-a', source: C1 });
      const nm = await NlmClient.create({ server: { address: S1, port: server.port }, transport: 'tcp', vers: 4, callerName: 'client-nm', source: C1 });
      const bad = await NlmClient.create({ server: { address: S1, port: server.port }, transport: 'udp', vers: 4, callerName: 'unmonitorable', source: C1 });
      try {
        for (let i = 0; i < 20; i++) {
          assert.equal((await a.lock({ fh: fh('loop'), svid: 1 })).status, 'granted');
          await a.unlock({ fh: fh('loop'), svid: 1 });
        }
        assert.deepEqual(calls, [`mon client-a@${C1} ${S1}`]);
        assert.equal((await nm.nmLock({ fh: fh('nm'), svid: 1 })).status, 'granted');
        assert.equal((await bad.lock({ fh: fh('bad'), svid: 1 })).status, 'denied_nolocks');
        assert.equal(calls.length, 2);
        await a.lock({ fh: fh('held'), svid: 1 });
        await sleep(1_100);
        assert.equal(server.service.collectHosts(), 0); // still holds a lock
        await a.unlock({ fh: fh('held'), svid: 1 });
        await sleep(1_100);
        assert.equal(server.service.collectHosts(), 1);
        await sleep(10);
        assert.equal(calls.at(-1), `unmon client-a@${C1} ${S1}`);
      } finally {
        await a.close();
        await nm.close();
        await bad.close();
        await server.close();
      }
    });

    it('SM_NOTIFY (proc 16) is taken only from a privileged port on loopback', async () => {
      const seen: string[] = [];
      const server = await startServer(['127.0.0.1', S1], { onReboot: (n) => void seen.push(`${n.monName}:${n.state}`) });
      const priv = Buffer.alloc(16, 7);
      const local = await NlmClient.create({ server: { address: '127.0.0.1', port: server.port }, transport: 'udp', vers: 4, callerName: 'statd', source: '127.0.0.1', sourcePort: 799 });
      const remote = await NlmClient.create({ server: { address: S1, port: server.port }, transport: 'udp', vers: 4, callerName: 'statd', source: C1, sourcePort: 798 });
      try {
        await local.smNotify({ monName: 'client-a', state: 3, priv });
        await assert.rejects(remote.smNotify({ monName: 'client-a', state: 5, priv }), (e: unknown) => e instanceof RpcReplyError && e.reply.stat === 'SYSTEM_ERR');
        assert.deepEqual(seen, ['client-a:3']);
      } finally {
        await local.close();
        await remote.close();
        await server.close();
      }
    });
  });
});
