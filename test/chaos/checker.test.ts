// The chaos checker on hand-written logs: what it must catch, and what it must let pass.
import assert from 'node:assert/strict';
import { check, compareViews, conflictsWithin, describe as describeViolation, parseKernelLocks, type ChaosEvent, type RangeLock } from './checker';

const R: RangeLock = { file: 'f0', offset: 0, length: 100, exclusive: true };
const shared = (l: RangeLock): RangeLock => ({ ...l, exclusive: false });
const ms = (n: number): number => n * 1000;

const granted = (t: number, owner: string, via: string, lock = R): ChaosEvent => ({ t: ms(t), kind: 'granted', owner, via, lock, how: 'reply' });
const released = (t: number, owner: string, via: string, lock = R): ChaosEvent => ({ t: ms(t), kind: 'released', owner, via, lock });
const disrupt = (t: number, via: string): ChaosEvent => ({ t: ms(t), kind: 'disrupt', via, what: 'move' });
const reclaim = (t: number, owner: string, via: string, ok: boolean, sent = t - 1, lock = R): ChaosEvent =>
  ({ t: ms(t), kind: ok ? 'reclaim_ok' : 'reclaim_refused', owner, via, lock, sent: ms(sent), status: ok ? 'granted' : 'denied' });

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
