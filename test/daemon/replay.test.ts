// `lockdropd --replay FILE`: the daemon runs from a recorded trace instead of the live sources.
import assert from 'node:assert/strict';
import path from 'node:path';
import type { StatusReport } from '../../src/control';
import { requireNamespaceRoot } from '../support/netns';
import { REPO, ensureBuilt, spawnDaemon, type DaemonProcess } from './harness';

describe('daemon: --replay', function () {
  this.timeout(60_000);
  let d: DaemonProcess | undefined;

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });
  after(() => d?.cleanup());

  it('takes its address events from the trace and says so in status and metrics', async () => {
    // addr-v4.pcap: up 10.0.0.5, .6 and 10.0.3.7, then down 10.0.3.7, .6, .5 (see its README).
    d = spawnDaemon(['--replay', path.join(REPO, 'test', 'fixtures', 'netlink', 'addr-v4.pcap'), '--metrics', '127.0.0.1:0']);
    const started = await d.started();
    for (const a of ['10.0.0.5', '10.0.0.6', '10.0.3.7']) await d.waitLog((l) => l.address === a && / removed/.test(l.msg), 30_000);
    // The end of the trace is said, and the daemon keeps running on what it left.
    const end = await d.waitLog((l) => /^replay: end of the trace /.test(l.msg), 30_000);
    assert.ok((end.changes as number) >= 6, `changes: ${end.changes}`);
    assert.equal(d.child.exitCode, null);
    const s = JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;
    assert.deepEqual(s.sources.map((x) => [x.name, x.active]), [['replay', true], ['poll', false]]);
    assert.match(s.sources[0]!.reason ?? '', /: ended after \d+ address changes$/);
    assert.deepEqual(s.addresses.filter((a) => a.present).map((a) => a.address), []);
    const text = await (await fetch(`http://127.0.0.1:${started.metricsPort}/metrics`)).text();
    assert.match(text, /lockdrop_address_events_total\{source="replay",type="up"\} 3/);
    assert.match(text, /lockdrop_address_events_total\{source="replay",type="down"\} 3/);
    assert.match(text, /lockdrop_drops_total\{trigger="replay"\} 3/);
  });
});
