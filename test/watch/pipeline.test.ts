// Marble tests of the pipeline: dedupe across sources, attribution, hold-down, IPv6 tentative,
// the floating-address filter, draining — all in virtual time.
import { strict as assert } from 'node:assert';
import { merge } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { addressEvents, AddressStateMachine, floatingFilter, type AddressChange, type AddressEvent, type PipelineClock, type SourceItem } from '../../src/watch';

const ifindex = 3;

function change(kind: AddressChange['kind'], address: string, at: number, extra: Partial<AddressChange> = {}): AddressChange {
  return { address, family: address.includes(':') ? 6 : 4, ifindex, kind, source: 'netlink', at, ...extra };
}

function event(type: AddressEvent['type'], address: string, at: number, detectedAt: number, extra: Partial<AddressEvent> = {}): AddressEvent {
  return { type, address, family: address.includes(':') ? 6 : 4, ifindex, source: 'netlink', at, detectedAt, ...extra };
}

describe('watch pipeline (marbles)', () => {
  let ts: TestScheduler;
  beforeEach(() => {
    ts = new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));
  });
  const clock = (): PipelineClock => ({ scheduler: ts, now: () => ts.now() });

  it('the same change seen by netlink and poll comes out once, with the earliest time', () => {
    ts.run(({ cold, expectObservable }) => {
      const netlink = cold<SourceItem>('-a 8ms b', { a: change('added', '10.0.0.5', 1), b: change('removed', '10.0.0.5', 10) });
      const poll = cold<SourceItem>('----- c 9ms d', {
        c: change('added', '10.0.0.5', 4, { source: 'poll', ifindex: 0 }),
        d: change('removed', '10.0.0.5', 11, { source: 'poll', ifindex: 0 }),
      });
      expectObservable(merge(netlink, poll).pipe(addressEvents({}, clock()))).toBe('-a 8ms b', {
        a: event('up', '10.0.0.5', 1, 1),
        b: event('down', '10.0.0.5', 10, 10),
      });
    });
  });

  it('a stale snapshot (started before a newer netlink removal) does not bring an address back', () => {
    ts.run(({ cold, expectObservable }) => {
      const netlink = cold<SourceItem>('a 9ms b', { a: change('added', '10.0.0.5', 0), b: change('removed', '10.0.0.5', 10) });
      // Poll first sees nothing, then a snapshot taken at 8 (before the removal) arrives at 12 and shows the address.
      const poll = cold<SourceItem>('12ms c 9ms d', {
        c: change('added', '10.0.0.5', 8, { source: 'poll' }),
        d: change('removed', '10.0.0.5', 20, { source: 'poll' }),
      });
      expectObservable(merge(netlink, poll).pipe(addressEvents({}, clock()))).toBe('a 9ms b', {
        a: event('up', '10.0.0.5', 0, 0),
        b: event('down', '10.0.0.5', 10, 10),
      });
    });
  });

  it('a source whose clock runs ahead cannot freeze the others; a source never makes itself stale', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a 9ms b c d e', {
        a: change('added', '10.0.0.5', 0),
        b: change('removed', '10.0.0.5', 10),
        c: change('removed', '10.0.0.5', 15, { source: 'bpf' }), // agrees, but stamped ahead
        d: change('added', '10.0.0.5', 12), // netlink's next report: the address is back
        e: change('removed', '10.0.0.5', 11), // netlink again, its clock stepped back: still in order
      });
      expectObservable(src.pipe(addressEvents({}, clock()))).toBe('a 9ms b-de', {
        a: event('up', '10.0.0.5', 0, 0),
        b: event('down', '10.0.0.5', 10, 10),
        d: event('up', '10.0.0.5', 12, 12),
        e: event('down', '10.0.0.5', 11, 13),
      });
    });
  });

  it('poll heals a removal netlink missed', () => {
    ts.run(({ cold, expectObservable }) => {
      const netlink = cold<SourceItem>('a', { a: change('added', '10.0.0.5', 0) });
      const poll = cold<SourceItem>('b 19ms c', { b: change('added', '10.0.0.5', 0, { source: 'poll' }), c: change('removed', '10.0.0.5', 20, { source: 'poll' }) });
      expectObservable(merge(netlink, poll).pipe(addressEvents({}, clock()))).toBe('a 19ms c', {
        a: event('up', '10.0.0.5', 0, 0),
        c: event('down', '10.0.0.5', 20, 20, { source: 'poll' }),
      });
    });
  });

  it('an address on two interfaces is down only when it leaves both', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a b 5ms c 5ms d', {
        a: change('added', '10.0.0.5', 0),
        b: change('added', '10.0.0.5', 1, { ifindex: 4 }),
        c: change('removed', '10.0.0.5', 7),
        d: change('removed', '10.0.0.5', 13, { ifindex: 4 }),
      });
      expectObservable(src.pipe(addressEvents({}, clock()))).toBe('a 12ms d', {
        a: event('up', '10.0.0.5', 0, 0),
        d: event('down', '10.0.0.5', 13, 13, { ifindex: 4 }),
      });
    });
  });

  it('hold-down swallows a removal undone in time and delays one that is not', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a 9ms b 4ms c 14ms d', {
        a: change('added', '10.0.0.5', 0),
        b: change('removed', '10.0.0.5', 10),
        c: change('added', '10.0.0.5', 15),
        d: change('removed', '10.0.0.5', 30),
      });
      // The second removal is reported at 30 + 20 with the time it happened.
      expectObservable(src.pipe(addressEvents({ holdDownMs: 20 }, clock()))).toBe('a 49ms d', {
        a: event('up', '10.0.0.5', 0, 0),
        d: event('down', '10.0.0.5', 30, 50),
      });
    });
  });

  it('during hold-down a later report of the same removal merges in (earliest time, richest attribution)', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a 9ms b c', {
        a: change('added', '10.0.0.5', 0),
        b: change('removed', '10.0.0.5', 10),
        c: change('removed', '10.0.0.5', 9, { source: 'bpf', pid: 4443, comm: 'ip' }),
      });
      expectObservable(src.pipe(addressEvents({ holdDownMs: 5 }, clock()))).toBe('a 14ms d', {
        a: event('up', '10.0.0.5', 0, 0),
        d: event('down', '10.0.0.5', 9, 15, { source: 'bpf', pid: 4443, comm: 'ip' }),
      });
    });
  });

  it('IPv6: tentative is not up yet, DAD completion is; dadfailed never is', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a 9ms b c 9ms d e', {
        a: change('added', 'fd00::5', 0, { flags: { tentative: true } }),
        b: change('added', 'fd00::5', 10),
        c: change('added', 'fd00::6', 11, { flags: { tentative: true } }),
        d: change('added', 'fd00::6', 21, { flags: { dadfailed: true, tentative: true } }),
        e: change('removed', 'fd00::6', 22),
      });
      expectObservable(src.pipe(addressEvents({}, clock()))).toBe('10ms b', { b: event('up', 'fd00::5', 10, 10) });
    });
  });

  it('filter: floating CIDRs (IPv4 and IPv6); the default drops loopback and link-local; mapped IPv4 is normalised', () => {
    ts.run(({ cold, expectObservable }) => {
      const items = {
        a: change('added', '10.0.0.5', 0),
        b: change('added', '10.0.1.5', 1),
        c: change('added', 'fd00::1:5', 2),
        d: change('added', 'fd01::5', 3),
        e: change('added', '127.0.0.1', 4),
        f: change('added', '::1', 5),
        g: change('added', '::ffff:10.0.0.9', 6),
        h: { kind: 'overflow', source: 'netlink', at: 7 } as SourceItem,
        i: change('added', 'fe80::5', 8),
      };
      const src = cold<SourceItem>('abcdefghi', items);
      expectObservable(src.pipe(addressEvents({ floating: ['10.0.0.0/24', 'fd00::/64'] }, clock()))).toBe('a-c---g', {
        a: event('up', '10.0.0.5', 0, 0),
        c: event('up', 'fd00::1:5', 2, 2),
        g: event('up', '10.0.0.9', 6, 6),
      });
      expectObservable(src.pipe(addressEvents({}, clock()))).toBe('abcd--g', {
        a: event('up', '10.0.0.5', 0, 0),
        b: event('up', '10.0.1.5', 1, 1),
        c: event('up', 'fd00::1:5', 2, 2),
        d: event('up', 'fd01::5', 3, 3),
        g: event('up', '10.0.0.9', 6, 6),
      });
    });
  });

  it('the filter as configured now: an address it takes in that is up arrives (draining too, if it is), one it lets go gets no event (its locks stay)', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a b 3ms i 9ms d', {
        a: change('added', '10.0.0.5', 0),
        b: change('added', '10.0.1.5', 1),
        i: change('remove-intent', '10.0.1.5', 5, { source: 'bpf', pid: 7, comm: 'ip' }),
        d: change('removed', '10.0.1.5', 15),
      });
      // Only 10.0.0.5, then 10.0.0.0/16 (10.0.1.5 is draining by then), then only 10.0.1.0/24.
      const config = cold('c 7ms n 6ms o', { c: { floating: ['10.0.0.5'] }, n: { floating: ['10.0.0.0/16'] }, o: { floating: ['10.0.1.0/24'] } });
      expectObservable(src.pipe(addressEvents(config, clock()))).toBe('a 7ms (uv) 3ms d', {
        a: event('up', '10.0.0.5', 0, 0),
        u: event('up', '10.0.1.5', 8, 8, { source: 'bpf', pid: 7, comm: 'ip' }),
        v: event('draining', '10.0.1.5', 5, 8, { source: 'bpf', pid: 7, comm: 'ip' }),
        d: event('down', '10.0.1.5', 15, 15, { pid: 7, comm: 'ip' }),
      });
    });
  });

  it('a hold-down configured later applies from the next removal on', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a b 8ms c 9ms d', {
        a: change('added', '10.0.0.5', 0),
        b: change('removed', '10.0.0.5', 1),
        c: change('added', '10.0.0.5', 10),
        d: change('removed', '10.0.0.5', 20),
      });
      const config = cold('c 14ms h', { c: { holdDownMs: 0 }, h: { holdDownMs: 30 } });
      expectObservable(src.pipe(addressEvents(config, clock()))).toBe('ab 8ms c 39ms d', {
        a: event('up', '10.0.0.5', 0, 0),
        b: event('down', '10.0.0.5', 1, 1),
        c: event('up', '10.0.0.5', 10, 10),
        d: event('down', '10.0.0.5', 20, 50),
      });
    });
  });

  it('remove-intent → draining, then the confirmed removal → down with the remover attached', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a 4ms i j', {
        a: change('added', '10.0.0.5', 0),
        i: change('remove-intent', '10.0.0.5', 5, { source: 'bpf', pid: 4443, comm: 'ip', prefixLen: 24 }),
        j: change('removed', '10.0.0.5', 6),
      });
      expectObservable(src.pipe(addressEvents({}, clock()))).toBe('a 4ms i j', {
        a: event('up', '10.0.0.5', 0, 0),
        i: event('draining', '10.0.0.5', 5, 5, { source: 'bpf', pid: 4443, comm: 'ip' }),
        j: event('down', '10.0.0.5', 6, 6, { pid: 4443, comm: 'ip' }),
      });
    });
  });

  it('draining ends on intent-failed, on timeout, and is never entered for an address that is not up', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a b 3ms i f 4ms k 3ms n', {
        a: change('added', '10.0.0.5', 0),
        b: change('added', '10.0.0.6', 1),
        i: change('remove-intent', '10.0.0.5', 5, { source: 'bpf', pid: 7, comm: 'ip' }),
        f: change('intent-failed', '10.0.0.5', 6, { source: 'bpf', pid: 7, comm: 'ip' }),
        k: change('remove-intent', '10.0.0.6', 11, { source: 'bpf', pid: 8, comm: 'ip' }),
        n: change('remove-intent', '10.0.0.7', 15, { source: 'bpf', pid: 9, comm: 'ip' }),
      });
      expectObservable(src.pipe(addressEvents({ drainTimeoutMs: 50 }, clock()))).toBe('ab 3ms if 4ms k 49ms t', {
        a: event('up', '10.0.0.5', 0, 0),
        b: event('up', '10.0.0.6', 1, 1),
        i: event('draining', '10.0.0.5', 5, 5, { source: 'bpf', pid: 7, comm: 'ip' }),
        f: event('drain-ended', '10.0.0.5', 6, 6, { source: 'bpf', pid: 7, comm: 'ip' }),
        k: event('draining', '10.0.0.6', 11, 11, { source: 'bpf', pid: 8, comm: 'ip' }),
        t: event('drain-ended', '10.0.0.6', 61, 61, { source: 'bpf', pid: 8, comm: 'ip' }),
      });
    });
  });

  it('a drained address that comes back within the hold-down ends its drain', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a 4ms i j 3ms k', {
        a: change('added', '10.0.0.5', 0),
        i: change('remove-intent', '10.0.0.5', 5, { source: 'bpf', pid: 7, comm: 'ip' }),
        j: change('removed', '10.0.0.5', 6),
        k: change('added', '10.0.0.5', 10),
      });
      expectObservable(src.pipe(addressEvents({ holdDownMs: 20 }, clock()))).toBe('a 4ms i 4ms k', {
        a: event('up', '10.0.0.5', 0, 0),
        i: event('draining', '10.0.0.5', 5, 5, { source: 'bpf', pid: 7, comm: 'ip' }),
        k: event('drain-ended', '10.0.0.5', 10, 10, { pid: 7, comm: 'ip' }),
      });
    });
  });

  it('completes only after pending timers when the sources complete', () => {
    ts.run(({ cold, expectObservable }) => {
      const src = cold<SourceItem>('a b|', { a: change('added', '10.0.0.5', 0), b: change('removed', '10.0.0.5', 1) });
      expectObservable(src.pipe(addressEvents({ holdDownMs: 10 }, clock()))).toBe('a 10ms (b|)', {
        a: event('up', '10.0.0.5', 0, 0),
        b: event('down', '10.0.0.5', 1, 11),
      });
    });
  });
});

