// The record stores under the lock table: ids found by hash must stay found across growth,
// backward-shift deletion and id reuse, and a table with thousands of files and owners must keep
// its indexes in step (the model test stays small: two files, four owners).
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LockTable, hostKey } from '../../src/locks';
import { FileRecords, OwnerRecords } from '../../src/locks/records';
import { checkIndexes } from '../../src/locks/testing';

describe('locks: record stores', () => {
  it('finds every file by its handle through growth, removals and reused ids, as a Map does', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat({ max: 3000 })), { minLength: 1, maxLength: 4000 }), (ops) => {
        const files = new FileRecords();
        const model = new Map<string, number>();
        // Short handles, so many share a prefix and collide in few slots.
        const handle = (n: number): Buffer => Buffer.from(n.toString(36), 'latin1');
        for (const [add, n] of ops) {
          const fh = handle(n);
          const key = fh.toString('latin1');
          const have = model.get(key);
          assert.equal(files.find(fh), have ?? 0);
          if (add && have === undefined) model.set(key, files.add(key, 0));
          else if (!add && have !== undefined) {
            files.remove(have);
            model.delete(key);
          }
        }
        for (const [key, f] of model) {
          assert.equal(files.find(Buffer.from(key, 'latin1')), f);
          assert.equal(files.findKey(key), f);
        }
        assert.equal(files.size, model.size);
        assert.deepEqual(new Set(files.ids()), new Set(model.values()));
      }),
      { numRuns: 60 },
    );
  });

  it('tells owners apart by host, svid and handle, including an empty handle', () => {
    const owners = new OwnerRecords();
    const a = owners.add(1, 7, 'x');
    const b = owners.add(2, 7, 'x');
    const c = owners.add(1, 8, 'x');
    const d = owners.add(1, 7, '');
    assert.equal(new Set([a, b, c, d]).size, 4);
    assert.equal(owners.find(1, 7, Buffer.from('x')), a);
    assert.equal(owners.find(2, 7, Buffer.from('x')), b);
    assert.equal(owners.find(1, 8, Buffer.from('x')), c);
    assert.equal(owners.find(1, 7, Buffer.alloc(0)), d);
    assert.equal(owners.findKey(1, 7, ''), d);
    owners.remove(a);
    assert.equal(owners.find(1, 7, Buffer.from('x')), 0);
    assert.equal(owners.find(1, 7, Buffer.alloc(0)), d);
  });

  it('keeps a table of thousands of files and owners in step through locks, unlocks and drops', () => {
    const t = new LockTable();
    const vips = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
    const owners = Array.from({ length: 3000 }, (_, i) => ({ host: hostKey(`h${i % 50}`, `192.168.0.${i % 50}`), svid: i, oh: Buffer.from(`${i}@h${i % 50}`) }));
    const fh = (i: number): Buffer => Buffer.from(`file-${i}`);
    let rnd = 12345;
    const next = (n: number): number => {
      rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0;
      return rnd % n;
    };
    const held = new Map<string, number>();
    for (let step = 0; step < 30_000; step++) {
      const o = next(owners.length);
      const f = next(4000);
      const req = { fh: fh(f), owner: owners[o], exclusive: true, offset: 0n, length: 0n, serverAddress: vips[o % 3] };
      const k = `${f}`;
      if (next(3) !== 0) {
        const st = t.lock(req, { block: false, reclaim: false });
        if (st === 'granted') held.set(k, o);
        else assert.notEqual(held.get(k), undefined);
      } else if (held.get(k) === o) {
        t.unlock(req);
        held.delete(k);
      }
      if (step % 10_000 === 9_999) {
        assert.deepEqual(checkIndexes(t), []);
        const vip = vips[next(3)];
        for (const [file, owner] of held) if (vips[owner % 3] === vip) held.delete(file);
        t.dropByServerAddress(vip);
      }
    }
    assert.deepEqual(checkIndexes(t), []);
    assert.equal(t.stats().locks, held.size);
    assert.deepEqual(new Set([...t.locks()].map((l) => l.fh.toString())), new Set([...held.keys()].map((f) => `file-${f}`)));
  });
});
