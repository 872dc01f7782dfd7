import assert from 'node:assert/strict';
import { LockTable, OFFSET_MAX, hostKey } from '../../src/locks';
import type { BlockGranted, LockChange, LockOwner, LockRequest, ShareRequest } from '../../src/locks';
import { checkIndexes } from '../../src/locks/testing';

const VIP1 = '10.0.0.5';
const VIP2 = '10.0.0.6';
const A: LockOwner = { host: hostKey('alpha', '192.168.1.10'), svid: 100, oh: Buffer.from('alpha-100') };
const B: LockOwner = { host: hostKey('beta', '192.168.1.11'), svid: 200, oh: Buffer.from('beta-200') };
const C: LockOwner = { host: hostKey('gamma', '192.168.1.12'), svid: 300, oh: Buffer.from('gamma-300') };
const F1 = Buffer.from('fh-0001');
const F2 = Buffer.from('fh-0002');

function req(owner: LockOwner, offset: number | bigint, length: number | bigint, exclusive = true, extra: Partial<LockRequest> = {}): LockRequest {
  return { fh: F1, owner, exclusive, offset: BigInt(offset), length: BigInt(length), serverAddress: VIP1, ...extra };
}
const NB = { block: false, reclaim: false };
const BL = (waiter?: unknown) => ({ block: true, reclaim: false, waiter: () => waiter });

function setup(opts: { exportOf?: (fh: Buffer) => string | undefined } = {}) {
  let clock = 1_000_000;
  const granted: BlockGranted[] = [];
  const t = new LockTable({ now: () => clock, onBlockGranted: (g) => granted.push(g), ...opts });
  return { t, granted, advance: (ms: number) => (clock += ms) };
}

/** Compact view of the table: "svid:offset+length:S|X@address" sorted. */
function view(t: LockTable, filter?: Parameters<LockTable['locks']>[0]): string[] {
  return [...t.locks(filter)]
    .map((l) => `${l.owner.svid}:${l.offset}+${l.length}:${l.exclusive ? 'X' : 'S'}@${l.serverAddress}`)
    .sort();
}

function consistent(t: LockTable): void {
  assert.deepEqual(checkIndexes(t), []);
}

