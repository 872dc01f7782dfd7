// NLM codecs against golden bytes (issue 11, item 9): test/fixtures/nlm/v{1,3,4}.txt hold the
// arguments and results of every procedure, cut out of a real capture (nlm.pcap) and annotated
// with tshark's dissection. Each decodes to exactly the values below and each value encodes to
// exactly those bytes, as mqtt-packet's tests do, so an encoder and a decoder that agree on a
// wrong layout fail here. The capture itself is checked too: tshark dissects it without a
// malformed packet, and every procedure's call and reply is in it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { XdrReader, XdrWriter } from '../../src/xdr';
import * as C from '../../src/nlm/codec';
import { NlmProc } from '../../src/nlm';
import { parseFixtures, requireTshark, verifyCapture, type FixtureSection } from '../support/golden';
import { CALLER, PRIV, SERVER_NAME, fh2Of, fhOf, fixtureOf } from '../fixtures/nlm/record';

const DIR = join(__dirname, '..', 'fixtures', 'nlm');
const VERSIONS = [1, 3, 4] as const;

type Codec = { decode: (r: XdrReader, v: number) => unknown; encode: (w: XdrWriter, v: number, value: any) => void };
const testArgs: Codec = { decode: C.decodeTestArgs, encode: C.encodeTestArgs };
const lockArgs: Codec = { decode: C.decodeLockArgs, encode: C.encodeLockArgs };
const cancelArgs: Codec = { decode: C.decodeCancelArgs, encode: C.encodeCancelArgs };
const unlockArgs: Codec = { decode: C.decodeUnlockArgs, encode: C.encodeUnlockArgs };
const testRes: Codec = { decode: C.decodeTestRes, encode: C.encodeTestRes };
const res: Codec = { decode: C.decodeRes, encode: (w, _v, x) => C.encodeRes(w, x) };
const shareArgs: Codec = { decode: (r) => C.decodeShareArgs(r), encode: (w, _v, x) => C.encodeShareArgs(w, x) };
const shareRes: Codec = { decode: C.decodeShareRes, encode: (w, _v, x) => C.encodeShareRes(w, x) };
const notify: Codec = { decode: (r) => C.decodeNotify(r), encode: (w, _v, x) => C.encodeNotify(w, x) };
const reboot: Codec = { decode: (r) => C.decodeReboot(r), encode: (w, _v, x) => C.encodeReboot(w, x) };

/** The codec of each procedure's arguments (call) and results (reply); absent: void. */
const CODECS: Record<string, { call?: Codec; reply?: Codec }> = {
  NULL: {},
  TEST: { call: testArgs, reply: testRes },
  LOCK: { call: lockArgs, reply: res },
  CANCEL: { call: cancelArgs, reply: res },
  UNLOCK: { call: unlockArgs, reply: res },
  GRANTED: { call: testArgs, reply: res },
  TEST_MSG: { call: testArgs },
  LOCK_MSG: { call: lockArgs },
  CANCEL_MSG: { call: cancelArgs },
  UNLOCK_MSG: { call: unlockArgs },
  GRANTED_MSG: { call: testArgs },
  TEST_RES: { call: testRes },
  LOCK_RES: { call: res },
  CANCEL_RES: { call: res },
  UNLOCK_RES: { call: res },
  GRANTED_RES: { call: res },
  SM_NOTIFY: { call: reboot },
  SHARE: { call: shareArgs, reply: shareRes },
  UNSHARE: { call: shareArgs, reply: shareRes },
  NM_LOCK: { call: lockArgs, reply: res },
  FREE_ALL: { call: notify },
};
const proceduresOf = (vers: number): string[] => Object.keys(NlmProc).filter((p) => vers !== 1 || NlmProc[p as keyof typeof NlmProc] <= NlmProc.SM_NOTIFY);

