// NLM codecs: round trips for every argument and result type in every version, hostile input
// as XdrDecodeError (never anything else), the v1/v3 range rules and the status mapping.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XdrDecodeError, XdrReader, XdrWriter } from '../../src/xdr';
import * as N from '../../src/nlm';

const vers = fc.constantFrom(1, 3, 4);
const netobj = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));
const lockOf = (v: number): fc.Arbitrary<N.NlmLock> => {
  const range = fc.bigInt({ min: 0n, max: v === 4 ? (1n << 64n) - 1n : 0xffffffffn });
  return fc.record({ callerName: fc.string({ maxLength: 40 }), fh: netobj, oh: netobj, svid: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), offset: range, length: range });
};

function roundTrip<T>(encode: (w: XdrWriter) => void, decode: (r: XdrReader) => T): T {
  const w = new XdrWriter(8);
  encode(w);
  const r = new XdrReader(w.toBuffer());
  const out = decode(r);
  r.done();
  return out;
}

const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x?.type === 'Buffer' ? Buffer.from(x.data).toString('hex') : x)));

describe('nlm codecs', () => {
  it('round-trip lock, test, cancel and unlock arguments in every version', () => {
    fc.assert(fc.property(vers.chain((v) => fc.tuple(fc.constant(v), lockOf(v), netobj, fc.boolean(), fc.boolean(), fc.boolean(), fc.integer())), ([v, lock, cookie, block, exclusive, reclaim, state]) => {
      const la = { cookie, block, exclusive, lock, reclaim, state };
      assert.deepEqual(plain(roundTrip((w) => N.encodeLockArgs(w, v, la), (r) => N.decodeLockArgs(r, v))), plain(la));
      const ta = { cookie, exclusive, lock };
      assert.deepEqual(plain(roundTrip((w) => N.encodeTestArgs(w, v, ta), (r) => N.decodeTestArgs(r, v))), plain(ta));
      const ca = { cookie, block, exclusive, lock };
      assert.deepEqual(plain(roundTrip((w) => N.encodeCancelArgs(w, v, ca), (r) => N.decodeCancelArgs(r, v))), plain(ca));
      const ua = { cookie, lock };
      assert.deepEqual(plain(roundTrip((w) => N.encodeUnlockArgs(w, v, ua), (r) => N.decodeUnlockArgs(r, v))), plain(ua));
    }));
  });

  it('round-trip results: testres with the holder exactly on denied, res, shareres', () => {
    fc.assert(fc.property(vers.chain((v) => fc.tuple(fc.constant(v), lockOf(v), netobj, fc.integer({ min: 0, max: v === 4 ? 9 : 4 }), fc.boolean())), ([v, l, cookie, stat, exclusive]) => {
      const holder = { exclusive, svid: l.svid, oh: l.oh, offset: l.offset, length: l.length };
      const tr: N.NlmTestRes = stat === 1 ? { cookie, stat, holder } : { cookie, stat };
      assert.deepEqual(plain(roundTrip((w) => N.encodeTestRes(w, v, tr), (r) => N.decodeTestRes(r, v))), plain(tr));
      assert.deepEqual(plain(roundTrip((w) => N.encodeRes(w, { cookie, stat }), (r) => N.decodeRes(r, v))), plain({ cookie, stat }));
      const sr = { cookie, stat, sequence: l.svid };
      assert.deepEqual(plain(roundTrip((w) => N.encodeShareRes(w, sr), (r) => N.decodeShareRes(r, v))), plain(sr));
    }));
  });

  it('round-trip share arguments, FREE_ALL notify and the statd reboot callback', () => {
    const sa = { cookie: Buffer.from('c'), reclaim: true, share: { callerName: 'h', fh: Buffer.from('fh'), oh: Buffer.from('oh'), mode: 3, access: 1 } };
    assert.deepEqual(plain(roundTrip((w) => N.encodeShareArgs(w, sa), N.decodeShareArgs)), plain(sa));
    assert.deepEqual(roundTrip((w) => N.encodeNotify(w, { name: 'client', state: 7 }), N.decodeNotify), { name: 'client', state: 7 });
    const rb = { monName: 'client', state: 9, priv: Buffer.alloc(16, 1) };
    assert.deepEqual(plain(roundTrip((w) => N.encodeReboot(w, rb), N.decodeReboot)), plain(rb));
    assert.throws(() => N.encodeReboot(new XdrWriter(), { ...rb, priv: Buffer.alloc(3) }), RangeError);
  });

  it('rejects hostile input with XdrDecodeError only', () => {
    type Decoder = (r: XdrReader) => unknown;
    const perVersion = (v: number): Decoder[] => [
      (r) => N.decodeLockArgs(r, v), (r) => N.decodeTestArgs(r, v), (r) => N.decodeCancelArgs(r, v),
      (r) => N.decodeUnlockArgs(r, v), (r) => N.decodeTestRes(r, v), (r) => N.decodeRes(r, v), (r) => N.decodeShareRes(r, v),
    ];
    const decoders: Decoder[] = [...perVersion(1), ...perVersion(3), ...perVersion(4), N.decodeShareArgs, N.decodeNotify, N.decodeReboot];
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(decoders.length - 1), (bytes, i) => {
      try {
        decoders[i]!(new XdrReader(Buffer.from(bytes)));
      } catch (e) {
        assert.ok(e instanceof XdrDecodeError, String(e));
      }
    }));
    // Limits: caller_name ≤ 1024, netobj ≤ 1024, v1/v3 status ≤ 4.
    assert.throws(() => N.decodeLock(new XdrReader(new XdrWriter().uint(1025).toBuffer()), 4), XdrDecodeError);
    assert.throws(() => N.decodeRes(new XdrReader(new XdrWriter().uint(1025).toBuffer()), 4), XdrDecodeError);
    assert.throws(() => N.decodeRes(new XdrReader(new XdrWriter().uint(0).int(5).toBuffer()), 3), XdrDecodeError);
    assert.deepEqual(N.decodeRes(new XdrReader(new XdrWriter().uint(0).int(5).toBuffer()), 4).stat, 5);
  });

  it('maps v1/v3 ranges onto the table: length 0 and ends past 2^32 run to end of file', () => {
    assert.deepEqual(N.tableRange(3, 5n, 0n), { offset: 5n, length: 0n });
    assert.deepEqual(N.tableRange(3, 0n, 0xffffffffn), { offset: 0n, length: 0xffffffffn });
    assert.deepEqual(N.tableRange(3, 1n, 0xffffffffn), { offset: 1n, length: 0xffffffffn }); // ends exactly at 2^32
    assert.deepEqual(N.tableRange(1, 2n, 0xffffffffn), { offset: 2n, length: 0n });
    assert.deepEqual(N.tableRange(4, 2n, 0xffffffffn), { offset: 2n, length: 0xffffffffn });
    assert.deepEqual(N.wireRange(3, 1n << 40n, 10n), { offset: 0xffffffffn, length: 0n });
    assert.deepEqual(N.wireRange(3, 10n, 1n << 40n), { offset: 10n, length: 0n });
    assert.deepEqual(N.wireRange(1, 10n, 5n), { offset: 10n, length: 5n });
    assert.deepEqual(N.wireRange(4, 1n << 40n, 10n), { offset: 1n << 40n, length: 10n });
  });

  it('maps statuses v1/v3 cannot express as Linux cast_to_nlm does', () => {
    const all = Object.keys(N.NlmStat) as (keyof typeof N.NlmStat)[];
    assert.deepEqual(all.map((s) => N.statusCode(s, 4)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(all.map((s) => N.statusCode(s, 3)), [0, 1, 2, 3, 4, 1, 2, 2, 2, 2]);
    assert.deepEqual(all.map((s) => N.statusCode(s, 1)), [0, 1, 2, 3, 4, 1, 2, 2, 2, 2]);
    assert.equal(N.statName(8), 'fbig');
    assert.equal(N.statName(10), undefined);
  });
});
