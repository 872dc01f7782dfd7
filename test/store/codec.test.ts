// The journal codec against bytes written out by hand, field by field (as mqtt-packet's tests
// do), and against what a disk leaves after a crash: torn frames, flipped bits, absurd lengths.
import assert from 'node:assert/strict';
import { crc32c, decodeHeader, decodeRecords, encodeHeader, encodeRecords, JournalFormatError, MAX_PAYLOAD_BYTES, recordBytes } from '../../src/store/codec';

const bytes = (...parts: number[][]): Buffer => Buffer.from(parts.flat());

const HEADER_GEN_7 = bytes(
  [0x4c, 0x44, 0x4a, 0x4c], // magic "LDJL"
  [0x00, 0x01], // version 1
  [0x00, 0x28], // header length 40
  [0x00, 0x00, 0x00, 0x07], // generation 7
  [0xca, 0xfe, 0x00, 0x01], // file id (random when written)
  [0x00, 0x00, 0x00, 0x00], // compacted from generation 0: a new journal
  [0, 0, 0, 0, 0, 0, 0, 0], // from offset (none)
  [0, 0, 0, 0, 0, 0, 0, 0x28], // compacted end: right after the header (nothing compacted)
  [0xc9, 0x31, 0xa4, 0xe9], // crc32c of the 36 bytes above
);

const HEADER_COMPACTED = bytes(
  [0x4c, 0x44, 0x4a, 0x4c], // magic "LDJL"
  [0x00, 0x01], // version 1
  [0x00, 0x28], // header length 40
  [0x00, 0x00, 0x00, 0x08], // generation 8
  [0x12, 0x34, 0x56, 0x78], // file id
  [0x00, 0x00, 0x00, 0x07], // compacted from generation 7 ...
  [0, 0, 0, 0, 0, 0, 0x12, 0x34], // ... as it was up to offset 0x1234
  [0, 0, 0, 0, 0, 0, 0x01, 0x00], // its live entries are the records up to 0x100
  [0x1a, 0x0d, 0x8d, 0x08], // crc32c of the 36 bytes above
);

const PUT_A = bytes(
  [0x00, 0x00, 0x00, 0x06], // payload length 6
  [0x07, 0xac, 0x4b, 0x61], // crc32c of the payload
  [0x01], // type: put
  [0x00, 0x01], // key length 1
  [0x61], // key "a"
  [0xca, 0xfe], // value
);

const DELETE_A = bytes(
  [0x00, 0x00, 0x00, 0x04], // payload length 4
  [0x77, 0x0f, 0xe0, 0x50], // crc32c of the payload
  [0x02], // type: delete
  [0x00, 0x01], // key length 1
  [0x61], // key "a"
);

const PUT_E_ACUTE_EMPTY = bytes(
  [0x00, 0x00, 0x00, 0x05], // payload length 5
  [0xd8, 0xc6, 0xb1, 0x9a], // crc32c of the payload
  [0x01], // type: put
  [0x00, 0x02], // key length 2 (bytes, not characters)
  [0xc3, 0xa9], // key "é" in UTF-8
  // value: empty (a put of zero bytes is not a delete)
);