/** What the recorded session sent (test/fixtures/nlm/record.ts), per fixture key. */
function expected(vers: number): Record<string, unknown> {
  const b = (s: string): Buffer => Buffer.from(s);
  const lock = (svid: number, offset: bigint, length: bigint, callerName = CALLER) => ({ callerName, fh: fhOf(vers), oh: b(`${svid}@${CALLER}`), svid, offset, length });
  const out: Record<string, unknown> = {
    'TEST call': { cookie: b('T1'), exclusive: true, lock: lock(1, 0n, 100n) },
    'TEST reply granted': { cookie: b('T1'), stat: 0 },
    'LOCK call': { cookie: b('L1'), block: false, exclusive: true, lock: lock(1, 0n, 100n), reclaim: false, state: 3 },
    'LOCK reply granted': { cookie: b('L1'), stat: 0 },
    'TEST reply denied': { cookie: b('T2'), stat: 1, holder: { exclusive: true, svid: 1, oh: Buffer.alloc(0), offset: 0n, length: 100n } },
    'LOCK reply blocked': { cookie: b('L2'), stat: 3 },
    'CANCEL call': { cookie: b('C2'), block: true, exclusive: true, lock: lock(2, 0n, 0n) },
    'CANCEL reply granted': { cookie: b('C2'), stat: 0 },
    'UNLOCK call': { cookie: b('U1'), lock: lock(1, 0n, 100n) },
    'UNLOCK reply granted': { cookie: b('U1'), stat: 0 },
    'GRANTED call': { cookie: b('L3'), exclusive: true, lock: lock(2, 0n, 0n, SERVER_NAME) },
    'GRANTED reply granted': { cookie: b('L3'), stat: 0 },
    'GRANTED reply denied': { cookie: b('G1'), stat: 1 },
    'TEST_MSG call': { cookie: b('T3'), exclusive: true, lock: lock(3, 0n, 0n) },
    'TEST_RES call denied': { cookie: b('T3'), stat: 1, holder: { exclusive: true, svid: 2, oh: Buffer.alloc(0), offset: 0n, length: 0n } },
    'LOCK_MSG call': { cookie: b('L4'), block: true, exclusive: true, lock: lock(1, 0n, 0n), reclaim: false, state: 3 },
    'LOCK_RES call blocked': { cookie: b('L4'), stat: 3 },
    'UNLOCK_MSG call': { cookie: b('U2'), lock: lock(2, 0n, 0n) },
    'UNLOCK_RES call granted': { cookie: b('U2'), stat: 0 },
    'GRANTED_MSG call': { cookie: b('L4'), exclusive: true, lock: lock(1, 0n, 0n, SERVER_NAME) },
    'GRANTED_RES call granted': { cookie: b('L4'), stat: 0 },
    'CANCEL_MSG call': { cookie: b('C9'), block: false, exclusive: true, lock: lock(9, 0n, 0n) },
    'CANCEL_RES call granted': { cookie: b('C9'), stat: 0 },
    'GRANTED_RES call denied': { cookie: b('G2'), stat: 1 },
    'SM_NOTIFY call': { monName: CALLER, state: 5, priv: PRIV },
  };
  if (vers === 1) return out;
  const share = { callerName: CALLER, fh: fhOf(vers), oh: b('share@cli-a'), mode: 1, access: 3 };
  return {
    ...out,
    'SHARE call': { cookie: b('S1'), share, reclaim: false },
    'SHARE reply granted': { cookie: b('S1'), stat: 0, sequence: 0 },
    'UNSHARE call': { cookie: b('S2'), share, reclaim: false },
    'UNSHARE reply granted': { cookie: b('S2'), stat: 0, sequence: 0 },
    'NM_LOCK call': { cookie: b('N1'), block: false, exclusive: false, lock: { callerName: CALLER, fh: fh2Of(vers), oh: b('4@cli-a'), svid: 4, offset: 4096n, length: 512n }, reclaim: false, state: 1 },
    'NM_LOCK reply granted': { cookie: b('N1'), stat: 0 },
    'FREE_ALL call': { name: CALLER, state: 7 },
  };
}

const codecOf = (key: string): Codec => {
  const [proc, dir] = key.split(' ') as [string, 'call' | 'reply'];
  const c = CODECS[proc]?.[dir];
  if (!c) throw new Error(`no codec for ${key}`);
  return c;
};

describe('nlm codecs against golden bytes (test/fixtures/nlm)', () => {
  const fixtures = new Map(VERSIONS.map((v) => [v, parseFixtures(readFileSync(join(DIR, `v${v}.txt`), 'utf8'))]));

  for (const vers of VERSIONS) {
    describe(`v${vers}`, () => {
      const sections = fixtures.get(vers)!;
      const want = expected(vers);

      it('has a fixture for every non-void argument and result, and nothing unchecked', () => {
        assert.deepEqual([...sections.keys()].sort(), Object.keys(want).sort());
        for (const proc of proceduresOf(vers)) {
          for (const dir of ['call', 'reply'] as const) {
            if (CODECS[proc]![dir]) assert.ok([...sections.keys()].some((k) => k.startsWith(`${proc} ${dir}`)), `${proc} ${dir}`);
          }
        }
      });

      for (const key of Object.keys(want)) {
        it(`${key}: decodes to the values sent, and they encode to the same bytes`, () => {
          const s: FixtureSection | undefined = sections.get(key);
          assert.ok(s, `no fixture section "${key}"`);
          const codec = codecOf(key);
          const r = new XdrReader(s.bytes);
          assert.deepEqual(codec.decode(r, vers), want[key]);
          r.done();
          const w = new XdrWriter();
          codec.encode(w, vers, want[key]);
          assert.equal(w.toBuffer().toString('hex'), s.bytes.toString('hex'));
        });
      }
    });
  }

  describe('the capture they come from (nlm.pcap)', function () {
    before(function () {
      requireTshark(this);
    });

    it('tshark dissects it cleanly, each fixture is its frame\'s NLM body, and it holds every procedure\'s call and reply', () => {
      const seen = verifyCapture(join(DIR, 'nlm.pcap'), new Map([...fixtures].map(([v, s]) => [`v${v}`, s])), fixtureOf);
      for (const vers of VERSIONS) {
        for (const proc of proceduresOf(vers)) {
          for (const dir of ['call', 'reply'] as const) {
            // Keys carry the status after the procedure and direction ("TEST reply denied").
            const sizes = [...seen].filter(([k]) => k === `v${vers} ${proc} ${dir}` || k.startsWith(`v${vers} ${proc} ${dir} `)).map(([, n]) => n);
            assert.ok(sizes.length > 0, `v${vers} ${proc} ${dir} is not in the capture`);
            if (!CODECS[proc]![dir]) assert.deepEqual(sizes, [0], `v${vers} ${proc} ${dir} should be void`);
          }
        }
      }
    });
  });
});
