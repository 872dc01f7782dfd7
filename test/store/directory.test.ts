// The directory adapter of the cluster store on real files: on the test machine's temp
// directory, on a tmpfs and on an ext4 image (loop device), in one process (two stores on one
// directory) and in separate processes (store-child.ts), with the bytes a crash leaves.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { Subscription } from 'rxjs';
import { DirectoryStore, JournalFormatError, type DirectoryStoreOptions, type JournalChange, type JournalFault } from '../../src/store';
import { decodeHeader, encodeHeader, encodeRecords, HEADER_BYTES } from '../../src/store/codec';
import { mountExt4, mountTmpfs, type Mounted } from '../support/files';
import { hasCommand, skipBecause } from '../support/netns';
import { waitFor } from '../support/wait';
import { monotonicMs, StoreChild } from './support';

const V = '10.99.0.7';
const W = 'fd00::7';
const silent = pino({ level: 'silent' });
const buf = (s: string): Buffer => Buffer.from(s);

/** A subscriber's copy of every journal, kept from changes$ as an index would. */
function follower(store: DirectoryStore) {
  const view = new Map<string, Map<string, string>>();
  const changes: Array<JournalChange & { at: number }> = [];
  const sub: Subscription = store.changes$.subscribe((c) => {
    changes.push({ ...c, at: monotonicMs() });
    let m = view.get(c.address);
    if (!m || c.reset) view.set(c.address, (m = new Map()));
    for (const r of c.records) if (r.value === null) m.delete(r.key); else m.set(r.key, r.value.toString());
  });
  return { view, changes, sub, of: (a: string) => Object.fromEntries(view.get(a) ?? []) };
}

const asObject = (m: Map<string, Buffer>): Record<string, string> => Object.fromEntries([...m].map(([k, v]) => [k, v.toString()]));

const kinds: Array<{ name: string; mount?: () => Mounted }> = [
  { name: 'the temp directory' },
  { name: 'tmpfs', mount: mountTmpfs },
  { name: 'ext4 on a loop device', mount: () => mountExt4(32) },
];

