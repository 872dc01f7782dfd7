import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XdrDecodeError, XdrReader, XdrWriter } from '../../src/xdr';

const hex = (b: Buffer): string => b.toString('hex');

describe('xdr codec', () => {
  it('encodes each primitive as RFC 4506 lays it out', () => {
    const w = new XdrWriter(4)
      .int(-2)
      .uint(0xfffffffe)
      .hyper(-3n)
      .uhyper(0x0102030405060708n)
      .bool(true)
      .enum(7)
      .fixedOpaque(Buffer.from([1, 2, 3]))
      .opaque(Buffer.from([9]))
      .string('ab')
      .array([5, 6], (x, v) => void x.uint(v))
      .optional<number>(undefined, (x, v) => void x.uint(v))
      .optional(8, (x, v) => void x.uint(v));
    assert.equal(
      hex(w.toBuffer()),
      [
        'fffffffe', // int -2
        'fffffffe', // uint
        'fffffffffffffffd', // hyper -3
        '0102030405060708', // uhyper
        '00000001', // bool true
        '00000007', // enum
        '01020300', // fixed opaque[3] + 1 pad byte
        '00000001' + '09000000', // opaque<>: length 1, byte, 3 pad
        '00000002' + '61620000', // string "ab"
        '00000002' + '00000005' + '00000006', // array of 2
        '00000000', // optional absent
        '00000001' + '00000008', // optional present
      ].join(''),
    );
  });

  it('round-trips every primitive (property)', () => {
    const item = fc.oneof(
      fc.record({ t: fc.constant('int' as const), v: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }),
      fc.record({ t: fc.constant('uint' as const), v: fc.integer({ min: 0, max: 2 ** 32 - 1 }) }),
      fc.record({ t: fc.constant('hyper' as const), v: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }) }),
      fc.record({ t: fc.constant('uhyper' as const), v: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      fc.record({ t: fc.constant('bool' as const), v: fc.boolean() }),
      fc.record({ t: fc.constant('opaque' as const), v: fc.uint8Array({ maxLength: 40 }) }),
      fc.record({ t: fc.constant('fixed' as const), v: fc.uint8Array({ maxLength: 13 }) }),
      fc.record({ t: fc.constant('string' as const), v: fc.string({ maxLength: 30 }) }),
      fc.record({ t: fc.constant('array' as const), v: fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 8 }) }),
      fc.record({ t: fc.constant('optional' as const), v: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }) }),
    );
    fc.assert(
      fc.property(fc.array(item, { maxLength: 20 }), (items) => {
        const w = new XdrWriter(1);
        for (const it of items) {
          switch (it.t) {
            case 'int': w.int(it.v); break;
            case 'uint': w.uint(it.v); break;
            case 'hyper': w.hyper(it.v); break;
            case 'uhyper': w.uhyper(it.v); break;
            case 'bool': w.bool(it.v); break;
            case 'opaque': w.opaque(it.v); break;
            case 'fixed': w.fixedOpaque(it.v); break;
            case 'string': w.string(it.v); break;
            case 'array': w.array(it.v, (x, v) => void x.uint(v)); break;
            case 'optional': w.optional(it.v, (x, v) => void x.uint(v)); break;
          }
        }
        const buf = w.toBuffer();
        assert.equal(buf.length % 4, 0);
        const r = new XdrReader(buf);
        for (const it of items) {
          switch (it.t) {
            case 'int': assert.equal(r.int(), it.v); break;
            case 'uint': assert.equal(r.uint(), it.v); break;
            case 'hyper': assert.equal(r.hyper(), it.v); break;
            case 'uhyper': assert.equal(r.uhyper(), it.v); break;
            case 'bool': assert.equal(r.bool(), it.v); break;
            case 'opaque': assert.deepEqual(new Uint8Array(r.opaque()), it.v); break;
            case 'fixed': assert.deepEqual(new Uint8Array(r.fixedOpaque(it.v.length)), it.v); break;
            case 'string': assert.equal(r.string(), it.v); break;
            case 'array': assert.deepEqual(r.array((x) => x.uint()), it.v); break;
            case 'optional': assert.equal(r.optional((x) => x.uint()), it.v); break;
          }
        }
        r.done();
      }),
    );
  });

  it('refuses hostile lengths before allocating or reading past the record', () => {
    const huge = Buffer.from('ffffffff', 'hex');
    assert.throws(() => new XdrReader(huge).opaque(), XdrDecodeError);
    assert.throws(() => new XdrReader(huge).string(), XdrDecodeError);
    assert.throws(() => new XdrReader(huge).array((r) => r.uint()), /exceeds record/);
    assert.throws(() => new XdrReader(Buffer.from('0000000500000001', 'hex')).opaque(4), /exceeds maximum 4/);
    assert.throws(() => new XdrReader(Buffer.from('00000011', 'hex')).array((r) => r.uint(), 16), /exceeds maximum 16/);
    // 3 bytes of data but no padding: truncated.
    assert.throws(() => new XdrReader(Buffer.from('00000003616263', 'hex')).string(), /truncated/);
    assert.throws(() => new XdrReader(Buffer.from('00000002', 'hex')).bool(), /bool out of range/);
    assert.throws(() => new XdrReader(Buffer.from('00000009', 'hex')).enumOf(new Set([0, 1])), /illegal value 9/);
    assert.throws(() => new XdrReader(Buffer.alloc(8), 0, 4).hyper(), XdrDecodeError);
    assert.throws(() => new XdrReader(Buffer.alloc(8)).done(), /8 trailing bytes/);
  });

  it('a reader window never reads outside its [offset, end)', () => {
    const buf = Buffer.from('0000000100000002000000030000000400000005', 'hex');
    const r = new XdrReader(buf, 4, 12);
    assert.equal(r.uint(), 2);
    assert.equal(r.uint(), 3);
    assert.throws(() => r.uint(), XdrDecodeError);
    assert.throws(() => new XdrReader(buf, 0, 40), RangeError);
    assert.throws(() => new XdrReader(buf, 24), RangeError);
  });

  it('random garbage yields only XdrDecodeError from every reader (property)', () => {
    const readers: ((r: XdrReader) => unknown)[] = [
      (r) => r.int(), (r) => r.uint(), (r) => r.hyper(), (r) => r.uhyper(), (r) => r.bool(),
      (r) => r.enumOf(new Set([0, 1, 2])), (r) => r.opaque(64), (r) => r.opaque(), (r) => r.string(16),
      (r) => r.array((x) => x.string(8), 10), (r) => r.array((x) => x.hyper(), undefined, 8), (r) => r.optional((x) => x.opaque()),
      (r) => r.fixedOpaque(5), (r) => r.done(),
    ];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(readers.length - 1), { minLength: 1, maxLength: 12 }), (bytes, which) => {
        const r = new XdrReader(Buffer.from(bytes));
        try {
          for (const i of which) readers[i]!(r);
        } catch (e) {
          if (!(e instanceof XdrDecodeError)) throw e;
        }
        assert.ok(r.offset <= bytes.length);
      }),
      { numRuns: 2000 },
    );
  });

  it('the writer grows from any size and its view matches its copy', () => {
    const w = new XdrWriter(1);
    for (let i = 0; i < 1000; i++) w.uint(i);
    assert.equal(w.length, 4000);
    assert.ok(w.view().equals(w.toBuffer()));
    assert.equal(new XdrReader(w.toBuffer(), 3996).uint(), 999);
  });

  it('the writer refuses values over their declared maximum', () => {
    assert.throws(() => new XdrWriter().opaque(Buffer.alloc(5), 4), RangeError);
    assert.throws(() => new XdrWriter().string('abcdef', 5), RangeError);
    assert.throws(() => new XdrWriter().array([1, 2, 3], (w, v) => void w.uint(v), 2), RangeError);
  });
});
