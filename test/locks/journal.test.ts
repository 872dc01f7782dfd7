// The lock journal's entry codec against annotated bytes, its refusals of bad input, and the
// index every node keeps of every address's journal.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { JournalEntryError, decodeJournalEntry, encodeJournalEntry, journalKey, ownerKey, type JournalEntry } from '../../src/locks/journal-entry';
import { JournalIndex, type JournalRecord } from '../../src/locks/journal-index';
import { LockTable } from '../../src/locks';
import { checkIndexes } from '../../src/locks/testing';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+|#[^\n]*/g, ''), 'hex');

const ENTRY: JournalEntry = {
  owner: { host: 'c1@10.0.0.7', svid: 42, oh: Buffer.from('oh') },
  fh: Buffer.from([0xaa, 0xbb, 0xcc]),
  exportId: 'ex',
  locks: [
    { offset: 0n, length: 100n, exclusive: true },
    { offset: 200n, length: 0n, exclusive: false },
  ],
};

const ANNOTATED = `
  01                                   # version 1
  000b 63314031302e302e302e37          # host "c1@10.0.0.7" (11 bytes)
  0000002a                             # svid 42
  0002 6f68                            # owner handle "oh"
  0003 aabbcc                          # file handle
  0002 6578                            # export "ex"
  0002                                 # 2 locks
  0000000000000000 0000000000000064 01 # [0, 100) exclusive
  00000000000000c8 0000000000000000 00 # [200, EOF) shared
`;

describe('locks: journal entries', () => {
  it('encodes to exactly the annotated bytes and decodes them back', () => {
    assert.deepEqual(encodeJournalEntry(ENTRY), hex(ANNOTATED));
    assert.deepEqual(decodeJournalEntry(hex(ANNOTATED)), ENTRY);
  });

  it('marks an entry without export with 0xffff', () => {
    const b = encodeJournalEntry({ ...ENTRY, exportId: undefined, locks: [] });
    assert.deepEqual(b.subarray(-4), hex('ffff 0000'));
    assert.equal(decodeJournalEntry(b).exportId, undefined);
  });

  it('round-trips any entry', () => {
    const entry = fc.record({
      owner: fc.record({ host: fc.string({ maxLength: 40 }), svid: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), oh: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) }),
      fh: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
      exportId: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
      locks: fc.array(fc.record({ offset: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), length: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), exclusive: fc.boolean() }), { maxLength: 5 }),
    });
    fc.assert(
      fc.property(entry, (r) => {
        const e: JournalEntry = { ...r, owner: { ...r.owner }, locks: r.locks.map((l) => ({ ...l })) };
        assert.deepEqual(decodeJournalEntry(encodeJournalEntry(e)), e);
      }),
    );
  });

  it('refuses every truncation, an unknown version, a bad flag and trailing bytes with a clear error', () => {
    const good = hex(ANNOTATED);
    for (let n = 0; n < good.length; n++) assert.throws(() => decodeJournalEntry(good.subarray(0, n)), JournalEntryError);
    assert.throws(() => decodeJournalEntry(Buffer.concat([Buffer.from([2]), good.subarray(1)])), /unknown version 2/);
    const flag = Buffer.from(good);
    flag[flag.length - 1] = 7;
    assert.throws(() => decodeJournalEntry(flag), /exclusive flag 7/);
    assert.throws(() => decodeJournalEntry(Buffer.concat([good, Buffer.from([0])])), /1 bytes after the last lock/);
    assert.throws(() => decodeJournalEntry(hex('01 ffff')), /host of 65535 bytes/);
  });

  it('encodes the table\'s forms (the handle as latin1, exact numbers) to the same bytes as an entry', () => {
    const parts = { ...ENTRY, fh: ENTRY.fh.toString('latin1'), locks: [{ offset: 0, length: 100, exclusive: true }, { offset: 200, length: 0, exclusive: false }] };
    assert.deepEqual(encodeJournalEntry(parts), hex(ANNOTATED));
    assert.deepEqual(encodeJournalEntry({ ...parts, locks: [{ start: 0, end: 99, exclusive: true }, { start: 200, end: Infinity, exclusive: false }] }), hex(ANNOTATED), 'the table\'s positions');
    assert.deepEqual(encodeJournalEntry({ ...parts, locks: [{ start: 2n ** 60n, end: 2n ** 60n + 4n, exclusive: true }] }), encodeJournalEntry({ ...ENTRY, locks: [{ offset: 2n ** 60n, length: 5n, exclusive: true }] }));
    const far = { offset: 2 ** 53 - 1, length: 2 ** 53, exclusive: true };
    assert.deepEqual(encodeJournalEntry({ ...parts, locks: [far] }), encodeJournalEntry({ ...ENTRY, locks: [{ offset: 2n ** 53n - 1n, length: 2n ** 53n, exclusive: true }] }));
    assert.throws(() => encodeJournalEntry({ ...parts, locks: [{ offset: 2 ** 53 + 2, length: 1, exclusive: true }] }), /not an exact u64/);
    assert.throws(() => encodeJournalEntry({ ...parts, locks: [{ offset: -1, length: 1, exclusive: true }] }), /not an exact u64/);
  });

  it('decodes a negative svid (NLM\'s is an int32) as the owner that locked', () => {
    const owner = { host: 'h', svid: -5, oh: Buffer.from('o') };
    const back = decodeJournalEntry(encodeJournalEntry({ ...ENTRY, owner }));
    assert.equal(back.owner.svid, -5);
    assert.equal(ownerKey(back.owner), ownerKey(owner));
  });

  it('names owners and (owner, file) pairs so that no two can spell each other', () => {
    const a = ownerKey({ host: 'h1', svid: 12, oh: Buffer.from('3') });
    const b = ownerKey({ host: 'h1', svid: 1, oh: Buffer.from('23') });
    assert.notEqual(a, b);
    assert.notEqual(journalKey('ab', 'c'), journalKey('a', 'bc'));
  });
});