describe('store: journal codec', () => {
  it('checksums with CRC-32C (its check value)', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(Buffer.alloc(0)), 0);
    // RFC 3720 (iSCSI), appendix B.4: 32 bytes of zeros, of ones, ascending.
    assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
    assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
    assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e);
  });

  it('checksums every length and alignment as the bytewise definition does', () => {
    const bytewise = (b: Uint8Array): number => {
      let c = -1;
      for (const x of b) {
        c ^= x;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      }
      return (c ^ -1) >>> 0;
    };
    const data = Buffer.from(Array.from({ length: 80 }, (_, i) => (i * 151 + 7) & 0xff));
    for (let from = 0; from < 9; from++) {
      for (let to = from; to <= data.length; to++) {
        const want = bytewise(data.subarray(from, to));
        assert.equal(crc32c(data.subarray(from, to)), want, `bytes ${from}..${to}`);
        assert.equal(crc32c(data, from, to), want, `range ${from}..${to}`);
      }
    }
  });

  it('encodes and decodes the header', () => {
    assert.deepEqual(encodeHeader({ generation: 7, fileId: 0xcafe0001, compactedEnd: 40 }), HEADER_GEN_7);
    assert.deepEqual(decodeHeader(HEADER_GEN_7), { generation: 7, fileId: 0xcafe0001, compactedEnd: 40 });
    const compacted = { generation: 8, fileId: 0x12345678, from: { generation: 7, offset: 0x1234 }, compactedEnd: 0x100 };
    assert.deepEqual(encodeHeader(compacted), HEADER_COMPACTED);
    assert.deepEqual(decodeHeader(HEADER_COMPACTED), compacted);
    const far = { generation: 0xffffffff, fileId: 0xffffffff, from: { generation: 1, offset: 2 ** 40 }, compactedEnd: 2 ** 33 };
    assert.deepEqual(decodeHeader(encodeHeader(far)), far);
    assert.throws(() => encodeHeader({ generation: 0, fileId: 1, compactedEnd: 40 }), RangeError);
    assert.throws(() => encodeHeader({ generation: 2 ** 32, fileId: 1, compactedEnd: 40 }), RangeError);
    assert.throws(() => encodeHeader({ generation: 1, fileId: -1, compactedEnd: 40 }), RangeError);
    assert.throws(() => encodeHeader({ generation: 1, fileId: 1, compactedEnd: 39 }), RangeError);
  });

  it('encodes a put, a delete and a UTF-8 key with an empty value', () => {
    assert.deepEqual(encodeRecords([{ key: 'a', value: Buffer.from([0xca, 0xfe]) }]), PUT_A);
    assert.deepEqual(encodeRecords([{ key: 'a', value: null }]), DELETE_A);
    assert.deepEqual(encodeRecords([{ key: 'é', value: Buffer.alloc(0) }]), PUT_E_ACUTE_EMPTY);
    assert.deepEqual(
      encodeRecords([{ key: 'a', value: Buffer.from([0xca, 0xfe]) }, { key: 'a', value: null }, { key: 'é', value: Buffer.alloc(0) }]),
      Buffer.concat([PUT_A, DELETE_A, PUT_E_ACUTE_EMPTY]),
    );
    assert.equal(recordBytes('a', Buffer.from([0xca, 0xfe])), PUT_A.length);
    assert.equal(recordBytes('a', null), DELETE_A.length);
    assert.equal(recordBytes('é', Buffer.alloc(0)), PUT_E_ACUTE_EMPTY.length);
  });

  it('decodes records back, in order, to the end', () => {
    const d = decodeRecords(Buffer.concat([PUT_A, DELETE_A, PUT_E_ACUTE_EMPTY]));
    assert.deepEqual(d, {
      records: [{ key: 'a', value: Buffer.from([0xca, 0xfe]) }, { key: 'a', value: null }, { key: 'é', value: Buffer.alloc(0) }],
      end: PUT_A.length + DELETE_A.length + PUT_E_ACUTE_EMPTY.length,
    });
    assert.deepEqual(decodeRecords(Buffer.alloc(0)), { records: [], end: 0 });
  });

  it('round-trips random records', () => {
    const records = Array.from({ length: 200 }, (_, i) => ({
      key: `k${i}-${'x'.repeat(i % 37)}`,
      value: i % 5 === 0 ? null : Buffer.from(Array.from({ length: i % 90 }, (_v, j) => (i * 31 + j) & 0xff)),
    }));
    const d = decodeRecords(encodeRecords(records));
    assert.equal(d.bad, undefined);
    assert.deepEqual(d.records, records);
  });

  describe('a torn or corrupt tail: decoding stops before it and says why', () => {
    const good = Buffer.concat([PUT_A, DELETE_A]);
    const after = (tail: Buffer) => decodeRecords(Buffer.concat([good, tail]));
    const stopsAt = (tail: Buffer, reason: RegExp) => {
      const d = after(tail);
      assert.equal(d.records.length, 2, 'the whole records before it are kept');
      assert.equal(d.end, good.length);
      assert.ok(d.bad, 'the tail is reported');
      assert.equal(d.bad.offset, good.length);
      assert.match(d.bad.reason, reason);
    };

    it('a frame cut short', () => stopsAt(PUT_A.subarray(0, 5), /torn record frame \(5 of 8 bytes\)/));
    it('a payload cut short', () => stopsAt(PUT_A.subarray(0, 12), /torn record \(4 of 6 bytes\)/));
    it('a flipped bit in the payload', () => {
      const flipped = Buffer.from(PUT_A);
      flipped[13] ^= 0x01;
      stopsAt(flipped, /checksum mismatch/);
    });
    it('a flipped bit in the checksum', () => {
      const flipped = Buffer.from(PUT_A);
      flipped[5] ^= 0x80;
      stopsAt(flipped, /checksum mismatch/);
    });
    it('a huge length field (not waited for: corrupt at once)', () => stopsAt(bytes([0xff, 0xff, 0xff, 0xf0], [0, 0, 0, 0], [1, 0, 1, 0x61]), new RegExp(`length 4294967280 exceeds the largest record \\(${MAX_PAYLOAD_BYTES}\\)`)));
    it('a length shorter than any record', () => stopsAt(bytes([0, 0, 0, 2], [0, 0, 0, 0], [1, 0]), /length 2 is shorter than a record/));
    it('zeros (a file extended by a crash, its data never written)', () => stopsAt(Buffer.alloc(64), /length 0 is shorter/));
    it('an unknown record type, checksum right', () => {
      const r = Buffer.from(DELETE_A);
      r[8] = 9;
      r.writeUInt32BE(crc32c(r.subarray(8)), 4);
      stopsAt(r, /unknown record type 9/);
    });
    it('a key length past its record, checksum right', () => {
      const r = Buffer.from(DELETE_A);
      r.writeUInt16BE(9, 9);
      r.writeUInt32BE(crc32c(r.subarray(8)), 4);
      stopsAt(r, /key of 9 bytes runs past its record/);
    });
    it('a record after a bad one is not trusted either', () => {
      const flipped = Buffer.from(PUT_A);
      flipped[13] ^= 0x01;
      const d = after(Buffer.concat([flipped, PUT_E_ACUTE_EMPTY]));
      assert.equal(d.records.length, 2);
      assert.equal(d.bad?.offset, good.length);
    });
  });

  describe('bad headers: a clear error', () => {
    const fails = (b: Buffer, message: RegExp) => assert.throws(() => decodeHeader(b), (err: Error) => err instanceof JournalFormatError && message.test(err.message));
    it('zero length', () => fails(Buffer.alloc(0), /empty journal \(no header\)/));
    it('cut short', () => fails(HEADER_GEN_7.subarray(0, 10), /shorter than its header \(10 of 40 bytes\)/));
    it('garbage', () => fails(Buffer.from('{"node":"a"}\n garbage garbage'), /not a lockdrop journal \(starts with 7b226e6f/));
    it('an unknown version', () => {
      const b = Buffer.from(HEADER_GEN_7);
      b.writeUInt16BE(2, 4);
      fails(b, /unknown journal version 2 \(this lockdrop reads version 1\)/);
    });
    it('another header length', () => {
      const b = Buffer.from(HEADER_GEN_7);
      b.writeUInt16BE(24, 6);
      fails(b, /header length 24/);
    });
    it('a compacted end inside the header, checksum right', () => {
      const b = Buffer.from(HEADER_GEN_7);
      b.writeBigUInt64BE(8n, 28);
      b.writeUInt32BE(crc32c(b.subarray(0, 36)), 36);
      fails(b, /out of range \(generation 7, compacted end 8\)/);
    });
    it('a flipped bit in the generation', () => {
      const b = Buffer.from(HEADER_GEN_7);
      b[11] ^= 0x02;
      fails(b, /header checksum mismatch/);
    });
  });

  it('refuses records the journal cannot hold', () => {
    assert.throws(() => encodeRecords([{ key: 'k'.repeat(0x10000), value: null }]), /key of 65536 bytes/);
    assert.throws(() => encodeRecords([{ key: 'k', value: Buffer.alloc(MAX_PAYLOAD_BYTES) }]), /record of 1048580 bytes/);
    assert.throws(() => encodeRecords([{ key: 'k', value: 'text' as unknown as Buffer }]), TypeError);
    assert.throws(() => encodeRecords([{ key: 7 as unknown as string, value: null }]), TypeError);
  });
});
