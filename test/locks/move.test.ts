// A lock survives its address's move (issue 19), scene by scene, on real lock tables over one
// simulated kernel and store (test/support/cluster-sim.ts): the journal keeps a moved lock for its
// owner on every node until the owner reclaims it, and the grace of the address ends by itself.
import assert from 'node:assert/strict';
import { hostKey, type LockRequest, type LockAnswer } from '../../src/locks';
import { checkIndexes } from '../../src/locks/testing';
import { SimKernel, SimNode, SimStore } from '../support/cluster-sim';

const V1 = '10.0.0.1';
const V2 = '10.0.0.2';
const V3 = '10.0.0.3';
const F = Buffer.from('file-1');

const owner = (name: string) => ({ host: hostKey(name, `192.168.0.${name.charCodeAt(0)}`), svid: 1, oh: Buffer.from(name) });
const req = (client: string, address: string, offset = 0, length = 10, exclusive = true): LockRequest => ({ fh: F, owner: owner(client), exclusive, offset: BigInt(offset), length: BigInt(length), serverAddress: address });

function cluster(...names: string[]) {
  const kernel = new SimKernel();
  const store = new SimStore();
  const nodes = names.map((n) => new SimNode(n, kernel, store));
  const sync = (): void => nodes.forEach((n) => n.alive && store.deliverAll(n));
  return { kernel, store, nodes, sync };
}

/** X holds bytes 0-9 through V1 on node a; Y, a client of V2 on node b, waits for them in the kernel. */
function xHoldsYWaits(): ReturnType<typeof cluster> {
  const c = cluster('a', 'b');
  const [a, b] = c.nodes;
  a.serves.add(V1);
  b.serves.add(V2);
  assert.equal(lock(a, req('x', V1)), 'granted');
  c.sync();
  assert.equal(lock(b, req('y', V2), { block: true }), 'blocked', 'waits in the kernel for node a');
  return c;
}

const lock = (n: SimNode, r: LockRequest, o: { block?: boolean; reclaim?: boolean } = {}): LockAnswer => n.table.lock(r, { block: o.block ?? false, reclaim: o.reclaim ?? false, waiter: () => 'w' });

