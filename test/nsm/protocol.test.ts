import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XdrDecodeError, XdrReader, XdrWriter } from '../../src/xdr';
import {
  decodeMon, decodeMonId, decodeMyId, decodeSmStatRes, decodeStatChge, decodeSmStatus,
  encodeMon, encodeMonId, encodeMyId, encodeSmStatRes, encodeStatChge, encodeSmStatus,
  SM_MAXSTRLEN, STAT_FAIL, STAT_SUCC,
} from '../../src/nsm';

const enc = <T>(v: T, f: (w: XdrWriter, v: T) => void): Buffer => {
  const w = new XdrWriter();
  f(w, v);
  return w.toBuffer();
};
const dec = <T>(b: Buffer, f: (r: XdrReader) => T): T => {
  const r = new XdrReader(b);
  const v = f(r);
  r.done();
  return v;
};

describe('nsm protocol codecs', () => {
  it('encodes SM_MON arguments byte for byte', () => {
    const priv = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const b = enc({ monId: { monName: 'cl', myId: { myName: 'srv', myProg: 100021, myVers: 4, myProc: 16 } }, priv }, encodeMon);
    assert.equal(b.toString('hex'),
      '00000002' + '636c0000' + // mon_name "cl"
      '00000003' + '73727600' + // my_name "srv"
      '000186b5' + '00000004' + '00000010' + // prog, vers, proc
      priv.toString('hex'));
    assert.deepEqual(dec(b, decodeMon), { monId: { monName: 'cl', myId: { myName: 'srv', myProg: 100021, myVers: 4, myProc: 16 } }, priv });
  });

  it('encodes stat_chge and sm_stat_res', () => {
    assert.equal(enc({ monName: 'a', state: 3 }, encodeStatChge).toString('hex'), '0000000161000000' + '00000003');
    assert.equal(enc({ res: STAT_FAIL, state: 7 }, encodeSmStatRes).toString('hex'), '00000001' + '00000007');
    assert.deepEqual(dec(Buffer.from('0000000000000005', 'hex'), decodeSmStatRes), { res: STAT_SUCC, state: 5 });
  });

  it('round-trips every type (property)', () => {
    const rec = <T>(m: { [K in keyof T]: fc.Arbitrary<T[K]> }) => fc.record(m, { noNullPrototype: true });
    const name = fc.string({ maxLength: 40 });
    const int = fc.integer({ min: -0x80000000, max: 0x7fffffff });
    const myId = rec({ myName: name, myProg: int, myVers: int, myProc: int });
    const priv = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a));
    fc.assert(fc.property(myId, (v) => assert.deepEqual(dec(enc(v, encodeMyId), decodeMyId), v)));
    fc.assert(fc.property(rec({ monName: name, myId }), (v) => assert.deepEqual(dec(enc(v, encodeMonId), decodeMonId), v)));
    fc.assert(fc.property(rec({ monName: name, state: int }), (v) => assert.deepEqual(dec(enc(v, encodeStatChge), decodeStatChge), v)));
    fc.assert(fc.property(rec({ monName: name, state: int, priv }), (v) => assert.deepEqual(dec(enc(v, encodeSmStatus), decodeSmStatus), v)));
  });

  it('rejects bad input with XdrDecodeError, never anything else', () => {
    const tooLong = new XdrWriter().uint(SM_MAXSTRLEN + 1).toBuffer();
    assert.throws(() => dec(tooLong, decodeStatChge), XdrDecodeError);
    assert.throws(() => dec(Buffer.from('0000000200000001', 'hex'), decodeSmStatRes), XdrDecodeError); // res 2
    assert.throws(() => dec(Buffer.alloc(3), decodeMon), XdrDecodeError);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), (a) => {
      for (const f of [decodeMon, decodeMonId, decodeMyId, decodeStatChge, decodeSmStatRes, decodeSmStatus] as Array<(r: XdrReader) => unknown>) {
        try {
          dec(Buffer.from(a), f);
        } catch (err) {
          assert.ok(err instanceof XdrDecodeError, String(err));
        }
      }
    }));
  });

  it('refuses to encode a priv that is not 16 bytes', () => {
    assert.throws(() => enc({ monName: 'a', state: 1, priv: Buffer.alloc(3) }, encodeSmStatus), RangeError);
  });
});
