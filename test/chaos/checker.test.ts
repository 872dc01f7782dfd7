// The chaos checker on hand-written logs: what it must catch, and what it must let pass.
import assert from 'node:assert/strict';
import { check, compareViews, conflictsWithin, describe as describeViolation, describeLoss, parseKernelLocks, windowStats, type ChaosEvent, type RangeLock } from './checker';

const R: RangeLock = { file: 'f0', offset: 0, length: 100, exclusive: true };
const shared = (l: RangeLock): RangeLock => ({ ...l, exclusive: false });
const ms = (n: number): number => n * 1000;

const granted = (t: number, owner: string, via: string, lock = R): ChaosEvent => ({ t: ms(t), kind: 'granted', owner, via, lock, how: 'reply' });
const released = (t: number, owner: string, via: string, lock = R): ChaosEvent => ({ t: ms(t), kind: 'released', owner, via, lock });
const disrupt = (t: number, via: string): ChaosEvent => ({ t: ms(t), kind: 'disrupt', via, what: 'move' });
const reclaim = (t: number, owner: string, via: string, ok: boolean, sent = t - 1, lock = R): ChaosEvent =>
  ({ t: ms(t), kind: ok ? 'reclaim_ok' : 'reclaim_refused', owner, via, lock, sent: ms(sent), status: ok ? 'granted' : 'denied' });
const protectedAt = (t: number, via: string): ChaosEvent => ({ t: ms(t), kind: 'protected', via, what: 'n2' });
const localGrant = (t: number, name: string, sent = t, lock = R): ChaosEvent => ({ t: ms(t), kind: 'granted', owner: `local:${name}`, via: 'local', lock, sent: ms(sent), how: 'reply' });