for (const kind of kinds) {
  describe(`store: journals in a state directory on ${kind.name}`, function () {
    this.timeout(20_000);
    let mounted: Mounted | undefined;
    let dir: string;
    const opened: DirectoryStore[] = [];
    const open = async (node: string, o: Partial<DirectoryStoreOptions> = {}): Promise<DirectoryStore> => {
      const s = await DirectoryStore.open({ stateDir: dir, node, pollMs: 20, livenessMs: 2_000, log: silent, ...o });
      opened.push(s);
      return s;
    };

    before(function () {
      if (!kind.mount) return;
      if (process.getuid?.() !== 0) skipBecause(this, 'needs root in a private mount namespace (scripts/mocha-ns.sh)');
      if (kind.name.startsWith('ext4') && !hasCommand('mkfs.ext4')) skipBecause(this, 'mkfs.ext4 is not installed (e2fsprogs)');
      mounted = kind.mount();
    });
    after(() => mounted?.dispose());
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(mounted?.dir ?? tmpdir(), 'lockdrop-store-'));
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('the records are framed as appended: a batch past the write buffer, a refused call leaving nothing of itself, the buffer reused', async () => {
      const a = await open('node-a');
      await a.takeOver(V);
      const follow = follower(a);
      const rec = (i: number, n: number) => ({ key: `big-${i}-é`, value: Buffer.alloc(n, i & 0xff) });
      // 300 records of 1 KiB in one turn: more than the 64 KiB the writer starts with.
      const big = Array.from({ length: 300 }, (_, i) => rec(i, 1024));
      for (let i = 0; i < big.length; i += 7) a.append(V, big.slice(i, i + 7));
      // A call with a record the journal cannot hold (a key over 65535 bytes) appends none of its records.
      assert.throws(() => a.append(V, [{ key: 'refused-call', value: null }, { key: 'x'.repeat(70_000), value: null }]), RangeError);
      const before = { ...a.counters };
      await a.commit();
      assert.equal(a.counters.writes - before.writes, 1);
      assert.equal(a.counters.records - before.records, 300);
      // Later batches write from the start of the same buffer again: none carries an earlier one's bytes.
      const small = [{ key: 'a', value: buf('1') }, { key: 'big-0-é', value: null }];
      a.append(V, small.slice(0, 1));
      await a.commit();
      a.append(V, small.slice(1));
      await a.commit();
      const file = fs.readFileSync(path.join(dir, V, 'journal'));
      assert.deepEqual(file.subarray(HEADER_BYTES), encodeRecords([...big, ...small]), 'exactly the records appended, in order');
      const b = await open('node-b');
      const seen = follower(b);
      await waitFor('the follower to read the journal', () => Object.keys(seen.of(V)).length === 300, 5_000);
      assert.deepEqual(seen.of(V), follow.of(V), 'another node reads what this one wrote');
      assert.equal(seen.of(V)['refused-call'], undefined);
      follow.sub.unsubscribe();
      seen.sub.unsubscribe();
    });

    it('group commit: the appends of one turn share one write and one fdatasync', async () => {
      const a = await open('node-a');
      assert.deepEqual(asObject(await a.takeOver(V)), {});
      const before = { ...a.counters };
      const commits: Promise<void>[] = [];
      for (let i = 0; i < 100; i++) {
        a.append(V, [{ key: `k${i}`, value: buf(`v${i}`) }]);
        commits.push(a.commit());
      }
      await Promise.all(commits);
      assert.equal(a.counters.writes - before.writes, 1, 'one write for 100 appends of one turn');
      assert.equal(a.counters.syncs - before.syncs, 1, 'one fdatasync for 100 appends of one turn');
      const file = fs.readFileSync(path.join(dir, V, 'journal'));
      const { fileId, ...header } = decodeHeader(file);
      assert.deepEqual(header, { generation: 1, compactedEnd: HEADER_BYTES }, 'a new journal');
      assert.equal(typeof fileId, 'number');
      assert.deepEqual(file.subarray(HEADER_BYTES), encodeRecords(Array.from({ length: 100 }, (_, i) => ({ key: `k${i}`, value: buf(`v${i}`) }))), 'the 100 records, in order');

      // Appends of separate turns while a sync is under way wait for the next one, together. On
      // tmpfs the sync is made in the loop (it does nothing and cannot block): one per turn.
      const syncInLoop = [0x01021994, 0x858458f6].includes(fs.statfsSync(dir).type);
      const mid = a.counters.syncs;
      const waves: Promise<void>[] = [];
      for (let i = 0; i < 50; i++) {
        a.append(V, [{ key: `w${i}`, value: null }]);
        waves.push(a.commit());
        await new Promise((r) => setImmediate(r));
      }
      await Promise.all(waves);
      if (syncInLoop) assert.equal(a.counters.syncs - mid, 50, 'one fdatasync per turn, made in the loop');
      else assert.ok(a.counters.syncs - mid < 50, `${a.counters.syncs - mid} fdatasyncs for 50 appends of 50 turns`);
      assert.ok(a.counters.syncs - mid >= 1);
      // Separate turns, each committed before the next: one sync each.
      const solo = a.counters.syncs;
      for (let i = 0; i < 3; i++) {
        a.append(V, [{ key: 'solo', value: buf(String(i)) }]);
        await a.commit();
      }
      assert.equal(a.counters.syncs - solo, 3);
      await a.commit(); // nothing appended: resolves at once, no sync
      assert.equal(a.counters.syncs - solo, 3);
      // Two addresses in one turn: one write and one fdatasync each, one commit() for both.
      await a.takeOver(W);
      const two = { ...a.counters };
      for (let i = 0; i < 10; i++) a.append(i % 2 ? V : W, [{ key: `t${i}`, value: buf('x') }]);
      await a.commit();
      assert.deepEqual([a.counters.writes - two.writes, a.counters.syncs - two.syncs], [2, 2]);
    });

    it('a follower sees a reset with the whole journal, then each commit, and its view matches the holder', async () => {
      const a = await open('node-a');
      await a.takeOver(V);
      a.append(V, [{ key: 'x', value: buf('1') }, { key: 'y', value: buf('2') }]);
      await a.commit();
      const b = await open('node-b');
      const fb = follower(b);
      assert.deepEqual(fb.changes.map((c) => [c.address, c.reset]), [[V, true]], 'first a reset of the existing journal');
      assert.deepEqual(fb.of(V), { x: '1', y: '2' });
      a.append(V, [{ key: 'x', value: null }, { key: 'z', value: buf('3') }]);
      await a.commit();
      await waitFor('b to see the commit', () => fb.view.get(V)?.has('z'), 2_000);
      assert.deepEqual(fb.of(V), { y: '2', z: '3' });
      assert.equal(fb.changes.at(-1)?.reset, false);
      assert.deepEqual(fb.changes.at(-1)?.records, [{ key: 'x', value: null }, { key: 'z', value: buf('3') }]);

      // The holder's own index: its appends are emitted once durable, before commit() resolves.
      const fa = follower(a);
      a.append(V, [{ key: 'w', value: buf('4') }]);
      await a.commit();
      assert.deepEqual(fa.of(V), { y: '2', z: '3', w: '4' });

      // A new address folder is picked up; a removed journal is a reset to nothing.
      const w = await open('node-w');
      await w.takeOver(W);
      w.append(W, [{ key: 'k', value: buf('6') }]);
      await w.commit();
      await waitFor('b to find the new address', () => fb.view.get(W)?.get('k') === '6', 2_000);
      await w.release(W);
      assert.throws(() => w.append(W, [{ key: 'k', value: null }]), /does not write the journal of fd00::7/);
      fs.rmSync(path.join(dir, W, 'journal'));
      await waitFor('b to see the journal removed', () => fb.view.get(W)?.size === 0, 2_000);
      fs.rmSync(path.join(dir, W), { recursive: true });
      await new Promise((r) => setTimeout(r, 50));
      await w.takeOver(W); // the folder made again
      w.append(W, [{ key: 'again', value: buf('7') }]);
      await w.commit();
      await waitFor('b to follow the folder made again', () => fb.view.get(W)?.get('again') === '7', 2_000);
      fb.sub.unsubscribe();
      fa.sub.unsubscribe();
    });

    it('compaction: the file shrinks to its live content under a new generation that names where it came from; a follower behind reads it whole (a reset), one caught up skips it (no reset)', async () => {
      const a = await open('node-a', { compactMinBytes: 4_096 });
      await a.takeOver(V);
      const b = await open('node-b');
      const fb = follower(b);
      // c looks only when told (a barrier reads the journal first): it is behind at every compaction.
      const c = await open('node-c', { watch: false, pollMs: 600_000 });
      const fc = follower(c);
      const file = path.join(dir, V, 'journal');
      let checked = 0;
      for (let round = 0; round < 60; round++) {
        const batch = [
          ...Array.from({ length: 10 }, (_, k) => ({ key: `key-${k}`, value: buf(`${round}-${'x'.repeat(20)}`) })),
          { key: `gone-${round}`, value: buf('y') }, { key: `gone-${round}`, value: null },
        ];
        const before = { size: fs.statSync(file).size, generation: decodeHeader(fs.readFileSync(file)).generation, compactions: a.counters.compactions };
        a.append(V, batch);
        await a.commit();
        await a.commit(); // a compaction starts right after the first resolves: this one waits for its end
        if (a.counters.compactions > before.compactions) {
          const after = fs.readFileSync(file);
          const { fileId: _id, ...h } = decodeHeader(after);
          assert.deepEqual(h, { generation: before.generation + 1, from: { generation: before.generation, offset: before.size + encodeRecords(batch).length }, compactedEnd: after.length });
          checked++;
        }
      }
      assert.ok(checked >= 1, `compacted ${checked} times`);
      const live = Object.fromEntries(Array.from({ length: 10 }, (_, k) => [`key-${k}`, `59-${'x'.repeat(20)}`]));
      await waitFor('b to catch up', () => fb.of(V)['key-0']?.startsWith('59-'), 2_000);
      assert.deepEqual(fb.of(V), live);
      assert.ok(fs.statSync(file).size < 4_096 * 2);

      await c.barrier(V, 0);
      assert.deepEqual(fc.of(V), live);
      assert.deepEqual(fc.changes.map((x) => x.reset), [true, true], 'c, behind: its first read, then the compacted file whole');

      // A compaction of exactly what c has read, then one record more: c applies that record alone.
      await a.release(V);
      const now = fs.readFileSync(file);
      const records = encodeRecords(Object.entries(live).map(([key, v]) => ({ key, value: buf(v) })));
      const extra = encodeRecords([{ key: 'extra', value: buf('e') }]);
      const header = encodeHeader({ generation: decodeHeader(now).generation + 1, fileId: 77, from: { generation: decodeHeader(now).generation, offset: now.length }, compactedEnd: HEADER_BYTES + records.length });
      fs.writeFileSync(`${file}.new`, Buffer.concat([header, records, extra]));
      fs.renameSync(`${file}.new`, file);
      await c.barrier(V, 0);
      assert.deepEqual(fc.changes.slice(2).map((x) => [x.reset, x.records.map((r) => r.key)]), [[false, ['extra']]]);
      assert.deepEqual(fc.of(V), { ...live, extra: 'e' });
      assert.deepEqual(asObject(await b.takeOver(V)), { ...live, extra: 'e' }, 'the next holder reads the same live entries');
      assert.equal(fs.readdirSync(path.join(dir, V)).filter((n) => n.endsWith('.tmp')).length, 0, 'no temp file left');
      fb.sub.unsubscribe();
      fc.sub.unsubscribe();
    });

    it('a torn tail is reported, never applied, and cut off by the new holder', async () => {
      const a = await open('node-a');
      await a.takeOver(V);
      a.append(V, [{ key: 'one', value: buf('1') }, { key: 'two', value: buf('2') }, { key: 'three', value: buf('3') }]);
      await a.commit();
      await a.close();
      const file = path.join(dir, V, 'journal');
      const whole = fs.statSync(file).size;
      fs.truncateSync(file, whole - 3); // the last record torn by a crash
      const goodEnd = whole - encodeRecords([{ key: 'three', value: buf('3') }]).length;

      const b = await open('node-b');
      const fb = follower(b);
      const faults: JournalFault[] = [];
      b.faults$.subscribe((f) => faults.push(f));
      assert.deepEqual(fb.of(V), { one: '1', two: '2' }, 'the torn record is not applied');
      const f = await waitFor('the torn tail reported', () => faults[0], 3_000);
      assert.deepEqual(f, { address: V, where: file, position: goodEnd, reason: 'torn record (6 of 9 bytes)', truncated: false });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(faults.length, 1, 'reported once');

      const c = await open('node-c');
      const fc: JournalFault[] = [];
      c.faults$.subscribe((x) => fc.push(x));
      assert.deepEqual(asObject(await c.takeOver(V)), { one: '1', two: '2' });
      assert.deepEqual(fc, [{ address: V, where: file, position: goodEnd, reason: 'torn record (6 of 9 bytes)', truncated: true }]);
      assert.equal(fs.statSync(file).size, goodEnd, 'the new holder cut it off');
      c.append(V, [{ key: 'four', value: buf('4') }]);
      await c.commit();
      await waitFor('b to read past the cut', () => fb.view.get(V)?.has('four'), 2_000);
      assert.deepEqual(fb.of(V), { one: '1', two: '2', four: '4' });
      fb.sub.unsubscribe();
    });

    it('bytes rewritten under a follower (same file, shorter, then longer): read again whole, not reported', async () => {
      const a = await open('node-a');
      await a.takeOver(V);
      a.append(V, [{ key: 'k1', value: buf('1') }, { key: 'k2', value: buf('2') }]);
      await a.commit();
      await a.close();
      const b = await open('node-b');
      const fb = follower(b);
      const faults: JournalFault[] = [];
      b.faults$.subscribe((f) => faults.push(f));
      assert.deepEqual(fb.of(V), { k1: '1', k2: '2' });
      // What a cluster filesystem may show after the writer's machine died with k2 unsynced and
      // the next holder wrote on: k1, then other records across the offset b had reached.
      const fd = fs.openSync(path.join(dir, V, 'journal'), 'r+');
      const after = encodeRecords([{ key: 'k3', value: buf('3'.repeat(40)) }]);
      const k1End = HEADER_BYTES + encodeRecords([{ key: 'k1', value: buf('1') }]).length;
      fs.ftruncateSync(fd, k1End);
      fs.writeSync(fd, after, 0, after.length, k1End);
      fs.closeSync(fd);
      await waitFor('b to read the file again whole', () => fb.view.get(V)?.has('k3'), 3_000);
      assert.deepEqual(fb.of(V), { k1: '1', k3: '3'.repeat(40) });
      assert.equal(fb.changes.at(-1)?.reset, true);
      assert.deepEqual(faults, []);
      fb.sub.unsubscribe();
    });

    it('a flipped byte: the records from it on are not trusted, and the new holder cuts them off', async () => {
      const a = await open('node-a');
      await a.takeOver(V);
      for (const k of ['p', 'q', 'r']) {
        a.append(V, [{ key: k, value: buf(k.repeat(4)) }]);
        await a.commit();
      }
      await a.close();
      const file = path.join(dir, V, 'journal');
      const b0 = fs.readFileSync(file);
      const qAt = HEADER_BYTES + encodeRecords([{ key: 'p', value: buf('pppp') }]).length;
      b0[qAt + 12] ^= 0x20; // in q's value
      fs.writeFileSync(file, b0);
      const c = await open('node-c');
      const faults: JournalFault[] = [];
      c.faults$.subscribe((x) => faults.push(x));
      assert.deepEqual(asObject(await c.takeOver(V)), { p: 'pppp' });
      assert.deepEqual(faults.map((x) => [x.position, x.reason, x.truncated]), [[qAt, 'record checksum mismatch', true]]);
      assert.equal(fs.statSync(file).size, qAt);
    });

    it('bad input: garbage, zero length, an unknown version, a huge length field, a garbage node file: clear errors, no crash', async () => {
      const garbage = path.join(dir, V, 'journal');
      fs.mkdirSync(path.dirname(garbage));
      fs.writeFileSync(garbage, '{"this is": "not a journal"}\n');
      const empty = path.join(dir, '10.99.0.8', 'journal');
      fs.mkdirSync(path.dirname(empty));
      fs.writeFileSync(empty, '');
      const future = path.join(dir, '10.99.0.9', 'journal');
      fs.mkdirSync(path.dirname(future));
      const h = encodeHeader({ generation: 3, fileId: 3, compactedEnd: HEADER_BYTES });
      h.writeUInt16BE(7, 4);
      fs.writeFileSync(future, h);
      const huge = path.join(dir, '10.99.0.10', 'journal');
      fs.mkdirSync(path.dirname(huge));
      fs.writeFileSync(huge, Buffer.concat([encodeHeader({ generation: 1, fileId: 1, compactedEnd: HEADER_BYTES }), encodeRecords([{ key: 'ok', value: buf('1') }]), Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1])]));
      fs.mkdirSync(path.join(dir, '.nodes'), { recursive: true });
      fs.writeFileSync(path.join(dir, '.nodes', 'garbage-node'), 'not json');
      fs.mkdirSync(path.join(dir, 'not-an-address'));
      fs.mkdirSync(path.join(dir, 'FD00::8')); // not the canonical form (fd00::8): not an address folder
      fs.writeFileSync(path.join(dir, 'FD00::8', 'journal'), Buffer.concat([encodeHeader({ generation: 1, fileId: 1, compactedEnd: HEADER_BYTES }), encodeRecords([{ key: 'no', value: buf('1') }])]));

      const b = await open('node-b');
      const faults: JournalFault[] = [];
      b.faults$.subscribe((f) => faults.push(f));
      const fb = follower(b);
      await waitFor('the faults reported', () => faults.length >= 4 && faults, 3_000);
      const by = (where: string) => faults.find((f) => f.where === where)?.reason;
      assert.match(by(garbage) ?? '', /not a lockdrop journal/);
      assert.match(by(empty) ?? '', /empty journal \(no header\)/);
      assert.match(by(future) ?? '', /unknown journal version 7/);
      assert.match(by(huge) ?? '', /length 4294967295 exceeds the largest record/);
      assert.deepEqual(fb.of('10.99.0.10'), { ok: '1' });
      assert.deepEqual(b.liveNodes(), [], 'the garbage node file is not a live node');
      assert.deepEqual([...fb.view.keys()].sort(), ['10.99.0.10'], 'only readable journals of canonical address folders');

      await assert.rejects(b.takeOver(V), (err: Error) => err instanceof JournalFormatError && err.message.includes(garbage) && /not a lockdrop journal/.test(err.message));
      await assert.rejects(b.takeOver('10.99.0.9'), /unknown journal version 7 \(this lockdrop reads version 1\)/);
      assert.deepEqual(fs.readFileSync(future), h, 'a journal of another version is left as it is');
      assert.deepEqual(asObject(await b.takeOver('10.99.0.8')), {}, 'an empty journal has nothing to lose: started again');
      assert.equal(decodeHeader(fs.readFileSync(empty)).generation, 1);
      assert.deepEqual(asObject(await b.takeOver('10.99.0.10')), { ok: '1' });
      assert.equal(fs.statSync(huge).size, HEADER_BYTES + encodeRecords([{ key: 'ok', value: buf('1') }]).length);

      await assert.rejects(b.takeOver('::FFFF:10.1.1.1'), /not a server address in canonical form/);
      await assert.rejects(b.takeOver('../etc'), /not a server address/);
      assert.throws(() => b.append('10.99.0.11', [{ key: 'k', value: null }]), /takeOver first/);
      assert.throws(() => b.append('10.99.0.8', [{ key: 'k', value: 'x' as unknown as Buffer }]), TypeError);
      fb.sub.unsubscribe();
    });
  });
}

