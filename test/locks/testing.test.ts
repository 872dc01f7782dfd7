// The lock table's invariant check (src/locks/testing.ts) must see a broken index: elsewhere it
// is only ever asserted to find nothing. The table exposes no way to break itself, so these tests
// reach its private state through a cast (TypeScript's `private` is not enforced at run time);
// `internals` first checks that the fields they touch exist, so a renamed field fails here by name.
import assert from 'node:assert/strict';
import { LockTable, hostKey, type LockOwner, type LockRequest } from '../../src/locks';
import { checkIndexes } from '../../src/locks/testing';

const VIP1 = '10.0.0.5';
const VIP2 = '10.0.0.6';
const A: LockOwner = { host: hostKey('alpha', '192.168.1.10'), svid: 1, oh: Buffer.from('a') };
const B: LockOwner = { host: hostKey('beta', '192.168.1.11'), svid: 2, oh: Buffer.from('b') };
const F1 = Buffer.from('fh-1');
const F2 = Buffer.from('fh-2');
const NB = { block: false, reclaim: false };

const req = (owner: LockOwner, fh: Buffer, offset: number, length: number, serverAddress = VIP1): LockRequest =>
  ({ fh, owner, exclusive: true, offset: BigInt(offset), length: BigInt(length), serverAddress });

/** The private parts of a LockTable's state these tests corrupt. */
interface Internals {
  nLocks: number;
  nBlocked: number;
  F: { head: Int32Array; exclusive: Int32Array };
  L: { fNext: Int32Array; fPrev: Int32Array; hNext: Int32Array };
  H: { head: Int32Array };
  addrs: Map<string, { count: number; hosts: Map<number, { refs: number }> }>;
  hosts: Map<string, { owners: number; shares: Set<unknown> }>;
  ownerBlocks: Map<number, unknown[]>;
}

function internals(t: LockTable): Internals {
  // The parts of the table share one state object (src/locks/state.ts), its field `st`.
  const x = (t as unknown as { st: Internals }).st;
  assert.ok(x !== undefined, 'LockTable has no field st: update this test');
  for (const k of ['nLocks', 'nBlocked', 'F', 'L', 'H', 'addrs', 'hosts', 'ownerBlocks'] as const) assert.ok(k in x, `LockState has no field ${k}: update this test`);
  for (const k of ['head', 'exclusive'] as const) assert.ok(x.F[k] instanceof Int32Array, `FileRecords.${k}`);
  for (const k of ['fNext', 'fPrev', 'hNext'] as const) assert.ok(x.L[k] instanceof Int32Array, `LockRecords.${k}`);
  return x;
}

/**
 * A small table with something in every index: A holds two ranges of F1 through VIP1 and one of
 * F2 through VIP2, B waits for F1 and shares F2.
 */
function table(): LockTable {
  const t = new LockTable({ now: () => 1_000_000, onBlockGranted: () => {} });
  assert.equal(t.lock(req(A, F1, 0, 10), NB), 'granted');
  assert.equal(t.lock(req(A, F1, 20, 10), NB), 'granted');
  assert.equal(t.lock(req(A, F2, 0, 1, VIP2), NB), 'granted');
  assert.equal(t.lock(req(B, F1, 0, 5), { block: true, reclaim: false, waiter: () => undefined }), 'blocked');
  assert.equal(t.share({ fh: F2, owner: { host: B.host, oh: B.oh }, mode: 0, access: 1, serverAddress: VIP2 }, false), 'granted');
  assert.deepEqual(checkIndexes(t), [], 'the table starts consistent');
  return t;
}

/** The file id of F1, the one file with two locks on its list. */
function twoLockFile(x: Internals): number {
  const f = x.F.head.findIndex((l, i) => i > 0 && l !== 0 && x.L.fNext[l] !== 0);
  assert.ok(f > 0, 'a file with two locks');
  return f;
}

describe('locks: checkIndexes sees a corrupted table', () => {
  const cases: [string, (x: Internals) => void, RegExp][] = [
    ['the lock count off by one', (x) => void (x.nLocks += 1), /^nLocks 4 \(records 3\) != 3$/],
    ['the blocked count off by one', (x) => void (x.nBlocked -= 1), /^nBlocked 0 != 1$/],
    ['a file\'s exclusive count wrong', (x) => void (x.F.exclusive[twoLockFile(x)] += 1), /^file exclusive count 3, rescan 2$/],
    ['a file\'s lock list with a broken back link', (x) => {
      const head = x.F.head[twoLockFile(x)]!;
      x.L.fPrev[x.L.fNext[head]!] = 0;
    }, /^broken file links$/],
    ['a lock dropped from its holder\'s list', (x) => {
      const hd = x.H.head.findIndex((l, i) => i > 0 && l !== 0 && x.L.hNext[l] !== 0);
      x.H.head[hd] = x.L.hNext[x.H.head[hd]!]!;
    }, /^holder list 1, rescan 2$/],
    ['an address\'s lock count wrong', (x) => void (x.addrs.get(VIP1)!.count -= 1), /^address 10\.0\.0\.5 count 1, rescan 2$/],
    ['an address\'s references of a host wrong', (x) => {
      const [at] = x.addrs.get(VIP2)!.hosts.values();
      at!.refs += 1;
    }, /^address 10\.0\.0\.6 host refs \d+, rescan \d+$/],
    ['a host missing from the host index', (x) => void x.hosts.delete(A.host), /^owner under an unindexed host$/],
    ['a host\'s share forgotten', (x) => x.hosts.get(B.host)!.shares.clear(), /^share missing from an index$/],
    ['a queued request missing from its owner\'s queue', (x) => {
      for (const q of x.ownerBlocks.values()) q.length = 0;
    }, /^block missing from an index$/],
  ];
  for (const [what, corrupt, expected] of cases) {
    it(what, () => {
      const t = table();
      corrupt(internals(t));
      const errs = checkIndexes(t);
      assert.ok(errs.some((e) => expected.test(e)), `expected ${expected} among ${JSON.stringify(errs)}`);
    });
  }
});
