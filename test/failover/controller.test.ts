import assert from 'node:assert/strict';
import { Subject } from 'rxjs';
import { LockTable, hostKey, type LockRequest } from '../../src/locks';
import { FailoverController, decide, type FailoverReport } from '../../src/failover';
import { nowMs, type AddressEvent } from '../../src/watch/types';

const ev = (type: AddressEvent['type'], address: string, extra: Partial<AddressEvent> = {}): AddressEvent =>
  ({ type, address, family: 4, ifindex: 2, source: 'netlink', at: nowMs(), detectedAt: nowMs(), ...extra });

const req = (serverAddress: string, client: string, start: number, exclusive = true): LockRequest => ({
  fh: Buffer.from('file-1'),
  owner: { host: hostKey(client, client), svid: 1, oh: Buffer.from(client) },
  exclusive,
  offset: BigInt(start),
  length: 10n,
  serverAddress,
});

/** The status monitor's side, recorded: the unit under test is the controller's ordering. */
function fakeMonitors(records: Record<string, number>) {
  const calls: string[] = [];
  let state = 1;
  return {
    calls,
    activate: async (a: string) => { calls.push(`activate ${a}`); return { records: records[a] ?? 0 }; },
    bumpState: async (a: string) => { calls.push(`bump ${a}`); return (state += 2); },
    notify: async (a: string) => { calls.push(`notify ${a}`); return { notified: ['c'], failed: [], ms: 1, state }; },
    forgetClients: (a: string) => void calls.push(`forget ${a}`),
    graceEnded: async (a: string) => { calls.push(`grace-ended ${a}`); return 0; },
  };
}

function fakeListeners(calls: string[]) {
  return {
    addAddress: async (a: string) => void calls.push(`listen ${a}`),
    removeAddress: async (a: string) => void calls.push(`close ${a}`),
  };
}

