// An address moves between two nodes on a bridge; before the taking node's first SM_NOTIFY from
// it, the client's neighbour cache must already hold the new node's MAC (a gratuitous ARP, or an
// unsolicited neighbour advertisement for IPv6, sent by the native addon, or by resource-agents'
// send_arp / send_ua without it), so the client's answers to the first exchange come back here.
// The client runs the real rpcbind and rpc.statd.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hostKey, type ClientHost } from '../../src/locks';
import { addonStatus, announceAddress } from '../../src/addon';
import { announceCommand, interfaceOf, neighbourAnnouncer, Nsm, NsmStore, RpcNsmSender } from '../../src/nsm';
import { bridgedNamespace, hasCommand, ip, requireNamespaceRoot, sh, uniqueName, type Netns } from '../support/netns';
import { nfsUtilsDir, spawnIsolated, waitFor } from './support';

const NET4 = { a: '10.179.0.1', b: '10.179.0.2', client: '10.179.0.3', vip: '10.179.0.100', prefix: 24 };
const NET6 = { a: 'fd00:179::1', b: 'fd00:179::2', client: 'fd00:179::3', vip: 'fd00:179::100', prefix: 64 };
const host = (callerName: string, address: string): ClientHost => ({ key: hostKey(callerName, address), callerName, address });

const macOf = (args: string[]): string => (JSON.parse(sh('ip', ['-j', ...args])) as Array<{ address: string }>)[0]!.address;
/** The client's neighbour entry for an address: its lladdr, or undefined. */
const neighbour = (ns: Netns, address: string): string | undefined =>
  (JSON.parse(sh('ip', ['-n', ns.name, '-j', 'neigh', 'show', address])) as Array<{ lladdr?: string }>)[0]?.lladdr;