describe('watch state machine (decisions)', () => {
  it('returns timer decisions and ignores expiries of cancelled timers', () => {
    const m = new AddressStateMachine({ holdDownMs: 100 });
    assert.equal(m.handle({ kind: 'change', change: change('added', '10.0.0.5', 0) })[0].kind, 'emit');
    const d = m.handle({ kind: 'change', change: change('removed', '10.0.0.5', 1) });
    assert.deepEqual(d, [{ kind: 'start-timer', token: 1, delayMs: 100 }], 'nothing emitted during the hold-down');
    assert.deepEqual(m.handle({ kind: 'change', change: change('added', '10.0.0.5', 2) }), [{ kind: 'cancel-timer', token: 1 }]);
    assert.deepEqual(m.handle({ kind: 'timer', token: 1 }), []);
  });

  it('takes new options as an input: the hold-down applies from the next removal', () => {
    const m = new AddressStateMachine();
    m.handle({ kind: 'change', change: change('added', '10.0.0.5', 0) });
    assert.deepEqual(m.handle({ kind: 'configure', options: { holdDownMs: 250 } }), []);
    assert.deepEqual(m.handle({ kind: 'change', change: change('removed', '10.0.0.5', 1) }), [{ kind: 'start-timer', token: 1, delayMs: 250 }]);
  });
});

describe('watch floating-address filter', () => {
  it('defaults to every address but loopback and IPv6 link-local, else takes the listed addresses and networks', () => {
    const dflt = floatingFilter();
    assert.deepEqual(['127.0.0.1', '127.9.9.9', '::1', '10.0.0.1', 'fe80::1', '::ffff:127.0.0.1', 'fd00::1'].map(dflt), [false, false, false, true, false, false, true]);
    const listed = floatingFilter(['10.0.0.5', 'fd00::/64', 'fe80::/10']);
    assert.deepEqual(['10.0.0.5', '10.0.0.6', 'fd00::9', 'fd00:0:0:1::9', 'fe80::1'].map(listed), [true, false, true, false, true]);
  });
});
