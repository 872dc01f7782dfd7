// NSM codecs against golden bytes (issue 11, item 9): test/fixtures/nsm/nsm.txt holds the
// arguments and results of every statd procedure and of the status callback, cut out of a real
// capture (nsm.pcap) and annotated with tshark's dissection. Each decodes to exactly the values
// below and each value encodes to exactly those bytes; the capture is checked to be what tshark
// dissects without a malformed packet, with the call and reply of every procedure in it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { XdrReader, XdrWriter } from '../../src/xdr';
import * as P from '../../src/nsm/protocol';
import { parseFixtures, requireTshark, verifyCapture } from '../support/golden';
import { HOST, MON, MY_ID, PRIV, fixtureOf } from '../fixtures/nsm/record';

const DIR = join(__dirname, '..', 'fixtures', 'nsm');

type Codec = { decode: (r: XdrReader) => unknown; encode: (w: XdrWriter, value: any) => void };
const smStatRes: Codec = { decode: P.decodeSmStatRes, encode: P.encodeSmStatRes };
const smStat: Codec = { decode: P.decodeSmStat, encode: P.encodeSmStat };

/** Per fixture key: the codec and the value the recorded session sent (test/fixtures/nsm/record.ts). */
const EXPECTED: Record<string, { codec: Codec; value: unknown }> = {
  'SM_STAT call': { codec: { decode: P.decodeSmName, encode: P.encodeSmName }, value: 'cli-a' },
  'SM_STAT reply': { codec: smStatRes, value: { res: P.STAT_SUCC, state: 1 } },
  'SM_MON call': { codec: { decode: P.decodeMon, encode: P.encodeMon }, value: MON },
  'SM_MON reply': { codec: smStatRes, value: { res: P.STAT_SUCC, state: 1 } },
  'SM_NOTIFY call': { codec: { decode: P.decodeStatChge, encode: P.encodeStatChge }, value: { monName: HOST, state: 3 } },
  'status callback call': { codec: { decode: P.decodeSmStatus, encode: P.encodeSmStatus }, value: { monName: HOST, state: 3, priv: PRIV } },
  'SM_UNMON call': { codec: { decode: P.decodeMonId, encode: P.encodeMonId }, value: { monName: HOST, myId: MY_ID } },
  'SM_UNMON reply': { codec: smStat, value: 1 },
  'SM_UNMON_ALL call': { codec: { decode: P.decodeMyId, encode: P.encodeMyId }, value: MY_ID },
  'SM_UNMON_ALL reply': { codec: smStat, value: 1 },
};
const VOID = ['SM_NULL call', 'SM_NULL reply', 'SM_NOTIFY reply', 'SM_SIMU_CRASH call', 'SM_SIMU_CRASH reply', 'status callback reply'];

describe('nsm codecs against golden bytes (test/fixtures/nsm)', () => {
  const sections = parseFixtures(readFileSync(join(DIR, 'nsm.txt'), 'utf8'));

  it('has a fixture for every non-void argument and result, and nothing unchecked', () => {
    assert.deepEqual([...sections.keys()].sort(), Object.keys(EXPECTED).sort());
  });

  for (const [key, { codec, value }] of Object.entries(EXPECTED)) {
    it(`${key}: decodes to the values sent, and they encode to the same bytes`, () => {
      const s = sections.get(key);
      assert.ok(s, `no fixture section "${key}"`);
      const r = new XdrReader(s.bytes);
      assert.deepEqual(codec.decode(r), value);
      r.done();
      const w = new XdrWriter();
      codec.encode(w, value);
      assert.equal(w.toBuffer().toString('hex'), s.bytes.toString('hex'));
    });
  }

  describe('the capture they come from (nsm.pcap)', function () {
    before(function () {
      requireTshark(this);
    });

    it('tshark dissects it cleanly, each fixture is its frame\'s body, and it holds every procedure\'s call and reply', () => {
      const seen = verifyCapture(join(DIR, 'nsm.pcap'), new Map([['nsm', sections]]), fixtureOf);
      for (const key of [...Object.keys(EXPECTED), ...VOID]) assert.ok(seen.has(`nsm ${key}`), `${key} is not in the capture`);
      for (const key of VOID) assert.equal(seen.get(`nsm ${key}`), 0, `${key} should be void`);
    });
  });
});