describe('locks: a lock survives its address\'s move', () => {
  it('planned move: refused to a client of another node from the drop until its owner reclaimed it; grace ends by itself', () => {
    const { nodes: [a, b], nodes, sync } = cluster('a', 'b');
    a.serves.add(V1);
    b.serves.add(V2);
    assert.equal(lock(a, req('x', V1)), 'granted');
    sync();
    assert.equal(lock(b, req('y', V2)), 'denied', 'held on the file by node a');
    a.leave(V1, nodes);
    assert.equal(lock(b, req('y', V2)), 'denied_grace_period', 'in transit: kept for x');
    assert.equal(b.table.test(req('y', V2)).status, 'denied_grace_period');
    assert.equal(lock(b, req('y', V2, 5, 1, false)), 'denied_grace_period', 'a shared lock conflicts too');
    assert.equal(lock(b, req('y', V2, 10, 5)), 'granted', 'bytes nobody held are not kept');
    assert.deepEqual(b.arrive(V1), { locks: 1, lost: 0 });
    assert.equal(lock(b, req('y', V2)), 'denied_grace_period', 'awaiting x\'s reclaim on b');
    assert.equal(lock(b, req('z', V1)), 'denied_grace_period', 'V1 is in grace');
    assert.equal(b.table.grace.active().length, 1);
    assert.equal(lock(b, req('x', V1), { reclaim: true }), 'granted');
    assert.equal(b.table.grace.active().length, 0, 'everything reclaimed: the grace ended');
    assert.equal(lock(b, req('y', V2)), 'denied');
    assert.equal(b.table.unlock(req('x', V1)), 'granted');
    assert.equal(lock(b, req('y', V2)), 'granted');
  });

  it('kill -9 of the holder\'s node: the kernel lets go at once, every other node keeps the range; a waiter in the kernel is not handed it', () => {
    const { kernel, nodes: [a, b], nodes } = xHoldsYWaits();
    a.crash();
    assert.equal(nodes[0].alive, false);
    // The kernel hands the range to y's wait; the table gives it back: x's entry is in the journal.
    assert.equal(kernel.wakeWaiters(), 1);
    assert.equal(b.granted.length, 0, 'not granted while x has not reclaimed');
    assert.equal(lock(b, req('w', V2)), 'denied_grace_period');
    b.arrive(V1);
    assert.equal(lock(b, req('x', V1), { reclaim: true }), 'granted');
    assert.equal(b.table.unlock(req('x', V1)), 'granted');
    assert.deepEqual(b.granted.map((g) => g.host), [owner('y').host], 'the waiter is granted once x let go');
  });

  it('the holder\'s node dies between a TEST of the range and the lock: the range is still kept (the 600 s chaos run\'s two holders)', () => {
    const { kernel, nodes: [a, b], sync } = cluster('a', 'b');
    a.serves.add(V1);
    b.serves.add(V2);
    assert.equal(lock(a, req('x', V1)), 'granted');
    sync();
    // b's first look at the file sees node a's lock; a dies right after it, before b's next system call.
    kernel.afterNextCall = () => a.crash();
    assert.notEqual(lock(b, req('y', V2)), 'granted', 'x has not reclaimed');
    assert.equal(a.alive, false, 'the crash happened inside the call');
    assert.equal(lock(b, req('y', V2)), 'denied_grace_period', 'kept for x');
    assert.equal(lock(b, req('y', V2), { block: true }), 'blocked');
    assert.equal(kernel.conflict(F.toString('latin1'), 'probe', 0, 9, true), undefined, 'y holds nothing on the file');
    assert.equal(b.granted.length, 0);
    b.arrive(V1);
    assert.equal(lock(b, req('x', V1), { reclaim: true }), 'granted');
    assert.equal(b.table.unlock(req('x', V1)), 'granted');
    assert.deepEqual(b.granted.map((g) => g.host), [owner('y').host], 'y is granted once x let go');
  });

  it('an SM_NOTIFY that goes out after every awaiting lock was reclaimed: a reclaim of what the owner holds now is confirmed, nothing more (the 600 s chaos run\'s refused reclaim)', () => {
    const { nodes: [a, b], nodes, sync } = cluster('a', 'b');
    a.serves.add(V1);
    assert.equal(lock(a, req('x', V1)), 'granted');
    sync();
    a.leave(V1, nodes);
    b.arrive(V1);
    assert.equal(lock(b, req('x', V1), { reclaim: true }), 'granted', 'reclaimed before the notice (an earlier one set it off)');
    assert.equal(b.table.grace.active().length, 0, 'nothing left: the grace ended');
    assert.equal(lock(b, req('x', V1, 20, 10)), 'granted', 'a new lock after the grace');
    // The arrival's own SM_NOTIFY now: x reclaims everything it holds through V1.
    assert.equal(lock(b, req('x', V1), { reclaim: true }), 'granted');
    assert.equal(lock(b, req('x', V1, 20, 10), { reclaim: true }), 'granted');
    assert.equal(lock(b, req('x', V1, 2, 3), { reclaim: true }), 'granted', 'inside what it holds');
    assert.equal(lock(b, req('x', V1, 0, 30), { reclaim: true }), 'denied_grace_period', 'bytes 10-19 it does not hold');
    assert.equal(lock(b, req('x', V1, 0, 10, false), { reclaim: true }), 'denied_grace_period', 'another type');
    assert.equal(lock(b, req('y', V1), { reclaim: true }), 'denied_grace_period', 'another owner');
    assert.equal([...b.table.locks()].length, 2, 'nothing changed');
  });

  it('a waiter the kernel granted just before the address arrived gives the range back to the placeholder', () => {
    const { kernel, nodes: [a, b], nodes } = xHoldsYWaits();
    a.leave(V1, nodes);
    // The kernel hands y's description the range; b has not run the completion when V1 arrives.
    const completions = kernel.grantWaiters();
    assert.equal(completions.length, 1);
    assert.deepEqual(b.arrive(V1), { locks: 1, lost: 0 }, 'kept for x, not lost to the waiter');
    completions.forEach((c) => c());
    assert.equal(b.granted.length, 0, 'y is not granted x\'s lock');
    assert.equal(kernel.set('file-1', 'local/1', 0, 0, false), false, 'x\'s placeholder is on the file now');
    assert.equal(lock(b, req('x', V1), { reclaim: true }), 'granted');
    assert.equal(b.table.unlock(req('x', V1)), 'granted');
    kernel.wakeWaiters();
    assert.deepEqual(b.granted.map((g) => g.host), [owner('y').host], 'y waits for x to let go, then gets it');
  });

  it('the same node back: its other address refuses the range meanwhile, and the owner reclaims there', () => {
    const { nodes: [a], nodes } = cluster('a');
    a.serves.add(V1).add(V3);
    assert.equal(lock(a, req('x', V1)), 'granted');
    a.leave(V1, nodes);
    assert.equal(lock(a, req('z', V3)), 'denied_grace_period');
    a.arrive(V1);
    assert.equal(lock(a, req('x', V1), { reclaim: true }), 'granted');
    assert.equal(lock(a, req('z', V3)), 'denied');
  });

  it('two addresses at once, each reclaimed on another node; partial reclaims leave the rest awaiting', () => {
    const { nodes: [a, b, c], nodes, sync } = cluster('a', 'b', 'c');
    a.serves.add(V1).add(V2);
    assert.equal(lock(a, req('x', V1, 0, 10)), 'granted');
    assert.equal(lock(a, req('x', V1, 10, 10)), 'granted', 'merged with [0, 10)');
    assert.equal(lock(a, req('y', V2, 20, 5)), 'granted');
    sync();
    a.leave(V1, nodes);
    a.leave(V2, nodes);
    b.arrive(V1);
    c.arrive(V2);
    assert.equal(lock(c, req('z', V2, 0, 30)), 'denied_grace_period');
    assert.equal(lock(b, req('x', V1, 0, 10), { reclaim: true }), 'granted', 'half of the merged lock');
    assert.equal(b.table.reclaimProgress(V1)?.awaiting, 1);
    assert.equal(lock(b, req('x', V1, 10, 10), { reclaim: true }), 'granted');
    assert.equal(b.table.reclaimProgress(V1), undefined, 'nothing left to reclaim');
    assert.equal(lock(c, req('y', V2, 20, 5), { reclaim: true }), 'granted');
    assert.equal(c.table.grace.active().length, 0);
  });

  it('at the grace deadline what was not reclaimed is named, released and written out of the journal', () => {
    const { nodes: [a, b], nodes, store, sync } = cluster('a', 'b');
    a.serves.add(V1);
    b.serves.add(V2);
    assert.equal(lock(a, req('x', V1)), 'granted');
    assert.equal(lock(a, req('q', V1, 20, 2)), 'granted');
    sync();
    a.leave(V1, nodes);
    b.arrive(V1);
    assert.equal(lock(b, req('q', V1, 20, 2), { reclaim: true }), 'granted');
    const u = b.table.expireAwaiting(V1);
    assert.equal(u.locks, 1);
    assert.equal(u.total, 2);
    assert.deepEqual([...u.byHost], [[owner('x').host, 1]]);
    assert.equal(store.live(V1).size, 1, 'x\'s entry removed, q\'s kept');
    sync();
    assert.equal(lock(b, req('y', V2)), 'granted');
    assert.equal(lock(a, req('y2', V3, 0, 1)), 'denied', 'held by y, on the file');
  });

  it('an owner that gives its lock up (unlock, reboot) while its address is in transit frees it everywhere', () => {
    const { nodes: [a, b], nodes, sync } = cluster('a', 'b');
    a.serves.add(V1);
    b.serves.add(V2);
    assert.equal(lock(a, req('x', V1)), 'granted');
    assert.equal(lock(a, req('x2', V1, 20, 2)), 'granted');
    sync();
    a.leave(V1, nodes);
    b.arrive(V1);
    assert.equal(lock(b, req('y', V2)), 'denied_grace_period');
    b.table.dropByHost(owner('x').host);
    assert.equal(lock(b, req('y', V2)), 'granted', 'x rebooted: nothing to keep');
    assert.equal(b.table.unlock(req('x2', V1, 20, 2)), 'granted');
    assert.equal(b.table.grace.active().length, 0, 'nothing left to reclaim');
  });

  it('placeholders hold the moved ranges against a local process on the new node; a range a local process took in transit is reported lost and still kept from other clients', () => {
    const { kernel, nodes: [a, b], nodes } = cluster('a', 'b');
    a.serves.add(V1);
    b.serves.add(V2);
    assert.equal(lock(a, req('x', V1)), 'granted');
    assert.equal(lock(a, req('x2', V1, 20, 2)), 'granted');
    a.leave(V1, nodes);
    // The window the journal cannot close: a process outside lockdrop between release and arrival.
    assert.equal(kernel.set('file-1', 'local/1', 20, 21, true), true);
    assert.deepEqual(b.arrive(V1), { locks: 2, lost: 1 });
    assert.equal(kernel.set('file-1', 'local/2', 0, 9, false), false, 'x\'s placeholder holds');
    assert.equal(lock(b, req('x', V1), { reclaim: true }), 'granted');
    assert.deepEqual(kernel.held('b/' + `${owner('x').host.length}:${owner('x').host}1:x`).length, 10, 'the reclaim is the placeholder, no gap');
    assert.equal(lock(b, req('x2', V1, 20, 2), { reclaim: true }), 'denied', 'the local process holds x2\'s bytes: its reclaim fails');
    kernel.clear('file-1', 'local/1');
    assert.equal(lock(b, req('y', V2, 20, 2, false)), 'denied_grace_period', 'lost to the local process, still not handed to another client');
    const u = b.table.expireAwaiting(V1);
    assert.equal(u.locks, 1, 'at the deadline the lost lock is what was not reclaimed');
    assert.equal(lock(b, req('y', V2, 20, 2, false)), 'granted');
  });

  it('a placeholder a local process kept off the file is taken in the kernel once that process lets go: no process takes the range after the window (the 600 s chaos run\'s two holders)', () => {
    const { kernel, nodes: [a, b], nodes } = cluster('a', 'b');
    a.serves.add(V1);
    assert.equal(lock(a, req('x', V1, 20, 2)), 'granted');
    a.leave(V1, nodes);
    assert.equal(kernel.set('file-1', 'local/1', 0, 31, false), true, 'a local reader in the window');
    assert.deepEqual(b.arrive(V1), { locks: 1, lost: 1 });
    kernel.clear('file-1', 'local/1');
    assert.equal(kernel.wakeWaiters(), 1, 'the placeholder waited in the kernel');
    assert.equal(kernel.set('file-1', 'local/2', 20, 21, false), false, 'held for x on the file now');
    assert.equal(lock(b, req('x', V1, 20, 2), { reclaim: true }), 'granted');
    assert.equal(b.table.unlock(req('x', V1, 20, 2)), 'granted');
    assert.equal(kernel.set('file-1', 'local/2', 20, 21, false), true, 'released with the lock');
  });

  it('a placeholder still waiting at the grace\'s end stops waiting; one whose lock went before its wait ended is given back', () => {
    const { kernel, nodes: [a, b], nodes } = cluster('a', 'b');
    a.serves.add(V1);
    assert.equal(lock(a, req('x', V1, 20, 2)), 'granted');
    assert.equal(lock(a, req('z', V1, 25, 2)), 'granted');
    a.leave(V1, nodes);
    assert.equal(kernel.set('file-1', 'local/1', 0, 31, false), true);
    assert.deepEqual(b.arrive(V1), { locks: 2, lost: 2 });
    b.table.dropByHost(owner('z').host); // z's host rebooted: its lock went, its wait not yet
    kernel.clear('file-1', 'local/1');
    const grants = kernel.grantWaiters();
    assert.equal(grants.length, 2);
    grants.forEach((g) => g());
    assert.equal(kernel.set('file-1', 'local/2', 25, 26, true), true, "z's range given back");
    assert.equal(kernel.set('file-1', 'local/3', 20, 21, false), false, "x's held for its reclaim");
    kernel.clear('file-1', 'local/2');
    b.table.expireAwaiting(V1);
    assert.equal(kernel.set('file-1', 'local/3', 0, 31, true), true, 'nothing left on the file');

    // At the grace's end a placeholder still waiting stops.
    const c = cluster('a', 'b');
    c.nodes[0]!.serves.add(V1);
    assert.equal(lock(c.nodes[0]!, req('x', V1, 20, 2)), 'granted');
    c.nodes[0]!.leave(V1, c.nodes);
    assert.equal(c.kernel.set('file-1', 'local/1', 0, 31, false), true);
    assert.deepEqual(c.nodes[1]!.arrive(V1), { locks: 1, lost: 1 });
    c.nodes[1]!.table.expireAwaiting(V1);
    c.kernel.clear('file-1', 'local/1');
    assert.equal(c.kernel.grantWaiters().length, 0, 'no wait left');
  });

  it('a reclaim of exactly an awaiting lock asks nothing of the file and writes nothing; any other reclaim takes the general way, merging as before', () => {
    const { kernel, store, nodes: [a, b], nodes, sync } = cluster('a', 'b');
    a.serves.add(V1);
    b.serves.add(V2);
    for (const [offset, length] of [[0, 10], [20, 10], [40, 10], [60, 10]]) assert.equal(lock(a, req('x', V1, offset, length)), 'granted');
    sync();
    a.leave(V1, nodes);
    assert.deepEqual(b.arrive(V1), { locks: 4, lost: 0 });
    // The real (simulated) kernel's calls and the journal's records, counted around each reclaim.
    let kernelCalls = 0;
    const set = kernel.set.bind(kernel);
    kernel.set = (...args) => (kernelCalls++, set(...args));
    const written = (): number => store.logs.get(V1)?.length ?? 0;
    const before = written();

    assert.equal(lock(b, req('x', V1, 40, 10), { reclaim: true }), 'granted', 'exactly an awaiting lock');
    assert.equal(kernelCalls, 0, 'its placeholder already holds the range in x\'s description');
    assert.equal(written(), before, 'the journal already has the entry');
    assert.equal(b.table.reclaimProgress(V1)?.awaiting, 3);
    assert.equal(lock(b, req('y', V2, 40, 10)), 'denied', 'x\'s lock now, not one awaiting reclaim');

    assert.equal(lock(b, req('x', V1, 20, 5), { reclaim: true }), 'granted', 'part of an awaiting lock');
    assert.equal(kernelCalls, 1, 'asked of the file as before');
    assert.equal(b.table.reclaimProgress(V1)?.awaiting, 3, '25-29 still awaits');
    assert.equal(lock(b, req('x', V1, 10, 10), { reclaim: true }), 'granted', 'bytes x did not hold: free, granted in its grace');
    assert.equal(lock(b, req('x', V1, 0, 10), { reclaim: true }), 'granted', 'exactly an awaiting lock, but next to x\'s 10-19');
    assert.equal(lock(b, req('x', V1, 25, 5), { reclaim: true }), 'granted');
    assert.equal(lock(b, req('x', V1, 60, 10, false), { reclaim: true }), 'granted', 'another type than the awaiting lock');
    assert.equal(b.table.reclaimProgress(V1), undefined, 'nothing left to reclaim');
    assert.equal(b.table.grace.active().length, 0, 'the grace ended by itself');
    const ranges = [...b.table.locks({ serverAddress: V1 })].map((l) => `${l.offset}+${l.length}${l.exclusive ? 'w' : 'r'}`).sort();
    assert.deepEqual(ranges, ['0+30w', '40+10w', '60+10r'], 'merged as the general way merges');
    assert.deepEqual(checkIndexes(b.table), []);
  });
});
