import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XdrDecodeError, XdrWriter } from '../../src/xdr';
import {
  AUTH_NONE, AUTH_SYS, AUTH_STAT, decodeAuthSys, decodeCall, decodeReply, encodeAuthSys, encodeCall, encodeErrorReply,
  encodeSuccessReply, RpcDispatcher, NULL_AUTH, parseCredential, RpcHeaderError, credentialToOpaqueAuth, type ErrorReply,
  cachedCredential, newCredentialCache,
} from '../../src/rpc';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+|#[^\n]*/g, ''), 'hex');

describe('rpc message codec', () => {
  it('encodes a call header byte for byte (RFC 5531 section 9)', () => {
    const call = encodeCall({ xid: 0x01020304, prog: 100021, vers: 4, proc: 2, cred: NULL_AUTH, verf: NULL_AUTH }, Buffer.from('cafebabe', 'hex'));
    assert.deepEqual(call, hex(`
      01020304 # xid
      00000000 # msg_type CALL
      00000002 # rpcvers 2
      000186b5 # prog 100021
      00000004 # vers
      00000002 # proc
      00000000 00000000 # cred AUTH_NONE, empty body
      00000000 00000000 # verf AUTH_NONE, empty body
      cafebabe # args`));
    const d = decodeCall(call);
    assert.deepEqual({ ...d, cred: d.cred.flavor, verf: d.verf.flavor }, { xid: 0x01020304, prog: 100021, vers: 4, proc: 2, cred: 0, verf: 0, argsOffset: 40 });
  });

  it('encodes every reply kind byte for byte', () => {
    const v = '00000000 00000000'; // NULL verifier
    const cases: [ErrorReply, string][] = [
      [{ stat: 'PROG_UNAVAIL' }, `00000000 ${v} 00000001`],
      [{ stat: 'PROG_MISMATCH', low: 1, high: 4 }, `00000000 ${v} 00000002 00000001 00000004`],
      [{ stat: 'PROC_UNAVAIL' }, `00000000 ${v} 00000003`],
      [{ stat: 'GARBAGE_ARGS' }, `00000000 ${v} 00000004`],
      [{ stat: 'SYSTEM_ERR' }, `00000000 ${v} 00000005`],
      [{ stat: 'RPC_MISMATCH', low: 2, high: 2 }, '00000001 00000000 00000002 00000002'],
      [{ stat: 'AUTH_ERROR', authStat: AUTH_STAT.AUTH_TOOWEAK }, '00000001 00000001 00000005'],
    ];
    for (const [reply, body] of cases) {
      const buf = encodeErrorReply(7, reply);
      assert.deepEqual(buf, hex(`00000007 00000001 ${body}`), reply.stat);
      const { xid, verf: _v, ...back } = decodeReply(buf) as ErrorReply & { xid: number; verf?: unknown };
      assert.equal(xid, 7);
      assert.deepEqual(back, reply);
    }
    const ok = encodeSuccessReply(9, Buffer.from('00000001', 'hex'));
    assert.deepEqual(ok, hex(`00000009 00000001 00000000 ${v} 00000000 00000001`));
    assert.deepEqual(decodeReply(ok), { xid: 9, stat: 'SUCCESS', verf: { flavor: 0, body: Buffer.alloc(0) }, resultsOffset: 24 });
  });

  it('parses AUTH_SYS and enforces its limits', () => {
    const p = { stamp: 0x1234, machineName: 'client.example', uid: 1000, gid: 100, gids: [4, 24, 27] };
    const body = encodeAuthSys(p);
    assert.deepEqual(decodeAuthSys(body), p);
    assert.deepEqual(parseCredential({ flavor: AUTH_SYS, body }), { flavor: AUTH_SYS, ...p });
    assert.deepEqual(parseCredential(credentialToOpaqueAuth({ flavor: AUTH_SYS, ...p })), { flavor: AUTH_SYS, ...p });
    assert.deepEqual(parseCredential(NULL_AUTH), { flavor: AUTH_NONE });
    assert.throws(() => encodeAuthSys({ ...p, machineName: 'x'.repeat(256) }), RangeError);
    assert.throws(() => encodeAuthSys({ ...p, gids: new Array(17).fill(1) }), RangeError);
    const long = new XdrWriter().uint(1).string('x'.repeat(256)).uint(0).uint(0).uint(0).toBuffer();
    assert.throws(() => decodeAuthSys(long), /exceeds maximum 255/);
    const manyGids = new XdrWriter().uint(1).string('h').uint(0).uint(0).array(new Array(17).fill(0), (w, g) => void w.uint(g)).toBuffer();
    assert.throws(() => decodeAuthSys(manyGids), /exceeds maximum 16/);
    assert.throws(() => decodeAuthSys(Buffer.concat([body, Buffer.alloc(4)])), /trailing/);
  });

  it('tells a server how to answer a bad header', () => {
    const good = encodeCall({ xid: 5, prog: 1, vers: 1, proc: 0, cred: NULL_AUTH, verf: NULL_AUTH });
    const wrongVers = Buffer.from(good);
    wrongVers.writeUInt32BE(3, 8);
    assert.throws(() => decodeCall(wrongVers), (e: RpcHeaderError) => e.xid === 5 && e.reply?.stat === 'RPC_MISMATCH');
    const bigCred = new XdrWriter().uint(5).uint(0).uint(2).uint(1).uint(1).uint(0).uint(AUTH_SYS).uint(401).raw(Buffer.alloc(404)).toBuffer();
    assert.throws(() => decodeCall(bigCred), (e: RpcHeaderError) => e.reply?.stat === 'AUTH_ERROR' && e.reply.authStat === AUTH_STAT.AUTH_BADCRED);
    const cutVerf = good.subarray(0, 36);
    assert.throws(() => decodeCall(cutVerf), (e: RpcHeaderError) => e.reply?.stat === 'AUTH_ERROR' && e.reply.authStat === AUTH_STAT.AUTH_BADVERF);
    // Too short to answer, or not a call at all: drop (no reply).
    for (const b of [good.subarray(0, 7), good.subarray(0, 20), encodeErrorReply(5, { stat: 'SYSTEM_ERR' })]) {
      assert.throws(() => decodeCall(b), (e: RpcHeaderError) => e instanceof RpcHeaderError && e.reply === undefined);
    }
  });

  it('round-trips call headers (property)', () => {
    const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
    const auth = fc.tuple(u32, fc.uint8Array({ maxLength: 400 })).map(([flavor, a]) => ({ flavor, body: Buffer.from(a) }));
    fc.assert(
      fc.property(u32, u32, u32, u32, auth, auth, fc.uint8Array({ maxLength: 64 }), (xid, prog, vers, proc, cred, verf, args) => {
        const buf = encodeCall({ xid, prog, vers, proc, cred, verf }, args);
        const d = decodeCall(buf);
        assert.deepEqual({ xid: d.xid, prog: d.prog, vers: d.vers, proc: d.proc, cred: d.cred, verf: d.verf }, { xid, prog, vers, proc, cred, verf });
        assert.deepEqual(new Uint8Array(buf.subarray(d.argsOffset)), args);
      }),
    );
  });

  it('random garbage yields only typed decode errors (property)', () => {
    const valid = encodeCall({ xid: 1, prog: 100021, vers: 4, proc: 2, cred: credentialToOpaqueAuth({ flavor: AUTH_SYS, stamp: 1, machineName: 'm', uid: 0, gid: 0, gids: [1] }), verf: NULL_AUTH });
    const mutated = fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(valid.length)).map(([i, b, cut]) => {
      const m = Buffer.from(valid);
      m[i] = b;
      return m.subarray(0, cut);
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 120 }).map((a) => Buffer.from(a)), mutated), (buf) => {
        for (const f of [() => decodeCall(buf), () => decodeReply(buf), () => decodeAuthSys(buf), () => parseCredential({ flavor: AUTH_SYS, body: buf })]) {
          try {
            f();
          } catch (e) {
            if (!(e instanceof XdrDecodeError)) throw e;
          }
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('the dispatcher answers any bytes with a well-formed reply or nothing, never an exception (property)', async () => {
    // The dispatcher swallows what an observer throws, so errors are collected and checked after.
    const errors: unknown[] = [];
    const server = new RpcDispatcher({ onEvent: (e) => { if (e.kind === 'error' && !/handler/.test(e.where)) errors.push(e.error); } });
    server.register({ prog: 100021, vers: 4, procedures: new Map([[2, { name: 'LOCK', decodeArgs: (r) => r.array((x) => x.string(64), 8), encodeResult: (w, n: number) => void w.uint(n), handle: (a: string[]) => a.length }]]) });
    const meta = { transport: 'udp' as const, local: { address: '10.0.0.1', port: 4045 }, peer: { address: '10.0.0.2', port: 800 } };
    const valid = encodeCall({ xid: 1, prog: 100021, vers: 4, proc: 2, cred: NULL_AUTH, verf: NULL_AUTH }, new XdrWriter().array(['a', 'b'], (w, x) => void w.string(x)).toBuffer());
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 120 }).map((a) => Buffer.from(a)),
          fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(valid.length)).map(([i, b, cut]) => {
            const m = Buffer.from(valid);
            m[i] = b;
            return m.subarray(0, cut);
          }),
        ),
        async (buf) => {
          const reply = await server.handle(buf, meta);
          if (reply) assert.equal(decodeReply(reply).xid, buf.readUInt32BE(0));
        },
      ),
      { numRuns: 3000 },
    );
    assert.deepEqual(errors, []);
  });

  describe('a client\'s credential cache', () => {
    const sys = (machineName: string, uid: number) => credentialToOpaqueAuth({ flavor: AUTH_SYS, stamp: 7, machineName, uid, gid: 0, gids: [1, 2] });

    it('gives the same bytes the same parse, other bytes a parse of their own', () => {
      const cache = newCredentialCache();
      const a = sys('alpha', 10);
      const first = cachedCredential(cache, a);
      assert.deepEqual(first, parseCredential(a));
      assert.equal(cachedCredential(cache, { flavor: AUTH_SYS, body: Buffer.from(a.body) }), first); // equal bytes, another buffer
      const b = cachedCredential(cache, sys('alpha', 11)); // one field changed
      assert.notEqual(b, first);
      assert.equal((b as { uid: number }).uid, 11);
      assert.ok(Object.isFrozen(first) && Object.isFrozen((first as { gids: number[] }).gids)); // shared by a client's calls: nobody may change it
    });

    it('keeps its own copy of the bytes: a receive buffer reused for other bytes does not fool it', () => {
      const cache = newCredentialCache();
      const body = Buffer.from(sys('alpha', 10).body);
      cachedCredential(cache, { flavor: AUTH_SYS, body });
      body.set(sys('alpha', 99).body);
      assert.equal((cachedCredential(cache, { flavor: AUTH_SYS, body }) as { uid: number }).uid, 99);
    });

    it('does not answer a malformed body from the cache, and keeps the last good one', () => {
      const cache = newCredentialCache();
      const good = cachedCredential(cache, sys('alpha', 10));
      assert.throws(() => cachedCredential(cache, { flavor: AUTH_SYS, body: sys('alpha', 10).body.subarray(0, 12) }), XdrDecodeError);
      assert.equal(cachedCredential(cache, sys('alpha', 10)), good);
    });

    it('leaves other flavors to parseCredential', () => {
      const cache = newCredentialCache();
      assert.deepEqual(cachedCredential(cache, NULL_AUTH), { flavor: AUTH_NONE });
      assert.deepEqual(cachedCredential(cache, { flavor: 6, body: Buffer.from('x') }), { flavor: 6, body: Buffer.from('x') });
      assert.equal(cache.cred, undefined);
    });
  });
});