describe('locks: POSIX byte ranges', () => {
  it('merges an owner’s overlapping and adjacent locks of the same type', () => {
    const { t } = setup();
    assert.equal(t.lock(req(A, 0, 10), NB), 'granted');
    assert.equal(t.lock(req(A, 10, 10), NB), 'granted');
    assert.equal(t.lock(req(A, 25, 5), NB), 'granted');
    assert.deepEqual(view(t), [`100:0+20:X@${VIP1}`, `100:25+5:X@${VIP1}`]);
    assert.equal(t.lock(req(A, 15, 12), NB), 'granted');
    assert.deepEqual(view(t), [`100:0+30:X@${VIP1}`]);
    consistent(t);
  });

  it('does not merge locks of one owner taken through different server addresses', () => {
    const { t } = setup();
    t.lock(req(A, 0, 10), NB);
    t.lock(req(A, 10, 10, true, { serverAddress: VIP2 }), NB);
    assert.deepEqual(view(t), [`100:0+10:X@${VIP1}`, `100:10+10:X@${VIP2}`]);
    // Re-locking part of it through the other address moves that part.
    t.lock(req(A, 5, 10, true, { serverAddress: VIP2 }), NB);
    assert.deepEqual(view(t), [`100:0+5:X@${VIP1}`, `100:5+15:X@${VIP2}`]);
    consistent(t);
  });

  it('upgrades and downgrades part of a range, splitting as POSIX does', () => {
    const { t } = setup();
    t.lock(req(A, 0, 100, false), NB);
    assert.equal(t.lock(req(A, 40, 20, true), NB), 'granted');
    assert.deepEqual(view(t), [`100:0+40:S@${VIP1}`, `100:40+20:X@${VIP1}`, `100:60+40:S@${VIP1}`]);
    assert.equal(t.lock(req(A, 40, 20, false), NB), 'granted');
    assert.deepEqual(view(t), [`100:0+100:S@${VIP1}`]);
    // An upgrade is refused while another owner shares the range.
    t.lock(req(B, 50, 1, false), NB);
    assert.equal(t.lock(req(A, 0, 100, true), NB), 'denied');
    assert.deepEqual(view(t), [`100:0+100:S@${VIP1}`, `200:50+1:S@${VIP1}`]);
    consistent(t);
  });

  it('unlocking the middle splits a lock in two; unlocking nothing is granted', () => {
    const { t } = setup();
    t.lock(req(A, 0, 100), NB);
    assert.equal(t.unlock(req(A, 30, 10)), 'granted');
    assert.deepEqual(view(t), [`100:0+30:X@${VIP1}`, `100:40+60:X@${VIP1}`]);
    assert.equal(t.unlock(req(A, 500, 10)), 'granted');
    assert.equal(t.unlock(req(B, 0, 0)), 'granted');
    assert.equal(view(t).length, 2);
    assert.equal(t.unlock(req(A, 0, 0)), 'granted');
    assert.deepEqual(view(t), []);
    assert.equal(t.stats().locks, 0);
    consistent(t);
  });

  it('treats length 0 as to end of file', () => {
    const { t } = setup();
    t.lock(req(A, 10, 0), NB);
    assert.equal(t.lock(req(B, 1_000_000_000_000, 1), NB), 'denied');
    assert.equal(t.lock(req(B, 0, 10), NB), 'granted');
    t.unlock(req(A, 20, 0));
    assert.deepEqual(view(t), [`100:10+10:X@${VIP1}`, `200:0+10:X@${VIP1}`]);
    // A range ending exactly at OFFSET_MAX is the same as "to EOF".
    t.lock(req(A, 100, OFFSET_MAX - 99n), NB);
    assert.ok(view(t).includes(`100:100+0:X@${VIP1}`));
    consistent(t);
  });

  it("answers fbig for ranges past OFFSET_MAX (Linux's signed loff_t), in every procedure", () => {
    const { t } = setup();
    const over = [
      [1n << 63n, 1n],
      [OFFSET_MAX, 2n],
      [0n, (1n << 63n) + 1n],
      [(1n << 64n) - 1n, 0n],
    ] as const;
    for (const [o, l] of over) {
      assert.equal(t.lock(req(A, o, l), NB), 'fbig', `${o}+${l}`);
      assert.deepEqual(t.test(req(A, o, l)), { status: 'fbig' });
      assert.equal(t.unlock(req(A, o, l)), 'fbig');
      assert.equal(t.cancel(req(A, o, l)), 'fbig');
    }
    assert.equal(t.lock(req(A, OFFSET_MAX, 1n), NB), 'granted');
    assert.equal(t.lock(req(B, 0n, 1n << 63n), NB), 'denied');
    assert.deepEqual(view(t), [`100:${OFFSET_MAX}+0:X@${VIP1}`]);
    consistent(t);
  });

  it('handles offsets beyond 2^53 exactly (split and merge across the boundary)', () => {
    const { t } = setup();
    const base = (1n << 53n) - 3n;
    t.lock(req(A, base, 10n), NB);
    t.unlock(req(A, base + 3n, 1n)); // unlock exactly 2^53
    assert.deepEqual(view(t), [`100:${base}+3:X@${VIP1}`, `100:${base + 4n}+6:X@${VIP1}`]);
    assert.equal(t.lock(req(B, base + 3n, 1n), NB), 'granted');
    assert.equal(t.lock(req(B, base + 2n, 1n), NB), 'denied');
    t.unlock(req(B, 0, 0));
    t.lock(req(A, base + 3n, 1n), NB);
    assert.deepEqual(view(t), [`100:${base}+10:X@${VIP1}`]);
    // start + length rounds in a double here; the range must still end exactly at 2^53.
    t.lock(req(C, (1n << 53n) - 3n, 4n, false, { fh: F2 }), NB);
    assert.ok(view(t).includes(`300:${(1n << 53n) - 3n}+4:S@${VIP1}`));
    const hi = 1n << 62n;
    t.lock(req(A, hi, 100n, false), NB);
    t.lock(req(A, hi + 100n, 0n, false), NB);
    assert.ok(view(t).includes(`100:${hi}+0:S@${VIP1}`));
    assert.equal(t.test(req(B, hi + 50n, 1n)).status, 'denied');
    assert.equal(t.test(req(B, hi + 50n, 1n, false)).status, 'granted');
    consistent(t);
  });
});