describe('failover', () => {
  describe('decide', () => {
    it('only real transitions produce steps', () => {
      const up = decide(undefined, ev('up', '10.0.0.5'));
      assert.deepEqual(up.steps, ['undrain', 'take-over', 'start-grace', 'open-listeners', 'load-monitors', 'bump-state', 'notify']);
      assert.deepEqual(decide(up.next, ev('up', '10.0.0.5')).steps, []);
      const down = decide(up.next, ev('down', '10.0.0.5'));
      assert.deepEqual(down.steps, ['drain', 'barrier', 'drop-locks', 'close-listeners', 'forget-clients']);
      assert.deepEqual(decide(down.next, ev('down', '10.0.0.5')).steps, []);
      assert.deepEqual(decide(undefined, ev('draining', '10.0.0.5')).steps, [], 'an address never up cannot drain');
    });

    it('draining then a failed removal accepts locks again; a draining address that goes is dropped', () => {
      const up = decide(undefined, ev('up', '10.0.0.5')).next;
      const draining = decide(up, ev('draining', '10.0.0.5'));
      assert.deepEqual(draining.steps, ['drain']);
      assert.equal(draining.next, 'draining');
      const ended = decide(draining.next, ev('drain-ended', '10.0.0.5'));
      assert.deepEqual(ended.steps, ['undrain']);
      assert.equal(ended.next, 'up');
      assert.deepEqual(decide(draining.next, ev('down', '10.0.0.5')), { next: 'down', steps: ['drain', 'barrier', 'drop-locks', 'close-listeners', 'forget-clients'] });
    });
  });

  describe('controller with a real lock table', () => {
    it("one address's slow bind does not delay another address's drop", async () => {
      const table = new LockTable();
      let release!: () => void;
      const slow = new Promise<void>((r) => { release = r; });
      const ctl = new FailoverController({
        listeners: { addAddress: (a) => (a === '10.0.0.8' ? slow : Promise.resolve()), removeAddress: async () => undefined },
        locks: table, monitors: fakeMonitors({}), graceSeconds: () => 50,
      });
      await ctl.handle(ev('up', '10.0.0.7'));
      assert.equal(table.lock(req('10.0.0.7', 'a', 0), { block: false, reclaim: false }), 'granted');
      const stuck = ctl.handle(ev('up', '10.0.0.8'));
      await ctl.handle(ev('down', '10.0.0.7'));
      assert.equal([...table.locks()].length, 0, 'dropped while the other bind still waits');
      release();
      await stuck;
      ctl.close();
    });

    let table: LockTable;
    let monitors: ReturnType<typeof fakeMonitors>;
    let reports: FailoverReport[];
    let ctl: FailoverController;

    beforeEach(() => {
      table = new LockTable();
      monitors = fakeMonitors({ '10.0.0.5': 2 });
      reports = [];
      ctl = new FailoverController({ listeners: fakeListeners(monitors.calls), locks: table, monitors, graceSeconds: () => 50 });
      ctl.reports$.subscribe((r) => reports.push(r));
    });
    afterEach(() => ctl.close());

    it('arrival: grace for that address alone, listeners before notify', async () => {
      await ctl.handle(ev('up', '10.0.0.5'));
      await ctl.handle(ev('up', '10.0.0.6'));
      await ctl.settle();
      assert.deepEqual(monitors.calls, [
        'listen 10.0.0.5', 'activate 10.0.0.5', 'bump 10.0.0.5', 'notify 10.0.0.5',
        'listen 10.0.0.6', 'activate 10.0.0.6', 'bump 10.0.0.6', 'grace-ended 10.0.0.6',
      ]);
      assert.equal(table.lock(req('10.0.0.5', 'a', 0), { block: false, reclaim: false }), 'denied_grace_period');
      assert.equal(table.lock(req('10.0.0.5', 'a', 0), { block: false, reclaim: true }), 'granted');
      // 10.0.0.6 has no recorded hosts: its grace ended at once.
      assert.equal(table.lock(req('10.0.0.6', 'b', 100), { block: false, reclaim: false }), 'granted');
      const up = reports.find((r) => r.type === 'up' && r.address === '10.0.0.6');
      assert.equal(up && up.type === 'up' && up.graceEndsAt, null);
    });

    it('removal drops exactly that address and wakes a waiter from the other one', async () => {
      await ctl.handle(ev('up', '10.0.0.5'));
      await ctl.handle(ev('up', '10.0.0.6'));
      ctl.endGrace('10.0.0.5');
      assert.equal(table.lock(req('10.0.0.5', 'a', 0), { block: false, reclaim: false }), 'granted');
      assert.equal(table.lock(req('10.0.0.5', 'a', 50), { block: false, reclaim: false }), 'granted');
      assert.equal(table.lock(req('10.0.0.6', 'b', 100), { block: false, reclaim: false }), 'granted');
      assert.equal(table.lock(req('10.0.0.6', 'c', 0), { block: true, reclaim: false }), 'blocked');

      await ctl.handle(ev('down', '10.0.0.5', { source: 'bpf', pid: 4443, comm: 'ip' }));
      const drop = reports.find((r) => r.type === 'down');
      assert.ok(drop && drop.type === 'down');
      assert.equal(drop.counts.locks, 2);
      assert.equal(drop.counts.woken, 1);
      assert.equal(drop.comm, 'ip');
      const left = [...table.locks()].map((l) => `${l.serverAddress} ${l.owner.host}`).sort();
      assert.deepEqual(left, ['10.0.0.6 b@b', '10.0.0.6 c@c']);
      assert.ok(monitors.calls.includes('close 10.0.0.5') && monitors.calls.includes('forget 10.0.0.5'));
      // Gone means refused, even for a request that was already on its way in.
      assert.equal(table.lock(req('10.0.0.5', 'a', 500), { block: false, reclaim: false }), 'denied_nolocks');
    });

    it('draining refuses new locks only on that address and ends when the removal fails', async () => {
      await ctl.handle(ev('up', '10.0.0.6'));
      await ctl.handle(ev('up', '10.0.0.7'));
      await ctl.handle(ev('draining', '10.0.0.6', { source: 'bpf', pid: 7, comm: 'ip' }));
      assert.equal(ctl.status().get('10.0.0.6'), 'draining');
      assert.ok(ctl.holds('10.0.0.6'), 'a draining address is still held');
      assert.equal(table.lock(req('10.0.0.6', 'a', 0), { block: false, reclaim: false }), 'denied_nolocks');
      assert.equal(table.lock(req('10.0.0.7', 'a', 0), { block: false, reclaim: false }), 'granted');
      await ctl.handle(ev('drain-ended', '10.0.0.6'));
      assert.equal(table.lock(req('10.0.0.6', 'b', 100), { block: false, reclaim: false }), 'granted');
      assert.deepEqual(reports.filter((r) => r.type === 'draining' || r.type === 'drain-ended').map((r) => r.type), ['draining', 'drain-ended']);
    });

    it('a take-over the store failed is tried again while the address stays; a later event of the address ends the tries', async () => {
      const m = fakeMonitors({ '10.0.0.7': 1 });
      const locks = new LockTable();
      let failures = 2;
      let tries = 0;
      const journal = {
        barrier: async () => ({ missing: [], ms: 0 }),
        takeOver: async (a: string) => {
          tries++;
          if (a === '10.0.0.8' || failures-- > 0) throw new Error('etcdserver: request timed out');
          return { locks: 0, hosts: 0, lost: [] };
        },
        expire: (a: string) => ({ address: a, total: 0, locks: 0, byHost: new Map() }),
        reclaimed$: new Subject<never>(),
      };
      const c = new FailoverController({ listeners: fakeListeners(m.calls), locks, monitors: m, graceSeconds: () => 50, journal });
      const seen: FailoverReport[] = [];
      c.reports$.subscribe((r) => seen.push(r));
      await c.handle(ev('up', '10.0.0.7'));
      assert.equal(tries, 3, 'two failures, then the take-over');
      assert.ok(seen.some((r) => r.type === 'up' && r.address === '10.0.0.7'), 'served');
      assert.deepEqual(seen.filter((r) => r.type === 'error'), [], 'the failures were tried again, not reported as the end');
      // A store that keeps failing: the address's removal ends the tries and is applied.
      tries = 0;
      const up = c.handle(ev('up', '10.0.0.8'));
      await new Promise((r) => setTimeout(r, 300));
      await c.handle(ev('down', '10.0.0.8'));
      await up.catch(() => undefined);
      assert.ok(tries >= 2 && tries <= 3, `tried ${tries} times before the removal came`);
      assert.ok(seen.some((r) => r.type === 'error' && r.address === '10.0.0.8' && r.step === 'take-over'));
      assert.ok(!seen.some((r) => r.type === 'up' && r.address === '10.0.0.8'), 'never announced');
      c.close();
    });

    it('an address whose sockets cannot be opened is not announced to clients', async () => {
      const m = fakeMonitors({ '10.0.0.9': 3 });
      const locks = new LockTable();
      const broken = new FailoverController({
        listeners: { addAddress: async () => { throw new Error('EADDRNOTAVAIL'); }, removeAddress: async () => undefined },
        locks, monitors: m, graceSeconds: () => 50, bindAttempts: 2, bindRetryMs: 1,
      });
      const seen: FailoverReport[] = [];
      broken.reports$.subscribe((r) => seen.push(r));
      await broken.handle(ev('up', '10.0.0.9'));
      await broken.settle();
      assert.deepEqual(seen.map((r) => r.type), ['error']);
      assert.deepEqual(m.calls.filter((c) => /^(bump|notify|activate)/.test(c)), [], 'no state bump, no SM_NOTIFY');
      assert.deepEqual(locks.grace.active(), [], 'no grace left without listeners');
      broken.close();
    });
  });
});
