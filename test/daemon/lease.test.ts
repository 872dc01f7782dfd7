// The address lease between two nodes on one state directory (two AddressLeases in one process,
// real files): an arrival is held back while the other node renews its lease, however long; it is
// served within ~100 ms of the holder's release (a failover: the address left the holder, whose
// drop is done), not a third of a lease later; and after the holder stops renewing, only once a
// whole lease has passed.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Subject } from 'rxjs';
import { AddressLeases } from '../../src/daemon/lease';
import { nowMs, type AddressEvent } from '../../src/watch/types';

const ADDRESS = '10.86.0.100';
const LEASE_MS = 1_500;

const up = (): AddressEvent => ({ type: 'up', address: ADDRESS, family: 4, ifindex: 2, source: 'netlink', at: nowMs(), detectedAt: nowMs() });

describe('daemon: address leases between two nodes', function () {
  this.timeout(20_000);
  let dir: string;
  const made: AddressLeases[] = [];
  const leases = (node: string): AddressLeases => {
    const l = new AddressLeases({ stateDir: dir, node, leaseMs: LEASE_MS, log: pino({ level: 'silent' }) });
    made.push(l);
    return l;
  };
  /** The node's gate over a stream of address events: what it passes on, with when. */
  const gated = (l: AddressLeases) => {
    const events$ = new Subject<AddressEvent>();
    const passed: { ev: AddressEvent; at: number }[] = [];
    let wake: (() => void) | undefined;
    const sub = l.gate(events$).subscribe((ev) => {
      passed.push({ ev, at: performance.now() });
      wake?.();
    });
    const next = (ms: number): Promise<{ ev: AddressEvent; at: number } | undefined> =>
      passed.length ? Promise.resolve(passed.shift()) : new Promise((resolve) => {
        const t = setTimeout(() => resolve(undefined), ms);
        wake = () => (clearTimeout(t), (wake = undefined), resolve(passed.shift()));
      });
    return { events$, next, sub };
  };
  const holder = (): string => (JSON.parse(readFileSync(path.join(dir, ADDRESS, 'holder'), 'utf8')) as { node: string }).node;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-lease-'));
  });
  afterEach(() => {
    for (const l of made.splice(0)) l.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses while the holder renews, and serves within ~100 ms of the holder's release", async () => {
    const [a, b] = [leases('node-a'), leases('node-b')];
    const [ga, gb] = [gated(a), gated(b)];
    ga.events$.next(up());
    assert.ok(await ga.next(1_000), 'a takes the free lease at once');
    assert.equal(holder(), 'node-a');

    gb.events$.next(up());
    // Two whole leases with a renewing: b keeps refusing (it looks again often, and never takes a live lease).
    assert.equal(await gb.next(2 * LEASE_MS + 300), undefined, "b does not serve the address while a's lease is live");
    assert.equal(b.heldBy(ADDRESS), 'node-a');
    assert.equal(holder(), 'node-a');

    // a's address left and its drop is done: it lets go.
    const released = performance.now();
    a.release(ADDRESS);
    const passed = await gb.next(1_000);
    assert.ok(passed, 'b serves the address after the release');
    const after = passed.at - released;
    assert.ok(after < 100, `b served ${after.toFixed(1)} ms after a's release (≤ 100 ms)`);
    assert.equal(passed.ev.type, 'up');
    assert.equal(holder(), 'node-b');
    assert.equal(b.heldBy(ADDRESS), undefined);
    ga.sub.unsubscribe();
    gb.sub.unsubscribe();
  });

  it('a holder that stops renewing is taken over only after a whole lease without renewal', async () => {
    // The other node's lease as it wrote it, then never renewed: only the backoff's looks see time pass.
    const file = path.join(dir, ADDRESS, 'holder');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify({ node: 'node-a', pid: 1, seq: 7, renewedAt: new Date().toISOString(), seconds: LEASE_MS / 1000 })}\n`);
    const b = leases('node-b');
    const gb = gated(b);
    const seen = performance.now();
    gb.events$.next(up());
    const passed = await gb.next(3 * LEASE_MS);
    assert.ok(passed, 'b takes the expired lease');
    const waited = passed.at - seen;
    assert.ok(waited >= LEASE_MS, `b waited ${waited.toFixed(0)} ms: at least the lease (${LEASE_MS} ms)`);
    assert.equal(holder(), 'node-b');
    gb.sub.unsubscribe();
  });
});