describe('locks: TEST', () => {
  it('answers the conflicting holder exactly', () => {
    const { t } = setup({ exportOf: () => '/export/a' });
    t.lock(req(A, 100, 50, true), NB);
    t.lock(req(B, 10, 5, false), NB);
    const r = t.test(req(C, 0, 200, true));
    assert.equal(r.status, 'denied');
    if (r.status !== 'denied') return;
    // The conflicting lock with the lowest offset.
    assert.equal(r.holder.exclusive, false);
    assert.equal(r.holder.owner.svid, 200);
    assert.deepEqual(r.holder.owner.oh, B.oh);
    assert.equal(r.holder.owner.host, B.host);
    assert.equal(r.holder.offset, 10n);
    assert.equal(r.holder.length, 5n);
    assert.equal(r.holder.serverAddress, VIP1);
    assert.equal(r.holder.exportId, '/export/a');
    assert.deepEqual(r.holder.fh, F1);
    const r2 = t.test(req(C, 0, 200, false));
    assert.equal(r2.status === 'denied' && r2.holder.offset, 100n);
    const r3 = t.test(req(A, 0, 0, true));
    assert.equal(r3.status === 'denied' && `${r3.holder.owner.svid} ${r3.holder.offset}+${r3.holder.length}`, '200 10+5', 'A conflicts with B only');
    assert.deepEqual(t.test(req(B, 100, 1, false)).status, 'denied');
    assert.deepEqual(t.test(req(A, 100, 50, true)), { status: 'granted' }, 'own locks never conflict');
    assert.deepEqual(t.test(req(C, 0, 10)), { status: 'granted' });
  });
});

