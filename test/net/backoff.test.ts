// The one backoff: exact first wait, growth by the factor up to the cap, jitter within its
// bounds and never past the cap, reset.
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { Backoff } from '../../src/net';

/** The waits of n calls to next(). */
const waits = (b: Backoff, n: number): number[] => Array.from({ length: n }, () => b.next());

describe('net backoff', () => {
  it('without jitter: initial, then times the factor, capped', () => {
    assert.deepEqual(waits(new Backoff({ initialMs: 500, maxMs: 4_000, jitter: 0 }), 6), [500, 1_000, 2_000, 4_000, 4_000, 4_000]);
    assert.deepEqual(waits(new Backoff({ initialMs: 100, factor: 1.5, maxMs: 300, jitter: 0 }), 5), [100, 150, 225, 300, 300]);
    assert.deepEqual(waits(new Backoff({ initialMs: 1_000, jitter: 0 }), 4), [1_000, 2_000, 4_000, 8_000], 'no cap by default');
    assert.deepEqual(waits(new Backoff({ initialMs: 900, maxMs: 400, jitter: 0 }), 2), [400, 400], 'the cap bounds the first wait too');
  });

  it('jitters every wait but the first, by the injected random, around the unjittered sequence', () => {
    const draws = [0, 0.5, 0.999999, 0.25];
    let i = 0;
    const b = new Backoff({ initialMs: 200, maxMs: 10_000, jitter: 0.2, random: () => draws[i++]! });
    const got = waits(b, 5);
    assert.equal(got[0], 200, 'the first wait is exact (no draw)');
    assert.equal(got[1], 400 * 0.8, 'random 0: the low end');
    assert.equal(got[2], 800, 'random 0.5: the middle');
    assert.ok(Math.abs(got[3]! - 1_600 * 1.2) < 0.01, 'random → 1: the high end');
    assert.equal(got[4], 3_200 * 0.9, 'the base does not compound the jitter');
    assert.equal(i, 4, 'one draw per jittered wait');
  });

  it('jitterFirst: the first wait is jittered too, the sequence the same', () => {
    const b = new Backoff({ initialMs: 1_000, maxMs: 8_000, jitterFirst: true, random: () => 0 });
    assert.deepEqual(waits(b, 3), [800, 1_600, 3_200]);
    b.reset();
    assert.equal(b.next(), 800, 'after reset as well');
  });

  it('reset: back to the exact first wait and the start of the sequence', () => {
    const b = new Backoff({ initialMs: 50, maxMs: 1_000, random: () => 0.9 });
    waits(b, 4);
    b.reset();
    assert.equal(b.next(), 50);
    assert.equal(b.next(), 100 * (1 + 0.2 * 0.8));
  });

  it('always within [base·(1-jitter), min(cap, base·(1+jitter))], never past the cap', () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 10_000 }), fc.double({ min: 1, max: 4, noNaN: true }), fc.integer({ min: 0, max: 100_000 }),
      fc.double({ min: 0, max: 1, noNaN: true }), fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 1, maxLength: 30 }),
      (initialMs, factor, maxMs, jitter, draws) => {
        let i = 0;
        const b = new Backoff({ initialMs, factor, maxMs, jitter, random: () => draws[i++ % draws.length]! });
        let base = Math.min(initialMs, maxMs);
        for (let n = 0; n < draws.length + 1; n++) {
          const w = b.next();
          if (n === 0) assert.equal(w, base);
          assert.ok(w >= base * (1 - jitter) - 1e-9 && w <= Math.min(maxMs, base * (1 + jitter)) + 1e-9, `${w} around ${base}`);
          base = Math.min(base * factor, maxMs);
        }
      },
    ));
  });

  it('refuses a backoff that cannot work', () => {
    for (const o of [{ initialMs: -1 }, { initialMs: Number.NaN }, { initialMs: 10, factor: 0.5 }, { initialMs: 10, jitter: 1.5 }, { initialMs: 10, maxMs: -5 }]) {
      assert.throws(() => new Backoff(o), RangeError, JSON.stringify(o));
    }
  });
});
