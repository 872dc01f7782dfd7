// The cluster store port's contract (src/store/types.ts), one suite for every adapter: the shared
// directory and etcd run the same tests (test/store/etcd.test.ts), with two or three nodes'
// stores in one process over one medium.
import assert from 'node:assert/strict';
import type { Subscription } from 'rxjs';
import type { ClusterStore, JournalChange } from '../../src/store';
import { waitFor } from '../support/wait';

export const V = '10.99.0.7';
export const W = 'fd00::7';
const buf = (s: string): Buffer => Buffer.from(s);

/** A subscriber's copy of every journal, kept from changes$ as an index would. */
export function follower(store: ClusterStore) {
  const view = new Map<string, Map<string, string>>();
  const changes: JournalChange[] = [];
  const sub: Subscription = store.changes$.subscribe((c) => {
    changes.push(c);
    let m = view.get(c.address);
    if (!m || c.reset) view.set(c.address, (m = new Map()));
    for (const r of c.records) if (r.value === null) m.delete(r.key); else m.set(r.key, r.value.toString());
  });
  return { view, changes, sub, of: (a: string) => Object.fromEntries(view.get(a) ?? []) };
}

const asObject = (m: Map<string, Buffer>): Record<string, string> => Object.fromEntries([...m].map(([k, v]) => [k, v.toString()]));

/** `open(node)` opens a node's store on the suite's medium (fresh per test); the suite closes them. */
export function storeContract(open: (node: string) => Promise<ClusterStore>, livenessMs: number): void {
  it('a holder appends and commits; its own changes$ has them before commit() resolves; a follower opened later starts from a reset with the whole journal, then each commit', async () => {
    const a = await open('node-a');
    assert.deepEqual(asObject(await a.takeOver(V)), {});
    const fa = follower(a);
    const commits: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      a.append(V, [{ key: `k${i}`, value: buf(`v${i}`) }]);
      commits.push(a.commit());
    }
    a.append(V, [{ key: 'k0', value: null }, { key: 'k1', value: buf('again') }, { key: 'k1', value: buf('last') }]);
    await Promise.all([...commits, a.commit()]);
    assert.equal(fa.view.get(V)?.size, 199);
    assert.equal(fa.of(V).k1, 'last', 'the last record of a key wins');
    const b = await open('node-b');
    const fb = follower(b);
    assert.deepEqual(fb.changes.map((c) => [c.address, c.reset]), [[V, true]]);
    assert.deepEqual(fb.of(V), fa.of(V));
    a.append(V, [{ key: 'k1', value: null }, { key: 'z', value: buf('3') }]);
    await a.commit();
    await waitFor('b to see the commit', () => fb.view.get(V)?.has('z') && !fb.view.get(V)?.has('k1'), 3_000);
    assert.equal(fb.changes.at(-1)?.reset, false);
    assert.deepEqual(fb.of(V), fa.of(V));
    fa.sub.unsubscribe();
    fb.sub.unsubscribe();
  });

  it('the next holder reads the same live entries; the one that released may not append', async () => {
    const a = await open('node-a');
    await a.takeOver(V);
    a.append(V, [{ key: 'x', value: buf('1') }, { key: 'y', value: buf('2') }, { key: 'y', value: null }]);
    await a.commit();
    await a.takeOver(W);
    a.append(W, [{ key: 'w', value: buf('6') }]);
    await a.commit();
    await a.release(V);
    assert.throws(() => a.append(V, [{ key: 'k', value: null }]), /does not write the journal of 10\.99\.0\.7/);
    const b = await open('node-b');
    const fb = follower(b);
    await waitFor('b to follow both', () => fb.view.get(W)?.get('w') === '6' && fb.view.get(V)?.get('x') === '1', 3_000);
    assert.deepEqual(asObject(await b.takeOver(V)), { x: '1' });
    b.append(V, [{ key: 'x', value: null }, { key: 'b', value: buf('b') }]);
    await b.commit();
    const fa = follower(a);
    await waitFor('a, now a follower, to see b\'s commit', () => fa.view.get(V)?.has('b'), 3_000);
    assert.deepEqual(fa.of(V), { b: 'b' });
    fa.sub.unsubscribe();
    fb.sub.unsubscribe();
  });

  it('barrier: every live node has applied the journal up to its end; a closed node is no longer live', async () => {
    const a = await open('node-a');
    const b = await open('node-b');
    const c = await open('node-c');
    await waitFor('a to see b and c live', () => a.liveNodes().join() === 'node-b,node-c' && a.liveNodes(), livenessMs);
    await a.takeOver(V);
    const fb = follower(b);
    const fc = follower(c);
    for (let i = 0; i < 5; i++) {
      a.append(V, [{ key: `r${i}`, value: buf(String(i)) }]);
      const r = await a.barrier(V, 3_000);
      assert.deepEqual([r.acked, r.missing], [['node-b', 'node-c'], []]);
      assert.equal(fb.of(V)[`r${i}`], String(i), 'b has it once the barrier resolves');
      assert.equal(fc.of(V)[`r${i}`], String(i), 'c has it once the barrier resolves');
    }
    await c.close();
    await waitFor('c gone from a\'s live nodes', () => a.liveNodes().join() === 'node-b', livenessMs + 2_000);
    const r = await a.barrier(V, 1_000);
    assert.deepEqual([r.acked, r.missing], [['node-b'], []]);
    fb.sub.unsubscribe();
    fc.sub.unsubscribe();
  });

  it('bad input: a non-canonical or foreign address, a non-Buffer value: clear errors', async () => {
    const a = await open('node-a');
    await assert.rejects(a.takeOver('::FFFF:10.1.1.1'), /not a server address in canonical form/);
    await assert.rejects(a.takeOver('../etc'), /not a server address/);
    assert.throws(() => a.append('10.99.0.11', [{ key: 'k', value: null }]), /takeOver first/);
    await a.takeOver(V);
    assert.throws(() => a.append(V, [{ key: 'k', value: 'x' as unknown as Buffer }]), TypeError);
    assert.throws(() => a.append(V, [{ key: 'k'.repeat(70_000), value: null }]), RangeError);
    await a.commit();
  });
}

/** waitFor for a check that must ask etcd: its first truthy answer, or a rejection naming `what`. */
export async function waitForAsync<T>(what: string, f: () => Promise<T | undefined | false>, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