describe('locks: blocking queue and deadlock', () => {
  it('queues in arrival order and grants every grantable waiter when the conflict clears', () => {
    const { t, granted } = setup();
    t.lock(req(A, 0, 100), NB);
    assert.equal(t.lock(req(B, 0, 10), NB), 'denied');
    assert.equal(t.lock(req(B, 0, 10), BL('b1')), 'blocked');
    assert.equal(t.lock(req(C, 5, 10, false), BL('c1')), 'blocked');
    assert.equal(t.lock(req(C, 50, 10, false, { fh: F1, serverAddress: VIP2 }), BL('c2')), 'blocked');
    assert.equal(t.stats().blocked, 3);
    t.unlock(req(A, 0, 20));
    // b1 first (arrival order); c1 then conflicts with b1; c2 still conflicts with A.
    assert.deepEqual(granted.map((g) => g.waiter), ['b1']);
    assert.equal(granted[0].lock.offset, 0n);
    assert.equal(granted[0].lock.length, 10n);
    t.unlock(req(B, 0, 0));
    assert.deepEqual(granted.map((g) => g.waiter), ['b1', 'c1']);
    t.unlock(req(A, 0, 0));
    assert.deepEqual(granted.map((g) => g.waiter), ['b1', 'c1', 'c2']);
    assert.equal(granted[2].lock.serverAddress, VIP2);
    assert.deepEqual(view(t), [`300:5+10:S@${VIP1}`, `300:50+10:S@${VIP2}`]);
    assert.equal(t.stats().blocked, 0);
    consistent(t);
  });

  it('does not queue a retransmitted blocking request twice; CANCEL removes it', () => {
    const { t, granted } = setup();
    t.lock(req(A, 0, 10), NB);
    assert.equal(t.lock(req(B, 0, 10), BL('first')), 'blocked');
    assert.equal(t.lock(req(B, 0, 10), BL('retransmit')), 'blocked');
    assert.equal(t.stats().blocked, 1);
    assert.equal(t.cancel(req(B, 0, 10, false)), 'denied', 'type must match');
    assert.equal(t.cancel(req(C, 0, 10)), 'denied');
    assert.equal(t.cancel(req(B, 0, 10)), 'granted');
    assert.equal(t.cancel(req(B, 0, 10)), 'denied');
    t.unlock(req(A, 0, 10));
    assert.deepEqual(granted, []);
    assert.deepEqual(view(t), []);
    consistent(t);
  });

  it('a downgrade wakes shared waiters', () => {
    const { t, granted } = setup();
    t.lock(req(A, 0, 10, true), NB);
    t.lock(req(B, 0, 10, false), BL('b'));
    t.lock(req(A, 0, 10, false), NB);
    assert.deepEqual(granted.map((g) => g.waiter), ['b']);
    consistent(t);
  });

  it('answers deadlck when a request would close a wait-for cycle', () => {
    const { t } = setup();
    t.lock(req(A, 0, 10, true, { fh: F1 }), NB);
    t.lock(req(B, 0, 10, true, { fh: F2 }), NB);
    t.lock(req(C, 20, 10, true, { fh: F2 }), NB);
    assert.equal(t.lock(req(A, 0, 10, true, { fh: F2 }), BL()), 'blocked'); // A waits for B
    assert.equal(t.lock(req(B, 0, 10, true, { fh: F1 }), BL()), 'deadlck'); // B -> A -> B
    assert.equal(t.lock(req(B, 0, 10, true, { fh: F1 }), NB), 'denied');
    // Three owners: C waits for A (who waits for B); B asking for C's range closes B->C->A->B.
    assert.equal(t.lock(req(C, 5, 1, true, { fh: F1 }), BL()), 'blocked');
    assert.equal(t.lock(req(B, 20, 1, true, { fh: F2 }), BL()), 'deadlck');
    assert.equal(t.stats().blocked, 2);
    consistent(t);
  });

  it('grants queued waiters before the releasing call returns, and survives a callback that calls back in', () => {
    let t!: LockTable;
    const seen: string[] = [];
    t = new LockTable({
      onBlockGranted: (g) => {
        seen.push(String(g.waiter));
        if (g.waiter === 'b') t.unlock(req(B, 0, 0)); // the client gives it back at once
      },
    });
    t.lock(req(A, 0, 10), NB);
    t.lock(req(B, 0, 10), BL('b'));
    t.lock(req(C, 0, 10), BL('c'));
    t.unlock(req(A, 0, 10));
    assert.deepEqual(seen, ['b', 'c']);
    assert.deepEqual(view(t), [`300:0+10:X@${VIP1}`]);
    consistent(t);
  });
});