describe('chaos checker', () => {
  it('catches two owners holding overlapping exclusive locks at once, and how long', () => {
    const r = check([granted(0, 'x/1', 'V1'), granted(10, 'y/1', 'V2', { ...R, offset: 50 }), released(30, 'x/1', 'V1'), released(40, 'y/1', 'V2', { ...R, offset: 50 })]);
    assert.equal(r.violations.length, 1);
    const v = r.violations[0]!;
    assert.equal(v.kind, 'overlap');
    if (v.kind !== 'overlap') return;
    assert.deepEqual([v.a.owner, v.b.owner, v.us], ['x/1', 'y/1', ms(20)]);
    assert.match(describeViolation(v), /two holders .* x\/1 via V1 .* y\/1 via V2/);
  });

  it('lets shared locks overlap, and one owner never conflicts with itself', () => {
    const r = check([
      granted(0, 'x/1', 'V1', shared(R)), granted(1, 'y/1', 'V2', shared(R)), released(2, 'y/1', 'V2', shared(R)),
      granted(3, 'x/1', 'V1', { ...R, offset: 10 }), released(5, 'x/1', 'V1', shared(R)), released(7, 'x/1', 'V1', { ...R, offset: 10 }),
    ]);
    assert.deepEqual(r.violations, []);
    assert.equal(r.counts.granted, 3);
  });

  it('passes a lock released before (or at the same instant as) another owner is granted it', () => {
    const r = check([granted(0, 'x/1', 'V1'), released(10, 'x/1', 'V1'), granted(10, 'y/1', 'V2'), released(20, 'y/1', 'V2'), granted(21, 'z/1', 'V1')]);
    assert.deepEqual(r.violations, []);
    assert.equal(r.open.length, 1);
  });

  it('catches a lost reclaim and names who took the range, with the overlap it made', () => {
    // X holds R through V1; V1 moves; Y (through V2) is granted R; X's reclaim is refused.
    const r = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), granted(6, 'y/1', 'V2'), { t: ms(7), kind: 'notify', owner: 'x', via: 'V1' }, reclaim(8, 'x/1', 'V1', false)]);
    const refused = r.violations.find((v) => v.kind === 'reclaim_refused');
    assert.ok(refused && refused.kind === 'reclaim_refused');
    assert.equal(refused.hold.owner, 'x/1');
    assert.deepEqual(refused.heldBy.map((h) => h.owner), ['y/1']);
    assert.match(describeViolation(refused), /reclaim refused \(denied\).*held by y\/1 via V2/);
    const overlap = r.violations.find((v) => v.kind === 'overlap');
    assert.ok(overlap && overlap.kind === 'overlap' && overlap.us === ms(2), 'X relied on R from its grant until the refusal: 2 ms together with Y');
    assert.equal(r.counts.reclaimsRefused, 1);
  });

  it('names the last taker when the range is free again at the refusal', () => {
    const r = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), granted(6, 'y/1', 'V2'), released(7, 'y/1', 'V2'), reclaim(8, 'x/1', 'V1', false)]);
    const refused = r.violations.find((v) => v.kind === 'reclaim_refused');
    assert.ok(refused && refused.kind === 'reclaim_refused');
    assert.deepEqual(refused.heldBy.map((h) => h.owner), ['y/1']);
  });

  it('passes a move whose locks are reclaimed, and needs a reclaim sent after each disruption', () => {
    const ok = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), reclaim(8, 'x/1', 'V1', true), released(20, 'x/1', 'V1')]);
    assert.deepEqual(ok.violations, []);
    assert.equal(ok.counts.reclaimsOk, 1);
    // The reclaim left before the second move: it answers only the first.
    const twice = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), disrupt(7, 'V1'), reclaim(8, 'x/1', 'V1', true, 6)]);
    assert.deepEqual(twice.violations.map((v) => v.kind), ['unreclaimed']);
  });

  it('catches a lock held at a move and never reclaimed; one given up instead is no violation', () => {
    const lost = check([granted(0, 'x/1', 'V1'), granted(1, 'y/1', 'V2', { ...R, file: 'f1' }), disrupt(5, 'V1')]);
    assert.deepEqual(lost.violations.map((v) => v.kind), ['unreclaimed']);
    assert.match(describeViolation(lost.violations[0]!), /never reclaimed .* x\/1 via V1/);
    const givenUp = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), released(6, 'x/1', 'V1')]);
    assert.deepEqual(givenUp.violations, []);
    assert.equal(givenUp.counts.givenUpBeforeReclaim, 1);
  });

  describe('the window of an address (its disruption to its protection on the new node)', () => {
    it('counts a local process granted inside it, against a lock held through that address, as a window loss with its cost', () => {
      // X holds R through V1; V1 moves at 5; a local process takes R at 6; V1 arrives (protected) at 8; X's reclaim is refused.
      const r = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), localGrant(6, 'p1'), protectedAt(8, 'V1'), reclaim(10, 'x/1', 'V1', false), released(12, 'local:p1', 'local')]);
      assert.deepEqual(r.violations, []);
      assert.equal(r.counts.windowLosses, 1);
      assert.equal(r.counts.windowMsMax, 3);
      const l = r.windowLosses[0]!;
      assert.deepEqual([l.local.owner, l.victim.owner, l.via, l.disruptedAt, l.protectedAt, l.overlapUs, l.reclaimRefused], ['local:p1', 'x/1', 'V1', ms(5), ms(8), ms(4), 'denied']);
      assert.match(describeLoss(l), /^local process took W f0\[0\+100\] \(local:p1, at 0\.006 s\) in the window of V1 \(disrupted at 0\.005 s, protected at 0\.008 s\) from x\/1 via V1 .*both held it 4 ms, its reclaim refused \(denied\)/);
      assert.deepEqual(r.windows, [{ via: 'V1', what: 'move', disruptedAt: ms(5), protectedAt: ms(8) }]);
    });

    it('also when the local process asked inside it and its answer came after the protection (the kernel granted somewhere in between)', () => {
      const r = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), protectedAt(8, 'V1'), localGrant(9, 'p1', 7), released(12, 'local:p1', 'local'), reclaim(13, 'x/1', 'V1', true)]);
      assert.deepEqual(r.violations, []);
      assert.equal(r.counts.windowLosses, 1);
    });

    it('counts a lock the old node granted after the move began (before its drop) as held at the disruption: a loss, and its reclaim required', () => {
      const dropped = (t: number): ChaosEvent => ({ t: ms(t), kind: 'dropped', via: 'V1', what: 'n1' });
      // IPaddr2 started at 5; x was granted at 5.2; a local process took R at 5.4; the old node's drop is logged at 5.5.
      const r = check([disrupt(5, 'V1'), granted(5.2, 'x/1', 'V1'), localGrant(5.4, 'p1'), dropped(5.5), protectedAt(6, 'V1'), reclaim(7, 'x/1', 'V1', false), released(8, 'local:p1', 'local')]);
      assert.deepEqual(r.violations, []);
      assert.equal(r.counts.windowLosses, 1);
      assert.equal(r.windowLosses[0]!.reclaimRefused, 'denied');
      const unreclaimed = check([disrupt(5, 'V1'), granted(5.2, 'x/1', 'V1'), dropped(5.5), protectedAt(6, 'V1')]);
      assert.deepEqual(unreclaimed.violations.map((v) => v.kind), ['unreclaimed'], 'held at the drop: it must come back');
      const after = check([disrupt(5, 'V1'), dropped(5.5), protectedAt(6, 'V1'), granted(6.5, 'x/1', 'V1')]);
      assert.deepEqual(after.violations, [], 'granted by the new node: nothing to reclaim');
    });

    it('leaves the same grant after the protection a violation', () => {
      const r = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), protectedAt(8, 'V1'), localGrant(9, 'p1', 8.5), reclaim(10, 'x/1', 'V1', false), released(12, 'local:p1', 'local')]);
      assert.deepEqual(r.violations.map((v) => v.kind).sort(), ['overlap', 'reclaim_refused']);
      assert.equal(r.counts.windowLosses, 0);
    });

    it("leaves an NLM client's conflicting grant inside it a violation", () => {
      const r = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), granted(6, 'y/1', 'V2'), protectedAt(8, 'V1'), reclaim(10, 'x/1', 'V1', false)]);
      assert.deepEqual(r.violations.map((v) => v.kind).sort(), ['overlap', 'reclaim_refused']);
      assert.equal(r.counts.windowLosses, 0);
    });

    it('excuses only locks of the disrupted address held at its disruption', () => {
      // y holds R through V2 (not moved): a local process taking it while V1's window is open is a violation.
      const other = check([granted(0, 'y/1', 'V2'), disrupt(5, 'V1'), localGrant(6, 'p1'), released(7, 'local:p1', 'local'), protectedAt(8, 'V1')]);
      assert.deepEqual(other.violations.map((v) => v.kind), ['overlap']);
      assert.equal(other.counts.windowLosses, 0);
      // A window never protected again stays open to the end of the log; its unreclaimed victim is the loss's cost.
      const open = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), localGrant(6, 'p1')]);
      assert.deepEqual(open.violations, []);
      assert.equal(open.windowLosses[0]!.unreclaimed, true);
      assert.equal(open.windowLosses[0]!.protectedAt, undefined);
      assert.match(describeLoss(open.windowLosses[0]!), /not protected again.*never reclaimed/);
    });

    it('measures every disruption to its protection; a second disruption inside a window ends with it', () => {
      const dropped = (t: number, via: string): ChaosEvent => ({ t: ms(t), kind: 'dropped', via, what: 'n1' });
      const r = check([disrupt(1, 'V1'), dropped(1.5, 'V1'), disrupt(2, 'V2'), disrupt(3, 'V1'), protectedAt(4, 'V1'), protectedAt(4.5, 'V1'), protectedAt(10, 'V2'), disrupt(20, 'V1')]);
      assert.deepEqual(r.windows.map((w) => [w.via, w.protectedAt && (w.protectedAt - w.disruptedAt) / 1000]), [['V1', 3], ['V2', 8], ['V1', 1], ['V1', undefined]]);
      assert.deepEqual(windowStats(r.windows), { n: 3, p50: 3, max: 8 });
      // The kernel's part of it: from the old node's drop (or the kill, the disruption itself).
      assert.deepEqual(r.windows.map((w) => w.droppedAt), [ms(1.5), undefined, undefined, undefined]);
      assert.deepEqual(windowStats(r.windows, true), { n: 3, p50: 2.5, max: 8 });
      assert.equal(r.counts.windowMsMax, 8);
    });

    it('opens no window for a move its node never noticed (no drop before the next disruption): the kernel never let go', () => {
      const dropped = (t: number, via: string): ChaosEvent => ({ t: ms(t), kind: 'dropped', via, what: 'n1' });
      // V1 back to its node at 5, unnoticed; moved at 20, dropped at 20.1, protected at 20.2. A local grant at 10 is no window loss.
      const r = check([granted(0, 'x/1', 'V1'), disrupt(5, 'V1'), localGrant(10, 'p1'), released(11, 'local:p1', 'local'), disrupt(20, 'V1'), dropped(20.1, 'V1'), protectedAt(20.2, 'V1'), reclaim(21, 'x/1', 'V1', true, 20.5)]);
      assert.deepEqual(r.violations.map((v) => v.kind), ['overlap']);
      assert.equal(r.counts.windowLosses, 0);
      assert.deepEqual(r.windows.map((w) => [w.unnoticed ?? false, w.protectedAt]), [[true, undefined], [false, ms(20.2)]]);
      assert.deepEqual(windowStats(r.windows), { n: 1, p50: 0.2, max: 0.2 });
      // A kill releases at once: no drop needed.
      const kill = check([granted(0, 'x/1', 'V1'), { ...disrupt(5, 'V1'), op: 'kill' }, localGrant(6, 'p1'), disrupt(7, 'V1'), protectedAt(9, 'V1')]);
      assert.equal(kill.counts.windowLosses, 1);
      assert.equal(kill.windowLosses[0]!.protectedAt, ms(9));
    });
  });

  it("sorts by time: logs of several processes arrive interleaved", () => {
    const r = check([released(30, 'x/1', 'V1'), granted(10, 'y/1', 'V2'), granted(0, 'x/1', 'V1'), released(40, 'y/1', 'V2')]);
    assert.deepEqual(r.violations.map((v) => v.kind), ['overlap']);
  });

  it('reads the kernel\'s lock lines (/proc/locks, fdinfo), skipping waiters', () => {
    const ks = parseKernelLocks([
      '1: OFDLCK ADVISORY  WRITE -1 00:2d:5 0 99',
      'lock:\t2: POSIX  ADVISORY  READ 1234 00:2d:6 100 EOF',
      '2: -> POSIX  ADVISORY  WRITE 99 00:2d:6 100 EOF',
    ].join('\n'));
    assert.deepEqual(ks, [
      { kind: 'OFDLCK', exclusive: true, inode: '00:2d:5', start: 0, last: 99 },
      { kind: 'POSIX', exclusive: false, inode: '00:2d:6', start: 100, last: Infinity },
    ]);
  });

  it('compares two views by the shape of each owner\'s locks, whatever the owners are called', () => {
    const kernel = [{ owner: 'fd7', file: 'f0', exclusive: true, start: 0, last: 199 }, { owner: 'fd8', file: 'f0', exclusive: false, start: 300, last: 399 }];
    const lockdrop = [
      { owner: 'c1/1', file: 'f0', exclusive: true, start: 0, last: 99 }, { owner: 'c1/1', file: 'f0', exclusive: true, start: 100, last: 199 },
      { owner: 'c2/4', file: 'f0', exclusive: false, start: 300, last: 399 },
    ];
    assert.deepEqual(compareViews(kernel, lockdrop), { onlyA: [], onlyB: [] });
    const lost = compareViews(kernel.slice(1), lockdrop);
    assert.deepEqual(lost, { onlyA: [], onlyB: ['f0: W0-199'] });
    assert.deepEqual(compareViews(lockdrop, lockdrop.slice(2), true), { onlyA: ['c1/1 f0: W0-199'], onlyB: [] });
  });

  it('finds conflicting locks of different owners within one table', () => {
    const table = [
      { owner: 'c1/1', file: 'f0', exclusive: true, start: 100, last: 199 }, { owner: 'c2/1', file: 'f0', exclusive: true, start: 150, last: Infinity },
      { owner: 'c1/1', file: 'f0', exclusive: true, start: 150, last: 160 }, { owner: 'c3/1', file: 'f1', exclusive: false, start: 0, last: 9 }, { owner: 'c4/1', file: 'f1', exclusive: false, start: 0, last: 9 },
    ];
    assert.deepEqual(conflictsWithin(table), ['c1/1 W f0[100-199] and c2/1 W f0[150-EOF]', 'c2/1 W f0[150-EOF] and c1/1 W f0[150-160]']);
  });
});
