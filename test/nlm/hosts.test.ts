// MonitoredHosts on its own (a fake HostMonitor and clock): one monitor per (host, address),
// concurrent first locks share one SM_MON, idle hosts holding nothing are unmonitored by the
// sweep, and failover's forgetAddress / a reboot's forgetHost never unmonitor.
import assert from 'node:assert/strict';
import { MonitoredHosts, type HostMonitor } from '../../src/nlm';
import { hostKey, type ClientHost } from '../../src/locks';

const host = (name: string, address: string): ClientHost => ({ key: hostKey(name, address), callerName: name, address });

function setup(answer: (h: ClientHost) => Promise<boolean> | boolean = () => true) {
  const calls: string[] = [];
  const monitor: HostMonitor = {
    monitor: (h, a) => {
      calls.push(`mon ${h.key} ${a}`);
      return answer(h);
    },
    unmonitor: (h, a) => void calls.push(`unmon ${h.key} ${a}`),
  };
  let now = 0;
  const holding = new Map<string, Set<string>>();
  const hosts = new MonitoredHosts(monitor, { idleMs: 1_000, gcIntervalMs: 3_600_000, now: () => now, hostsAt: (a) => holding.get(a) ?? new Set() });
  return { calls, hosts, holding, advance: (ms: number) => void (now += ms) };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('nlm monitored hosts', () => {
  it('monitors once per host and address; a second address is a second monitor', () => {
    const { calls, hosts } = setup();
    const a = host('a', '10.0.0.1');
    for (let i = 0; i < 5; i++) assert.equal(hosts.ensure(a, 'vip1'), true);
    assert.equal(hosts.ensure(a, 'vip2'), true);
    assert.deepEqual(calls, ['mon a@10.0.0.1 vip1', 'mon a@10.0.0.1 vip2']);
    hosts.close();
  });

  it('concurrent first locks share one pending monitor; a refusal is not remembered', async () => {
    let resolve!: (ok: boolean) => void;
    const { calls, hosts } = setup(() => new Promise<boolean>((r) => (resolve = r)));
    const a = host('a', '10.0.0.1');
    const p1 = hosts.ensure(a, 'vip');
    const p2 = hosts.ensure(a, 'vip');
    assert.equal(calls.length, 1);
    resolve(false);
    assert.deepEqual([await p1, await p2], [false, false]);
    assert.equal(hosts.isMonitored(a.key, 'vip'), false);
    const p3 = hosts.ensure(a, 'vip');
    resolve(true);
    assert.equal(await p3, true);
    assert.equal(calls.length, 2);
    hosts.close();
  });

  it('a monitor that throws or rejects counts as a refusal', async () => {
    const { hosts } = setup((h) => {
      if (h.callerName === 'throws') throw new Error('boom');
      return Promise.reject(new Error('nope'));
    });
    assert.equal(hosts.ensure(host('throws', '10.0.0.1'), 'vip'), false);
    assert.equal(await hosts.ensure(host('rejects', '10.0.0.1'), 'vip'), false);
    hosts.close();
  });

  it('the sweep unmonitors only hosts idle for idleMs that hold nothing there', async () => {
    const { calls, hosts, holding, advance } = setup();
    const [a, b] = [host('a', '10.0.0.1'), host('b', '10.0.0.2')];
    hosts.ensure(a, 'vip');
    hosts.ensure(b, 'vip');
    holding.set('vip', new Set([b.key]));
    advance(500);
    hosts.touch(a.key, 'vip');
    advance(600);
    assert.equal(hosts.sweep(), 0); // a was active 600 ms ago, b holds a lock
    advance(500);
    assert.equal(hosts.sweep(), 1);
    await tick();
    assert.equal(calls.at(-1), 'unmon a@10.0.0.1 vip');
    holding.set('vip', new Set());
    assert.equal(hosts.sweep(), 1);
    await tick();
    assert.equal(calls.at(-1), 'unmon b@10.0.0.2 vip');
    hosts.close();
  });

  it('forgetAddress and forgetHost drop entries without unmonitoring', async () => {
    const { calls, hosts, advance } = setup();
    const [a, b] = [host('a', '10.0.0.1'), host('b', '10.0.0.2')];
    hosts.ensure(a, 'vip1');
    hosts.ensure(b, 'vip1');
    hosts.ensure(a, 'vip2');
    hosts.forgetAddress('vip1');
    hosts.forgetHost(a.key);
    advance(10_000);
    assert.equal(hosts.sweep(), 0);
    await tick();
    assert.ok(calls.every((c) => c.startsWith('mon')));
    hosts.ensure(a, 'vip1'); // monitored afresh
    assert.equal(calls.length, 4);
    hosts.close();
  });
});
