import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeRecord, RecordDecoder, RecordTooLargeError } from '../../src/rpc';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+|#[^\n]*/g, ''), 'hex');

/** Feeds the stream in the given pieces and returns every record that came out. */
function feed(d: RecordDecoder, stream: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, stream.length]) {
    out.push(...d.push(stream.subarray(at, c)));
    at = c;
  }
  return out;
}

describe('rpc record marking', () => {
  // Two records: "abcd" in one fragment, then "hello world!" in three fragments (5 + 0 + 7).
  const stream = hex(`
    80000004 61626364          # last fragment, 4 bytes: "abcd"
    00000005 68656c6c6f        # fragment, 5 bytes: "hello"
    00000000                   # an empty fragment (legal)
    80000007 20776f726c6421    # last fragment, 7 bytes: " world!"`);

  it('feed() hands a record lying whole in its chunk as a window of that chunk, a split one as a buffer of its own', () => {
    const d = new RecordDecoder(1024);
    const got: { buf: Buffer; start: number; end: number }[] = [];
    const onRecord = (buf: Buffer, start: number, end: number): void => void got.push({ buf, start, end });
    const chunk = Buffer.concat([stream, hex('80000002 7879')]); // ... then "xy"
    const cut = chunk.length - 1; // the last record's final byte comes in a second chunk
    const first = chunk.subarray(0, cut);
    d.feed(first, onRecord);
    assert.equal(got.length, 2);
    assert.equal(got[0]!.buf, first); // "abcd": no copy
    assert.deepEqual([got[0]!.start, got[0]!.end], [4, 8]);
    assert.notEqual(got[1]!.buf, first); // three fragments: joined
    assert.equal(got[1]!.buf.toString('latin1', got[1]!.start, got[1]!.end), 'hello world!');
    assert.ok(d.partial);
    d.feed(chunk.subarray(cut), onRecord);
    assert.equal(got[2]!.buf.toString('latin1', got[2]!.start, got[2]!.end), 'xy');
    assert.ok(!d.partial);
  });

  it('decodes the annotated fixture', () => {
    const recs = new RecordDecoder(1024).push(stream);
    assert.deepEqual(recs.map(String), ['abcd', 'hello world!']);
  });

  it('decodes the same records however the stream is split (every one and two cut points)', () => {
    for (let i = 0; i <= stream.length; i++) {
      for (let j = i; j <= stream.length; j++) {
        const d = new RecordDecoder(1024);
        assert.deepEqual(feed(d, stream, [i, j]).map(String), ['abcd', 'hello world!'], `cuts ${i},${j}`);
        assert.equal(d.partial, false);
      }
    }
  });

  it('reports a partial record at every offset inside one', () => {
    for (let i = 1; i < stream.length; i++) {
      const d = new RecordDecoder(1024);
      d.push(stream.subarray(0, i));
      assert.equal(d.partial, i !== 8, `offset ${i}`); // offset 8 is the boundary between the records
    }
  });

  it('refuses a fragment header announcing 2 GiB before allocating', () => {
    const d = new RecordDecoder(1 << 20);
    assert.throws(() => d.push(hex('ffffffff')), (e: RecordTooLargeError) => e instanceof RecordTooLargeError && e.announced === 0x7fffffff);
    // The limit counts the whole record, over fragments.
    const d2 = new RecordDecoder(8);
    assert.throws(() => d2.push(hex('00000005 6868686868 00000004')), RecordTooLargeError);
    assert.deepEqual(new RecordDecoder(8).push(hex('00000004 61616161 80000004 62626262')).map(String), ['aaaabbbb']);
  });

  it('encodes records, splitting into fragments', () => {
    assert.deepEqual(encodeRecord(Buffer.from('abcd')), hex('80000004 61626364'));
    assert.deepEqual(encodeRecord(Buffer.alloc(0)), hex('80000000'));
    assert.deepEqual(encodeRecord(Buffer.from('hello'), 2), hex('00000002 6865 00000002 6c6c 80000001 6f'));
  });

  it('round-trips random records through random fragment sizes and read splits (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 100 }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.nat(2000), { maxLength: 8 }),
        (records, frag, rawCuts) => {
          const stream = Buffer.concat(records.map((r) => encodeRecord(r, frag)));
          const cuts = [...new Set(rawCuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const out = feed(new RecordDecoder(100), stream, cuts);
          assert.deepEqual(out.map((b) => new Uint8Array(b)), records);
        },
      ),
    );
  });
});
