// Properties of the address state machine under random interleavings of sources, intents and
// timer expiries: transitions alternate, draining is well nested, and with one source and no
// hold-down the announced state is always that source's view.
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { AddressStateMachine, type AddressChange, type Decision, type SourceName } from '../../src/watch';

const addresses = ['10.0.0.5', '10.0.0.6', 'fd00::5'];

interface ChangeSpec { kind: AddressChange['kind']; address: string; ifindex: number; source: SourceName; tentative: boolean; dt: number }
type Step = { t: 'change'; c: ChangeSpec } | { t: 'timer'; i: number };

const change: fc.Arbitrary<ChangeSpec> = fc.record({
  kind: fc.constantFrom('added', 'removed', 'remove-intent', 'intent-failed') as fc.Arbitrary<AddressChange['kind']>,
  address: fc.constantFrom(...addresses),
  ifindex: fc.constantFrom(3, 4),
  source: fc.constantFrom('netlink', 'poll', 'bpf') as fc.Arbitrary<SourceName>,
  tentative: fc.boolean(),
  dt: fc.integer({ min: -5, max: 20 }),
});
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: change.map((c) => ({ t: 'change' as const, c })) },
  { weight: 1, arbitrary: fc.nat(20).map((i) => ({ t: 'timer' as const, i })) },
);

function runSteps(machine: AddressStateMachine, steps: Step[]): Array<{ type: string; address: string }> {
  const timers: number[] = [];
  const events: Array<{ type: string; address: string }> = [];
  let now = 0;
  const apply = (ds: Decision[]): void => {
    for (const d of ds) {
      if (d.kind === 'emit') events.push({ type: d.event.type, address: d.event.address });
      else if (d.kind === 'start-timer') timers.push(d.token);
      else if (timers.includes(d.token)) timers.splice(timers.indexOf(d.token), 1);
    }
  };
  for (const s of steps) {
    if (s.t === 'timer') {
      if (timers.length === 0) continue;
      const [token] = timers.splice(s.i % timers.length, 1);
      apply(machine.handle({ kind: 'timer', token }));
      continue;
    }
    now += s.c.dt;
    const c: AddressChange = {
      address: s.c.address, family: s.c.address.includes(':') ? 6 : 4, ifindex: s.c.ifindex, kind: s.c.kind, source: s.c.source, at: now,
      ...(s.c.tentative && s.c.kind === 'added' && { flags: { tentative: true } }),
    };
    apply(machine.handle({ kind: 'change', change: c }));
  }
  return events;
}

describe('watch state machine (properties)', () => {
  it('up and down alternate per address, and draining is always closed by down or drain-ended', () => {
    fc.assert(fc.property(fc.array(step, { maxLength: 80 }), fc.constantFrom(0, 10), (steps, holdDownMs) => {
      const events = runSteps(new AddressStateMachine({ holdDownMs, drainTimeoutMs: 30 }), steps);
      for (const a of addresses) {
        let up = false;
        let draining = false;
        for (const e of events.filter((x) => x.address === a)) {
          if (e.type === 'up') { assert.ok(!up, 'up twice'); up = true; }
          if (e.type === 'down') { assert.ok(up, 'down while down'); up = false; draining = false; }
          if (e.type === 'draining') { assert.ok(up && !draining, 'draining while not up or already draining'); draining = true; }
          if (e.type === 'drain-ended') { assert.ok(up && draining, 'drain-ended without draining'); draining = false; }
        }
      }
    }), { numRuns: 2000 });
  });

  it('with one source, in order, and no hold-down, the announced state is that source\'s view', () => {
    const oneSource = fc.array(change.map((c) => ({ ...c, source: 'netlink' as const, dt: Math.abs(c.dt), kind: c.kind === 'added' || c.kind === 'removed' ? c.kind : ('added' as const) })), { maxLength: 60 });
    fc.assert(fc.property(oneSource, (changes) => {
      const m = new AddressStateMachine();
      const view = new Map<string, Map<number, boolean>>(); // address → ifindex → usable
      let now = 0;
      for (const c of changes) {
        now += c.dt;
        const v = view.get(c.address) ?? new Map<number, boolean>();
        view.set(c.address, v);
        if (c.kind === 'added') v.set(c.ifindex, !c.tentative);
        else v.delete(c.ifindex);
        m.handle({ kind: 'change', change: { address: c.address, family: 4, ifindex: c.ifindex, kind: c.kind, source: 'netlink', at: now, ...(c.tentative && c.kind === 'added' && { flags: { tentative: true } }) } });
        const usable = [...v.values()].some(Boolean);
        assert.equal(m.announced(c.address), usable ? 'up' : 'down');
      }
    }), { numRuns: 2000 });
  });
});