describe('locks: undoing an unconfirmed grant', () => {
  // Issue 21 item 1: B's two queued requests [0,100) and [50,150) are both granted when A lets go;
  // undoing the first (its CANCEL, or a refused GRANTED) must not take [50,100) that the second
  // gave, or B confirms [50,150) while the server holds only [100,150) and C gets [50,100).
  function twoGrants(bHolds?: 'shared'): { t: LockTable; granted: BlockGranted[] } {
    const { t, granted } = setup();
    assert.equal(t.lock(req(A, 0, 150, bHolds !== 'shared'), NB), 'granted');
    if (bHolds) assert.equal(t.lock(req(B, 0, 150, false), NB), 'granted');
    assert.equal(t.lock(req(B, 0, 100), BL('first')), 'blocked');
    assert.equal(t.lock(req(B, 50, 100), BL('second')), 'blocked');
    t.unlock(req(A, 0, 150));
    assert.deepEqual(granted.map((g) => g.waiter), ['first', 'second']);
    assert.deepEqual(view(t), [`200:0+150:X@${VIP1}`]);
    return { t, granted };
  }

  it('undoing the first leaves what the second grant gave', () => {
    const { t, granted } = twoGrants();
    t.undoGrant(granted[0]);
    assert.deepEqual(view(t), [`200:50+100:X@${VIP1}`]);
    assert.equal(t.lock(req(C, 50, 50), NB), 'denied', 'C cannot take bytes B was granted');
    consistent(t);
    // Undoing the second as well restores what B held before it: nothing (the first is gone).
    t.undoGrant(granted[1]);
    assert.deepEqual(view(t), []);
    consistent(t);
  });

  it('undoing the second first, then the first, ends where B started', () => {
    const { t, granted } = twoGrants();
    t.undoGrant(granted[1]);
    assert.deepEqual(view(t), [`200:0+100:X@${VIP1}`]);
    t.undoGrant(granted[0]);
    assert.deepEqual(view(t), []);
    consistent(t);
  });

  it('upgrades: each undo falls back to the shared lock B held before both', () => {
    const { t, granted } = twoGrants('shared');
    t.undoGrant(granted[0]);
    assert.deepEqual(view(t), [`200:0+50:S@${VIP1}`, `200:50+100:X@${VIP1}`]);
    t.undoGrant(granted[1]);
    assert.deepEqual(view(t), [`200:0+150:S@${VIP1}`]);
    consistent(t);
  });

  it('keeps a bounded log: an old grant is no longer taken back, a recent one still is', () => {
    const { t, granted } = setup();
    for (let i = 0; i < 40; i++) {
      assert.equal(t.lock(req(A, i, 1), NB), 'granted');
      assert.equal(t.lock(req(B, i, 1), BL(i)), 'blocked');
      t.unlock(req(A, i, 1));
    }
    assert.equal(granted.length, 40);
    assert.deepEqual(view(t), [`200:0+40:X@${VIP1}`]);
    const log = (t as unknown as { st: { grants: Map<number, unknown[]> } }).st.grants;
    assert.ok([...log.values()].every((l) => l.length <= 16), 'at most 16 grants kept per owner');
    t.undoGrant(granted[0]);
    assert.deepEqual(view(t), [`200:0+40:X@${VIP1}`], 'the oldest grant is kept, as Linux keeps every grant');
    t.undoGrant(granted[39]);
    assert.deepEqual(view(t), [`200:0+39:X@${VIP1}`]);
    t.unlock(req(B, 0, 0));
    assert.equal(log.size, 0, 'the log goes with the owner');
    consistent(t);
  });
});

describe('locks: shares', () => {
  const sh = (owner: LockOwner, mode: 0 | 1 | 2 | 3, access: 0 | 1 | 2 | 3, extra: Partial<ShareRequest> = {}): ShareRequest => ({
    fh: F1,
    owner: { host: owner.host, oh: owner.oh },
    mode,
    access,
    serverAddress: VIP1,
    ...extra,
  });
  it('conflicts when one’s access meets the other’s deny mode', () => {
    const { t } = setup();
    assert.equal(t.share(sh(A, 2, 1), false), 'granted'); // deny write, read
    assert.equal(t.share(sh(B, 0, 1), false), 'granted'); // read: fine
    assert.equal(t.share(sh(C, 0, 2), false), 'denied'); // write meets A's deny-write
    assert.equal(t.share(sh(C, 1, 2), false), 'denied'); // deny-read meets reads
    assert.equal(t.share(sh(C, 0, 0), false), 'granted');
    // The same (host, oh) replaces its own reservation.
    assert.equal(t.share(sh(A, 0, 1), false), 'granted');
    assert.equal(t.stats().shares, 3);
    assert.equal(t.share(sh(C, 0, 2), false), 'granted');
    assert.equal(t.unshare(sh(C, 0, 2)), 'granted');
    assert.equal(t.unshare(sh(C, 0, 2)), 'granted');
    assert.equal(t.stats().shares, 2);
    assert.equal([...t.shares()].length, 2);
    consistent(t);
  });
});