describe('locks: the journal index', () => {
  const X = ENTRY.owner;
  const entryOf = (owner: JournalEntry['owner'], fh: string, locks: JournalEntry['locks']): { key: string; value: Buffer } => ({
    key: journalKey(ownerKey(owner), fh),
    value: encodeJournalEntry({ owner, fh: Buffer.from(fh, 'latin1'), exportId: undefined, locks }),
  });
  const none = (): boolean => false;

  it('finds another owner\'s conflicting entry, not the owner\'s own, not a compatible one, not a skipped address', () => {
    const ix = new JournalIndex();
    const up = ix.apply('10.0.0.1', [entryOf(X, 'F', [{ offset: 10n, length: 10n, exclusive: true }])]);
    assert.deepEqual([...up.files], ['F']);
    const me = ownerKey(X);
    assert.equal(ix.conflict('F', 'other', 0, 9, true, none), undefined);
    assert.equal(ix.conflict('F', 'other', 19, 30, false, none)?.address, '10.0.0.1');
    assert.equal(ix.conflict('F', me, 0, 100, true, none), undefined);
    assert.equal(ix.conflict('G', 'other', 0, 100, true, none), undefined);
    assert.equal(ix.conflict('F', 'other', 0, 100, true, (a) => a === '10.0.0.1'), undefined);
    ix.apply('10.0.0.1', [entryOf(X, 'F', [{ offset: 10n, length: 10n, exclusive: false }])]);
    assert.equal(ix.conflict('F', 'other', 0, 100, false, none), undefined, 'shared with shared');
    assert.ok(ix.conflict('F', 'other', 0, 100, true, none));
  });

  it('forgets deleted keys and everything of an address on a reset, reporting the files touched', () => {
    const ix = new JournalIndex();
    const a = entryOf(X, 'F', [{ offset: 0n, length: 0n, exclusive: true }]);
    const b = entryOf({ ...X, svid: 7 }, 'G', [{ offset: 0n, length: 1n, exclusive: true }]);
    ix.apply('V', [a, b]);
    assert.equal(ix.size('V'), 2);
    const del = ix.apply('V', [{ key: a.key, value: null }]);
    assert.deepEqual([...del.files], ['F']);
    assert.equal(ix.conflict('F', 'other', 0, 0, true, none), undefined);
    const reset = ix.apply('V', [a], true);
    assert.deepEqual([...reset.files].sort(), ['F', 'G']);
    assert.deepEqual(ix.addresses(), ['V']);
    assert.equal(ix.size(), 1);
    ix.apply('V', [{ key: a.key, value: null }]);
    assert.deepEqual(ix.addresses(), []);
  });

  it('a table\'s own records come parsed, as their bytes decode: the index built from either is the same', () => {
    const records: JournalRecord[] = [];
    const table = new LockTable({ onBlockGranted: () => undefined, journal: (_a, r) => records.push(...r) });
    const owner = (svid: number) => ({ host: 'c1', svid, oh: Buffer.from(`oh${svid}`) });
    const lock = (svid: number, offset: bigint, length: bigint, exclusive: boolean) =>
      assert.equal(table.lock({ fh: Buffer.from([1, 2, 0xff]), owner: owner(svid), exclusive, offset, length, serverAddress: 'V' }, { block: false, reclaim: false }), 'granted');
    lock(1, 0n, 10n, true);
    lock(1, 20n, 10n, false);
    lock(3, 2n ** 62n, 0n, false); // to end of file
    lock(-7, 2n ** 60n, 5n, true); // past 2^53: bigint positions
    lock(2, 12n, 3n, false);
    assert.ok(records.some((r) => r.value !== null && r.parsed) && records.every((r) => (r.value === null) === (r.parsed === undefined)));
    const fromParsed = new JournalIndex();
    const fromBytes = new JournalIndex();
    fromParsed.apply('V', records);
    fromBytes.apply('V', records.map(({ key, value }) => ({ key, value })));
    const view = (ix: JournalIndex) => ix.entries('V').map((x) => ({ key: x.key, file: x.file, owner: x.owner, locks: x.locks, entry: x.entry, value: x.value }));
    assert.deepEqual(view(fromParsed), view(fromBytes));
    assert.equal(fromParsed.size('V'), 4);
  });

  it('one call writes each (owner, file) it changed once, as the table has it, with the owner handle\'s bytes as sent', () => {
    const calls: JournalRecord[][] = [];
    const table = new LockTable({ onBlockGranted: () => undefined, journal: (_a, r) => calls.push(r) });
    const oh = Buffer.from([0xff, 0x00, 0x80, 0x41]); // not text: the table keeps it as latin1
    const a = Buffer.from([1, 0xfe]);
    const b = Buffer.from([2]);
    const lock = (svid: number, fh: Buffer, offset: bigint) =>
      assert.equal(table.lock({ fh, owner: { host: 'c1', svid, oh }, exclusive: true, offset, length: 10n, serverAddress: 'V' }, { block: false, reclaim: false }), 'granted');
    lock(1, a, 0n);
    lock(1, b, 0n);
    lock(1, a, 20n);
    lock(2, a, 40n);
    const last = calls.at(-1)!;
    assert.equal(last.length, 1);
    const entry = decodeJournalEntry(last[0]!.value!);
    assert.deepEqual(entry.owner.oh, oh);
    assert.deepEqual(entry.fh, a);
    assert.deepEqual(decodeJournalEntry(calls[2]![0]!.value!).locks.map((l) => l.offset).sort(), [0n, 20n], 'the whole entry, both locks');
    calls.length = 0;
    // The host's reboot touches owner 1's file a twice, its locks there interleaved with others': one record each.
    table.dropByHost('c1');
    const keys = calls.flat().map((r) => r.key);
    assert.equal(keys.length, 3, keys.join(' '));
    assert.equal(new Set(keys).size, 3);
    assert.ok(calls.flat().every((r) => r.value === null));
  });

  it('a reset keeps an entry of the same bytes as it is (not decoded again), replaces a changed one, forgets a missing one', () => {
    const ix = new JournalIndex();
    const a = entryOf(X, 'F', [{ offset: 0n, length: 0n, exclusive: true }]);
    const b = entryOf({ ...X, svid: 7 }, 'G', [{ offset: 0n, length: 1n, exclusive: true }]);
    const c = entryOf({ ...X, svid: 8 }, 'H', [{ offset: 5n, length: 1n, exclusive: false }]);
    ix.apply('V', [a, b, c]);
    const [xa, xb] = ix.entries('V');
    const b2 = entryOf({ ...X, svid: 7 }, 'G', [{ offset: 0n, length: 2n, exclusive: true }]);
    const up = ix.apply('V', [{ key: a.key, value: Buffer.from(a.value) }, b2], true);
    assert.deepEqual([...up.files].sort(), ['G', 'H'], 'F did not change: its waiters need not look again');
    const [ya, yb] = ix.entries('V');
    assert.equal(ya, xa, 'the same bytes: the same entry');
    assert.notEqual(yb, xb);
    assert.deepEqual(yb.locks, [{ start: 0, end: 1, exclusive: true }]);
    assert.equal(ix.size('V'), 2);
    assert.ok(ix.conflict('F', 'other', 0, 0, false, none));
    assert.equal(ix.conflict('H', 'other', 5, 5, true, none), undefined);
    assert.equal(ix.apply('V', [], true).files.size, 2);
    assert.deepEqual(ix.addresses(), []);
  });

  it('an arrival from the index holds what an arrival of the decoded entries holds', () => {
    const a = entryOf(X, 'F', [{ offset: 0n, length: 10n, exclusive: true }, { offset: 20n, length: 0n, exclusive: false }]);
    const b = entryOf({ ...X, host: 'c2' }, 'F', [{ offset: 10n, length: 5n, exclusive: false }]);
    const bad = { key: 'k', value: Buffer.from([1]) };
    const viaIndex = new LockTable();
    assert.equal(viaIndex.applyJournal('V', [a, b, bad], true).bad.length, 1);
    const decoded = new LockTable();
    decoded.applyJournal('V', [a, b], true);
    const arrivals = [viaIndex.arriveIndexed('V'), decoded.arrive('V', [a, b].map((r) => decodeJournalEntry(r.value)))];
    for (const [i, t] of [viaIndex, decoded].entries()) {
      assert.deepEqual({ ...arrivals[i]!, lost: arrivals[i]!.lost.length }, { locks: 3, hosts: 2, lost: 0 });
      assert.deepEqual(checkIndexes(t), []);
      assert.deepEqual([...t.locks()].map((l) => [l.owner.host, l.offset, l.length, l.exclusive]).sort(), [[X.host, 0n, 10n, true], [X.host, 20n, 0n, false], ['c2', 10n, 5n, false]].sort());
    }
  });

  it('reports a value that does not decode and treats its key as absent', () => {
    const ix = new JournalIndex();
    const a = entryOf(X, 'F', [{ offset: 0n, length: 0n, exclusive: true }]);
    ix.apply('V', [a]);
    const up = ix.apply('V', [{ key: a.key, value: Buffer.from([9, 9]) }]);
    assert.equal(up.bad.length, 1);
    assert.match(up.bad[0].error, /unknown version 9/);
    assert.equal(ix.size('V'), 0);
  });
});