describe('nsm: neighbours learn an arriving address before its first SM_NOTIFY', function () {
  this.timeout(60_000);
  let dir: string;
  let bridge = '';
  let portA = '';
  let devA = '';
  let nodeB: Netns & { dev: string };
  let client: Netns & { dev: string };
  let statd: ChildProcess | undefined;

  before(async function () {
    requireNamespaceRoot(this);
    for (const c of ['rpcbind', 'rpc.statd', 'unshare']) if (!hasCommand(c)) this.skip();
    dir = mkdtempSync(path.join(tmpdir(), 'nsm-announce-'));
    bridge = uniqueName('ldbr');
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('link', 'set', bridge, 'up');
    // Node A is the test namespace itself: the far end of a veth on the bridge.
    devA = uniqueName('vaa');
    portA = uniqueName('vap');
    ip('link', 'add', devA, 'type', 'veth', 'peer', 'name', portA);
    ip('link', 'set', portA, 'master', bridge, 'up');
    ip('link', 'set', devA, 'up');
    ip('addr', 'add', `${NET4.a}/${NET4.prefix}`, 'dev', devA);
    ip('addr', 'add', `${NET6.a}/${NET6.prefix}`, 'dev', devA, 'nodad');
    nodeB = bridgedNamespace(bridge, [`${NET4.b}/${NET4.prefix}`, `${NET6.b}/${NET6.prefix}`]);
    client = bridgedNamespace(bridge, [`${NET4.client}/${NET4.prefix}`, `${NET6.client}/${NET6.prefix}`]);
    // The client takes a neighbour update at once (the default locktime ignores one within 1 s of the last).
    for (const f of ['ipv4', 'ipv6']) client.exec('sysctl', ['-qw', `net.${f}.neigh.${client.dev}.locktime=0`]);
    const statdDir = nfsUtilsDir(path.join(dir, 'client-statd'));
    statd = spawnIsolated(client, `rpcbind -f -w & for i in $(seq 100); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done; exec rpc.statd -F -d -L -P ${statdDir}`);
    let log = '';
    statd.stderr!.on('data', (d) => (log += d));
    await waitFor('rpc.statd to start', () => /Waiting for client connections/.test(log)).catch((err: Error) => {
      throw new Error(`${err.message}: ${log}`);
    });
  });

  after(() => {
    statd?.kill('SIGKILL');
    client?.dispose();
    nodeB?.dispose();
    if (devA) sh('ip', ['link', 'del', devA], { allowFail: true });
    if (bridge) sh('ip', ['link', 'del', bridge], { allowFail: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const via of ['addon', 'tool'] as const) for (const net of [NET4, NET6]) {
    it(`${net === NET4 ? 'IPv4: gratuitous ARP' : 'IPv6: unsolicited neighbour advertisement'} (${via === 'addon' ? 'the addon' : "resource-agents' tool"}) before the first notice; the first exchange gets through`, async function () {
      if (via === 'addon' && !addonStatus().available) this.skip(); // the addon is not built: nothing of it to test
      const vip = `${net.vip}/${net === NET4 ? 32 : 128}`;
      const macA = macOf(['link', 'show', devA]);
      const macB = macOf(['-n', nodeB.name, 'link', 'show', nodeB.dev]);
      // The address was node B's, and the client talked to it there: its cache says so.
      ip('-n', nodeB.name, 'addr', 'add', vip, 'dev', nodeB.dev, ...(net === NET6 ? ['nodad'] : []));
      ip('-n', client.name, 'neigh', 'replace', net.vip, 'lladdr', macB, 'dev', client.dev, 'nud', 'reachable');
      assert.equal(neighbour(client, net.vip), macB, 'the client knows the address at node B');
      // It moves to node A (this namespace).
      ip('-n', nodeB.name, 'addr', 'del', vip, 'dev', nodeB.dev);
      ip('addr', 'add', vip, 'dev', devA, ...(net === NET6 ? ['nodad'] : []));
      try {
        assert.deepEqual(interfaceOf(net.vip), { device: devA, prefixLen: net === NET4 ? 32 : 128 });
        if (via === 'tool') assert.ok(announceCommand(net.vip, { device: devA, prefixLen: 32 })?.[0]?.endsWith(net === NET4 ? 'send_arp' : 'send_ua'), 'resource-agents\' tool is used');
        const seen: Array<string | undefined> = [];
        let announceMs = 0;
        const real = neighbourAnnouncer({ via });
        // Checked the moment the announcement is done, before the notifier sends anything.
        const announce = async (address: string): Promise<void> => {
          seen.push(`before:${neighbour(client, net.vip)}`);
          const t0 = performance.now();
          await real(address);
          announceMs = performance.now() - t0;
          // The peer's kernel handles the packet on its own time: allow it a moment (bounded).
          for (let i = 0; i < 50 && neighbour(client, net.vip) !== macA; i++) await new Promise((r) => setTimeout(r, 2));
          seen.push(neighbour(client, net.vip));
        };
        const nsm = new Nsm({ store: new NsmStore(path.join(dir, `state${net.prefix}`)), sender: new RpcNsmSender({ announce }) });
        await nsm.monitor(host('client', net.client), net.vip);
        const rep = await nsm.notify(net.vip, { timeoutMs: 5_000 });
        assert.deepEqual(seen, [`before:${macB}`, macA], 'the cache held node A\'s MAC before the first notice');
        assert.deepEqual(rep.notified, [net.client]);
        assert.ok(rep.ms < 1_500, `the first exchanges got through (${rep.ms} ms)`);
        // A spawned send_arp takes 60-90 ms (it sleeps before exiting); the addon's sends, a few syscalls.
        if (via === 'addon') assert.ok(announceMs < 50, `the addon announced in ${announceMs.toFixed(2)} ms: no process spawned`);
        await nsm.close();
      } finally {
        ip('addr', 'del', vip, 'dev', devA);
      }
    });
  }

  it('announceAddress refuses what it cannot announce with a clear error', function () {
    if (!addonStatus().available) this.skip(); // the addon is not built: nothing of it to test
    assert.throws(() => announceAddress('nosuchdev0', NET4.a), { code: 'ENODEV' });
    assert.throws(() => announceAddress('lo', '127.0.0.1'), { code: 'EOPNOTSUPP' }); // no Ethernet
    assert.throws(() => announceAddress(devA, 'not-an-address'), TypeError);
    assert.throws(() => announceAddress('', NET4.a), TypeError);
    assert.throws(() => announceAddress('x'.repeat(16), NET4.a), TypeError);
    assert.throws(() => announceAddress(devA, 'fd00:179::dead'), { code: 'EADDRNOTAVAIL' }); // not this node's
    // @ts-expect-error: bad argument types from JavaScript
    assert.throws(() => announceAddress(1, 2), TypeError);
  });
});