describe('locks: drops', () => {
  it('dropByServerAddress releases locks, shares and blocks of that address and wakes waiters of others', () => {
    const { t, granted } = setup();
    t.lock(req(A, 0, 10), NB);
    t.lock(req(A, 0, 10, true, { fh: F2 }), NB);
    t.lock(req(B, 50, 10, true, { serverAddress: VIP2 }), NB);
    t.lock(req(B, 0, 10, true, { serverAddress: VIP2 }), BL('b-via-vip2'));
    t.lock(req(C, 50, 10, true), BL('c-via-vip1'));
    t.share({ fh: F1, owner: { host: C.host, oh: C.oh }, mode: 0, access: 1, serverAddress: VIP1 }, false);
    assert.deepEqual([...t.hostsAt(VIP1)].sort(), [A.host, C.host].sort());
    assert.deepEqual([...t.hostsAt(VIP2)], [B.host]);
    const counts = t.dropByServerAddress(VIP1);
    assert.deepEqual(counts, { locks: 2, shares: 1, blocked: 1, clients: 2, woken: 1 });
    assert.deepEqual(granted.map((g) => g.waiter), ['b-via-vip2']);
    assert.deepEqual(view(t), [`200:0+10:X@${VIP2}`, `200:50+10:X@${VIP2}`]);
    assert.deepEqual([...t.hostsAt(VIP1)], []);
    assert.deepEqual(t.dropByServerAddress(VIP1), { locks: 0, shares: 0, blocked: 0, clients: 0, woken: 0 });
    assert.equal(t.stats().byAddress.has(VIP1), false);
    consistent(t);
  });

  it('dropByHost and freeAll release one host only (a same-named host elsewhere is another host)', () => {
    const { t, granted } = setup();
    const spoof: LockOwner = { host: hostKey('alpha', '192.168.1.99'), svid: 100, oh: A.oh };
    t.lock(req(A, 0, 10), NB);
    t.lock(req({ ...A, svid: 101 }, 20, 10), NB);
    t.lock(req(B, 0, 10), BL('b'));
    assert.equal(t.unlock(req(spoof, 0, 0)), 'granted');
    assert.equal(t.freeAll(spoof.host).locks, 0);
    assert.equal(view(t).length, 2);
    assert.deepEqual(t.dropByHost(A.host), { locks: 2, shares: 0, blocked: 0, clients: 1, woken: 1 });
    assert.deepEqual(granted.map((g) => g.waiter), ['b']);
    t.lock(req(C, 0, 10), BL('c'));
    assert.deepEqual(t.freeAll(B.host), { locks: 1, shares: 0, blocked: 0, clients: 1, woken: 1 });
    assert.deepEqual(view(t), [`300:0+10:X@${VIP1}`]);
    consistent(t);
  });

  it('dropByExport releases the files of one export', () => {
    const { t, granted } = setup({ exportOf: (fh) => (fh.equals(F1) ? '/a' : '/b') });
    t.lock(req(A, 0, 10, true, { fh: F1 }), NB);
    t.lock(req(A, 0, 10, true, { fh: F2 }), NB);
    t.lock(req(B, 0, 10, true, { fh: F1 }), BL('b1'));
    t.lock(req(B, 0, 10, true, { fh: F2 }), BL('b2'));
    assert.deepEqual(view(t, { exportId: '/a' }), [`100:0+10:X@${VIP1}`]);
    assert.deepEqual(t.dropByExport('/a'), { locks: 1, shares: 0, blocked: 1, clients: 2, woken: 0 });
    assert.deepEqual(granted, []);
    assert.deepEqual([...t.locks()].map((l) => l.exportId), ['/b']);
    assert.equal(t.stats().blocked, 1);
    consistent(t);
  });

  it('locks(filter) and stats() follow the indexes', () => {
    const { t } = setup();
    t.lock(req(A, 0, 10), NB);
    t.lock(req(B, 20, 10, true, { serverAddress: VIP2 }), NB);
    t.lock(req(C, 40, 10, true, { serverAddress: VIP2 }), NB);
    assert.equal(view(t, { serverAddress: VIP2 }).length, 2);
    assert.equal(view(t, { host: A.host }).length, 1);
    assert.equal(view(t, { serverAddress: VIP2, host: A.host }).length, 0);
    const s = t.stats();
    assert.equal(s.locks, 3);
    assert.deepEqual(s.byAddress.get(VIP2), { locks: 2, hosts: 2 });
  });
});

