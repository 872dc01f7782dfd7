// Properties of the address state machine under random interleavings of sources, intents and
// timer expiries: every event is a transition out of the phase the one before it left (the
// contract failover relies on), and with one source and no hold-down the announced phase is
// always that source's view.
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { AddressStateMachine, TRANSITIONS, type AddressChange, type AddressPhase, type MachineDecision, type SourceName } from '../../src/watch';

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

type Emitted = { type: keyof typeof TRANSITIONS; address: string };

function runSteps(machine: AddressStateMachine, steps: Step[]): Emitted[] {
  const timers: number[] = [];
  const events: Emitted[] = [];
  let now = 0;
  const apply = (ds: MachineDecision[]): void => {
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
  it('per address, every event is a transition out of the phase the one before it left', () => {
    fc.assert(fc.property(fc.array(step, { maxLength: 80 }), fc.constantFrom(0, 10), (steps, holdDownMs) => {
      const events = runSteps(new AddressStateMachine({ holdDownMs, drainTimeoutMs: 30 }), steps);
      for (const a of addresses) {
        let phase: AddressPhase = 'down';
        for (const e of events.filter((x) => x.address === a)) {
          assert.ok(TRANSITIONS[e.type].from.includes(phase), `${e.type} while ${phase}`);
          phase = TRANSITIONS[e.type].to;
        }
      }
    }), { numRuns: 2000 });
  });

  it('with one source, in order, and no hold-down, the announced phase is that source\'s view', () => {
    const oneSource = fc.array(change.map((c) => ({ ...c, source: 'netlink' as const, dt: Math.abs(c.dt), kind: c.kind === 'added' || c.kind === 'removed' ? c.kind : ('added' as const) })), { maxLength: 60 });
    fc.assert(fc.property(oneSource, (changes) => {
      const m = new AddressStateMachine();
      const view = new Map<string, Map<number, boolean>>(); // address → ifindex → usable
      const phase = new Map<string, AddressPhase>(); // as the emitted events tell it
      let now = 0;
      for (const c of changes) {
        now += c.dt;
        const v = view.get(c.address) ?? new Map<number, boolean>();
        view.set(c.address, v);
        if (c.kind === 'added') v.set(c.ifindex, !c.tentative);
        else v.delete(c.ifindex);
        const decisions = m.handle({ kind: 'change', change: { address: c.address, family: 4, ifindex: c.ifindex, kind: c.kind, source: 'netlink', at: now, ...(c.tentative && c.kind === 'added' && { flags: { tentative: true } }) } });
        for (const d of decisions) if (d.kind === 'emit') phase.set(d.event.address, TRANSITIONS[d.event.type].to);
        const usable = [...v.values()].some(Boolean);
        assert.equal(phase.get(c.address) ?? 'down', usable ? 'up' : 'down');
      }
    }), { numRuns: 2000 });
  });
});
