// Each recorded trace (test/fixtures/netlink, see its README) replayed through the pipeline gives
// exactly the expected transitions.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { lastValueFrom, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { addressEvents, readTrace, replaySource, type AddressEvent } from '../../src/watch';

const fixture = (name: string): string => join(__dirname, '..', 'fixtures', 'netlink', `${name}.pcap`);
const replay = (name: string): Promise<AddressEvent[]> => lastValueFrom(replaySource(fixture(name), { pace: 'fast' }).pipe(addressEvents(), toArray()));
const brief = (events: AddressEvent[]): string[] => events.map((e) => `${e.type} ${e.address}`);

describe('watch fixtures replayed', () => {
  it('addr-v4: additions, a removal, and a primary taking its secondary with it', async () => {
    const events = await replay('addr-v4');
    assert.deepEqual(brief(events), ['up 10.0.0.5', 'up 10.0.0.6', 'up 10.0.3.7', 'down 10.0.3.7', 'down 10.0.0.6', 'down 10.0.0.5']);
    assert.ok(events.every((e) => e.source === 'replay' && e.family === 4 && e.ifindex === 3));
  });

  it('addr-v6: the DAD address is up only once DAD completes', async () => {
    assert.deepEqual(brief(await replay('addr-v6')), ['up fd00::6', 'up fd00::5', 'down fd00::5', 'down fd00::6']);
    // With the recorded spacing (virtual time): fd00::5 comes up about a second after fd00::6.
    const ts = new TestScheduler(assert.deepEqual);
    const seen: Array<[string, number]> = [];
    ts.run(() => {
      replaySource(fixture('addr-v6'), { scheduler: ts }).pipe(addressEvents({}, { scheduler: ts, now: () => ts.now() })).subscribe((e) => seen.push([`${e.type} ${e.address}`, e.detectedAt]));
    });
    const at = new Map(seen);
    assert.ok(at.get('up fd00::5')! - at.get('up fd00::6')! > 500, JSON.stringify(seen));
    const records = readTrace(fixture('addr-v6'));
    assert.ok(Math.abs(at.get('down fd00::6')! - (records[records.length - 1].at - records[0].at)) < 5);
  });

  it('link-down: both go down, IPv4 comes back with the link, IPv6 was flushed', async () => {
    assert.deepEqual(brief(await replay('link-down')), ['up 10.0.1.5', 'up fd00:1::5', 'down 10.0.1.5', 'down fd00:1::5', 'up 10.0.1.5']);
  });

  it('link-del: every address of the link goes down', async () => {
    const events = brief(await replay('link-del'));
    assert.deepEqual(events.slice(0, 3), ['up 10.0.2.5', 'up 10.0.2.6', 'up fd00:2::5']);
    assert.deepEqual(events.slice(3).sort(), ['down 10.0.2.5', 'down 10.0.2.6', 'down fd00:2::5']);
  });

  it('burst-1000: 500 up then 500 down, each address once each way, nothing left', async () => {
    const events = await replay('burst-1000');
    assert.equal(events.length, 1000);
    const state = new Map<string, string[]>();
    for (const e of events) state.set(e.address, [...(state.get(e.address) ?? []), e.type]);
    assert.equal(state.size, 500);
    for (const [address, types] of state) assert.deepEqual(types, ['up', 'down'], address);
    assert.ok(events.slice(0, 500).every((e) => e.type === 'up'));
  });

  it('a floating filter keeps only its addresses', async () => {
    const events = await lastValueFrom(replaySource(fixture('burst-1000'), { pace: 'fast' }).pipe(addressEvents({ floating: ['10.200.1.0/24'] }), toArray()));
    assert.equal(events.length, 400); // 10.200.1.1 … 10.200.1.200, up and down
  });
});