describe('store: nodes in separate processes', function () {
  this.timeout(30_000);
  let dir: string;
  const children: StoreChild[] = [];
  const stores: DirectoryStore[] = [];
  const LIVENESS_MS = 1_500;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(tmpdir(), 'lockdrop-store-'));
  });
  afterEach(async () => {
    for (const c of children.splice(0)) {
      c.kill('SIGCONT');
      await c.stop();
    }
    for (const s of stores.splice(0)) await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const child = async (node: string, o: { pollMs?: number; watch?: boolean } = {}): Promise<StoreChild> => {
    const c = await StoreChild.start(dir, node, { livenessMs: LIVENESS_MS, ...o });
    children.push(c);
    return c;
  };
  const open = async (node: string, o: Partial<DirectoryStoreOptions> = {}): Promise<DirectoryStore> => {
    const s = await DirectoryStore.open({ stateDir: dir, node, pollMs: 50, livenessMs: LIVENESS_MS, log: silent, ...o });
    stores.push(s);
    return s;
  };

  for (const mode of [{ name: 'inotify', watch: true, pollMs: 100, boundMs: 50 }, { name: 'polling only (50 ms)', watch: false, pollMs: 50, boundMs: 150 }]) {
    it(`a commit in one process reaches another's changes$ within ${mode.boundMs} ms (${mode.name})`, async () => {
      const writer = await child('writer');
      await writer.ask(`takeover ${V}`);
      const b = await open('reader', { watch: mode.watch, pollMs: mode.pollMs });
      const fb = follower(b);
      const lags: number[] = [];
      for (let i = 0; i < 15; i++) {
        const { t } = await writer.ask(`append ${V} k${i} ${Buffer.from(`v${i}`).toString('hex')}`);
        await waitFor(`k${i} on the reader`, () => fb.view.get(V)?.has(`k${i}`), 2_000);
        const c = fb.changes.find((x) => x.records.some((r) => r.key === `k${i}`))!;
        lags.push(c.at - t!);
      }
      lags.sort((x, y) => x - y);
      const p50 = lags[Math.floor(lags.length / 2)];
      assert.ok(lags.at(-1)! < mode.boundMs, `lags from commit to changes$ ${lags.map((x) => x.toFixed(1)).join(' ')} ms (p50 ${p50.toFixed(1)})`);
      fb.sub.unsubscribe();
    });
  }

  it('barrier: acked by a live follower, names a stopped one (lease still live) as missing at the timeout, ignores a dead one', async () => {
    const a = await open('holder');
    await a.takeOver(V);
    const f = await child('follower', { pollMs: 50 });
    await waitFor('the follower to be live', () => a.liveNodes().includes('follower'), 3_000);

    a.append(V, [{ key: 'r1', value: buf('1') }]);
    const acked = await a.barrier(V, 2_000);
    const passed = monotonicMs();
    assert.deepEqual([acked.acked, acked.missing], [['follower'], []]);
    assert.ok(acked.ms < 500, `acked in ${acked.ms.toFixed(1)} ms`);
    // The follower's report of it travels over a pipe and may come after the barrier: its own clock says when it applied r1.
    const r1 = await waitFor('the follower to report r1', () => f.changes.find((c) => c.change.records.some(([k]) => k === 'r1')), 2_000);
    assert.ok(r1.t <= passed, `the follower had applied r1 when the barrier passed (${(r1.t - passed).toFixed(1)} ms)`);

    f.kill('SIGSTOP'); // its heartbeat stops; its last one stays within the liveness bound for a while
    a.append(V, [{ key: 'r2', value: buf('2') }]);
    const stopped = await a.barrier(V, 300);
    assert.deepEqual([stopped.acked, stopped.missing], [[], ['follower']]);
    assert.ok(stopped.ms >= 300 && stopped.ms < 800, `timed out after ${stopped.ms.toFixed(1)} ms`);

    f.kill('SIGCONT');
    const resumed = await a.barrier(V, 2_000);
    assert.deepEqual([resumed.acked, resumed.missing], [['follower'], []], 'acked once it runs again');

    await f.stop(); // SIGKILL: its node file stays behind
    assert.ok(fs.existsSync(path.join(dir, '.nodes', 'follower')));
    await waitFor('the killed follower to stop being live', () => !a.liveNodes().includes('follower'), LIVENESS_MS + 1_000);
    a.append(V, [{ key: 'r3', value: buf('3') }]);
    const dead = await a.barrier(V, 2_000);
    assert.deepEqual([dead.acked, dead.missing], [[], []]);
    assert.ok(dead.ms < 100, `no wait for a dead node (${dead.ms.toFixed(1)} ms)`);
  });

  it('a clean close removes the node at once; the reader follows the writer after a release and a takeover by another process', async () => {
    const a = await open('node-a');
    await a.takeOver(V);
    a.append(V, [{ key: 'mine', value: buf('a') }]);
    await a.commit();
    const c = await child('node-c');
    await waitFor('node-c live', () => a.liveNodes().includes('node-c'), 3_000);
    await a.release(V);
    const { ok } = await c.ask<Record<string, string>>(`takeover ${V}`);
    assert.deepEqual(ok, { mine: Buffer.from('a').toString('hex') });
    const fa = follower(a);
    await c.ask(`append ${V} theirs ${Buffer.from('c').toString('hex')}`);
    await waitFor('a to follow node-c', () => fa.view.get(V)?.get('theirs') === 'c', 2_000);
    await c.ask('close');
    assert.ok(!fs.existsSync(path.join(dir, '.nodes', 'node-c')), 'its node file is gone');
    await waitFor('node-c not live', () => !a.liveNodes().includes('node-c'), 500);
    fa.sub.unsubscribe();
  });
});

