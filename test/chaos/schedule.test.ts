// The chaos schedule is the seed's alone: a failing seed replays the same actions and requests.
import assert from 'node:assert/strict';
import { chaosSchedule, clientIntents, initialNode, localIntents } from './schedule';

const opts = { durationMs: 120_000, nodes: 3, vips: 2 };

describe('chaos schedule', () => {
  it('is the same for the same seed, and another for another seed', () => {
    assert.deepEqual(chaosSchedule({ seed: 42, ...opts }), chaosSchedule({ seed: 42, ...opts }));
    assert.notDeepEqual(chaosSchedule({ seed: 42, ...opts }), chaosSchedule({ seed: 43, ...opts }));
    const a = clientIntents(7, 'c01/0', 3);
    const b = clientIntents(7, 'c01/0', 3);
    const c = clientIntents(7, 'c01/1', 3);
    const [xs, ys, zs] = [a, b, c].map((next) => Array.from({ length: 20 }, next));
    assert.deepEqual(xs, ys);
    assert.notDeepEqual(xs, zs, 'each lane draws from its own stream');
    assert.deepEqual(Array.from({ length: 5 }, localIntents(7, 'p1', 3)), Array.from({ length: 5 }, localIntents(7, 'p1', 3)));
  });

  it('moves by ip addr and IPaddr2, two at once, back to the same node, and kills one node at a time', () => {
    const actions = Array.from({ length: 20 }, (_, seed) => chaosSchedule({ seed, ...opts })).flat();
    const moves = actions.flatMap((a) => (a.kind === 'move' ? a.moves : []));
    assert.ok(moves.some((m) => m.tool === 'ip') && moves.some((m) => m.tool === 'ipaddr2'));
    assert.ok(actions.some((a) => a.kind === 'move' && a.moves.length === 2), 'two addresses at once');
    assert.ok(actions.some((a) => a.kind === 'kill'));
    for (let seed = 0; seed < 20; seed++) {
      const s = chaosSchedule({ seed, ...opts });
      const at = [0, 1].map((k) => initialNode(k, opts.nodes));
      let back = 0;
      let downUntil = 0;
      for (const a of s) {
        assert.ok(a.at < opts.durationMs);
        if (a.kind === 'kill') {
          assert.ok(a.at >= downUntil, 'one node down at a time');
          downUntil = a.at + a.downMs;
          continue;
        }
        for (const m of a.moves) {
          if (m.to === at[m.vip]) back++;
          at[m.vip] = m.to;
        }
      }
      if (seed === 0) assert.ok(s.length >= 15, `an action every few seconds: ${s.length} in 120 s`);
      if (back) return; // some seed moves an address back to the node it was on
    }
    assert.fail('no seed moves an address back to the same node');
  });
});