describe('locks: grace', () => {
  it('an address grace refuses non-reclaims there and not elsewhere; reclaims pass inside it', () => {
    const { t } = setup();
    t.grace.start({ kind: 'address', address: VIP1 }, 50);
    assert.equal(t.lock(req(A, 0, 10), NB), 'denied_grace_period');
    assert.equal(t.lock(req(A, 0, 10), { block: false, reclaim: true }), 'granted');
    assert.equal(t.lock(req(B, 0, 10, true, { serverAddress: VIP2 }), NB), 'denied');
    assert.equal(t.lock(req(B, 20, 10, true, { serverAddress: VIP2 }), NB), 'granted');
    assert.deepEqual(t.test(req(C, 0, 10)), { status: 'denied_grace_period' });
    assert.equal(t.test(req(C, 0, 10, true, { serverAddress: VIP2 })).status, 'denied');
    // UNLOCK and CANCEL work during grace.
    assert.equal(t.unlock(req(A, 0, 10)), 'granted');
    assert.equal(view(t).length, 1);
  });

  it('refuses a late reclaim; grace ends by time and early', () => {
    const { t, advance } = setup();
    assert.equal(t.lock(req(A, 0, 10), { block: false, reclaim: true }), 'denied_grace_period');
    const p = t.grace.start({ kind: 'address', address: VIP1 }, 50);
    assert.equal(p.endsAt - p.startedAt, 50_000);
    advance(49_999);
    assert.equal(t.grace.covers(VIP1), true);
    advance(1);
    assert.equal(t.grace.covers(VIP1), false);
    assert.equal(t.lock(req(A, 0, 10), { block: false, reclaim: true }), 'denied_grace_period');
    assert.equal(t.lock(req(A, 0, 10), NB), 'granted');
    t.grace.start({ kind: 'global' }, 90);
    assert.equal(t.lock(req(B, 20, 10, true, { serverAddress: VIP2 }), NB), 'denied_grace_period');
    assert.equal(t.grace.active().length, 1);
    assert.equal(t.grace.end({ kind: 'global' }), true);
    assert.equal(t.grace.end({ kind: 'global' }), false);
    assert.equal(t.lock(req(B, 20, 10, true, { serverAddress: VIP2 }), NB), 'granted');
  });

  it('an export grace covers that export only; shares obey grace too', () => {
    const { t } = setup({ exportOf: (fh) => (fh.equals(F1) ? '/a' : '/b') });
    t.grace.start({ kind: 'export', exportId: '/a' }, 10);
    assert.equal(t.lock(req(A, 0, 10, true, { fh: F1 }), NB), 'denied_grace_period');
    assert.equal(t.lock(req(A, 0, 10, true, { fh: F2 }), NB), 'granted');
    const share = { fh: F1, owner: { host: A.host, oh: A.oh }, mode: 0 as const, access: 1 as const, serverAddress: VIP1 };
    assert.equal(t.share(share, false), 'denied_grace_period');
    assert.equal(t.share(share, true), 'granted');
    // Unlike LOCK, a SHARE reclaim outside grace is taken (Linux checks only non-reclaims).
    assert.equal(t.share({ ...share, fh: F2 }, true), 'granted');
    consistent(t);
  });
});