describe('store: a full filesystem', function () {
  this.timeout(20_000);
  let mounted: Mounted | undefined;
  before(function () {
    if (process.getuid?.() !== 0) skipBecause(this, 'needs root in a private mount namespace (scripts/mocha-ns.sh)');
    mounted = mountTmpfs(1);
  });
  after(() => mounted?.dispose());

  it('a write that fails rejects its commits and stops the journal until it is taken over again, which cuts off the partial batch', async () => {
    const dir = path.join(mounted!.dir, 'state');
    const store = await DirectoryStore.open({ stateDir: dir, node: 'node-a', pollMs: 20, log: silent });
    try {
      await store.takeOver(V);
      store.append(V, [{ key: 'kept', value: buf('1') }]);
      await store.commit();
      const filler = path.join(mounted!.dir, 'filler');
      const free = (): number => { const st = fs.statfsSync(mounted!.dir); return st.bavail * st.bsize; };
      fs.writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 40 * 1024)));
      const big = Buffer.alloc(30 * 1024, 1);
      let failure: Error | undefined;
      for (let i = 0; i < 10 && !failure; i++) {
        store.append(V, [{ key: `big-${i}`, value: big }]);
        await store.commit().catch((err: Error) => (failure = err));
      }
      assert.ok(failure, 'a commit failed');
      assert.match(failure.message, /journal of 10\.99\.0\.7 .* failed: ENOSPC.*no more appends until it is taken over again/);
      assert.throws(() => store.append(V, [{ key: 'after', value: null }]), /ENOSPC/);
      const committed = Object.keys(asObject(await new Promise<Map<string, Buffer>>((resolve) => {
        // What the store itself holds as durable: every commit that resolved, not the failed one.
        store.changes$.subscribe((c) => c.reset && resolve(new Map(c.records.map((r) => [r.key, r.value!])))).unsubscribe();
      })));
      fs.rmSync(filler);
      await store.release(V);
      const faults: JournalFault[] = [];
      store.faults$.subscribe((f) => faults.push(f));
      const taken = await store.takeOver(V);
      assert.deepEqual(Object.keys(asObject(taken)).sort(), committed.sort(), 'exactly the committed entries');
      assert.deepEqual(faults.map((f) => [f.reason.replace(/\d+/g, 'N'), f.truncated]), [['torn record (N of N bytes)', true]], 'the partial batch cut off');
      store.append(V, [{ key: 'after', value: buf('2') }]);
      await store.commit();
      assert.equal((await store.takeOver(V)).get('after')?.toString(), '2');
    } finally {
      await store.close();
    }
  });
});