describe('locks: draining', () => {
  it('refuses new locks and shares through a draining address with denied_nolocks, keeping held ones', () => {
    const { t } = setup();
    t.lock(req(A, 0, 10), NB);
    t.setDraining(VIP1, true);
    assert.equal(t.isDraining(VIP1), true);
    assert.equal(t.lock(req(B, 20, 10), NB), 'denied_nolocks');
    assert.equal(t.lock(req(B, 20, 10), BL()), 'denied_nolocks');
    assert.equal(t.share({ fh: F1, owner: { host: B.host, oh: B.oh }, mode: 0, access: 1, serverAddress: VIP1 }, false), 'denied_nolocks');
    assert.equal(t.lock(req(B, 20, 10, true, { serverAddress: VIP2 }), NB), 'granted');
    assert.equal(t.test(req(B, 0, 10)).status, 'denied');
    assert.deepEqual(view(t), [`100:0+10:X@${VIP1}`, `200:20+10:X@${VIP2}`]);
    t.setDraining(VIP1, false);
    assert.equal(t.lock(req(C, 40, 10), NB), 'granted');
    consistent(t);
  });
});

describe('locks: changes', () => {
  it('publishes granted, released, blocked, dropped and grace', () => {
    const { t } = setup();
    const seen: LockChange[] = [];
    const sub = t.changes.subscribe((c) => seen.push(c));
    t.lock(req(A, 0, 10), NB);
    t.lock(req(B, 0, 10, true, { serverAddress: VIP2 }), BL('b'));
    t.unlock(req(A, 0, 5));
    t.dropByServerAddress(VIP1);
    t.grace.start({ kind: 'address', address: VIP1 }, 1);
    t.grace.end({ kind: 'address', address: VIP1 });
    const types = seen.map((c) => c.type + (c.type === 'granted' ? (c.viaBlock ? '/block' : '') : c.type === 'grace' ? `/${c.state}` : ''));
    assert.deepEqual(types, ['granted', 'blocked', 'released', 'released', 'granted/block', 'dropped', 'grace/started', 'grace/ended']);
    const rel = seen[2];
    assert.ok(rel.type === 'released' && rel.lock.offset === 0n && rel.lock.length === 5n);
    const dropped = seen[5];
    assert.ok(dropped.type === 'dropped' && dropped.reason === 'address' && dropped.key === VIP1 && dropped.counts.woken === 1);
    sub.unsubscribe();
    t.unlock(req(B, 0, 0));
    assert.equal(seen.length, 8);
  });

  it('builds no event when nobody listens', () => {
    const { t } = setup();
    // Every event's lock is built by the table state's heldOf (src/locks/state.ts).
    const spy = (t as unknown as { st: { heldOf: (...a: unknown[]) => unknown } }).st;
    const real = spy.heldOf.bind(spy);
    let built = 0;
    spy.heldOf = (...a: unknown[]) => (built++, real(...a));
    t.lock(req(A, 0, 10), NB);
    t.lock(req(A, 20, 10), NB);
    t.unlock(req(A, 0, 5));
    t.dropByServerAddress(VIP1);
    assert.equal(built, 0);
    const sub = t.changes.subscribe(() => {});
    t.lock(req(A, 0, 10), NB);
    assert.equal(built, 1);
    sub.unsubscribe();
  });

  it('announces the end of a grace period on time, without being asked', async () => {
    const t = new LockTable();
    const states: string[] = [];
    t.changes.subscribe((c) => c.type === 'grace' && states.push(c.state));
    t.grace.start({ kind: 'address', address: VIP1 }, 0.03);
    assert.deepEqual(states, ['started']);
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(states, ['started', 'ended']);
    assert.deepEqual(t.grace.active(), []);
  });
});
