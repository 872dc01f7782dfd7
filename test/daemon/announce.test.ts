// An arriving floating address is announced to its neighbours (gratuitous ARP) by lockdropd even
// when it has no recorded hosts to notify: added with plain `ip addr add` (which announces
// nothing), a client whose neighbour cache still names the old node learns the new one at once
// instead of timing out for seconds.
import assert from 'node:assert/strict';
import { bridgedNamespace, ip, requireNamespaceRoot, sh, uniqueName, type Netns } from '../support/netns';
import { ensureBuilt, spawnDaemon, type DaemonProcess } from './harness';

const A = '10.181.0.1';
const OLD = '10.181.0.2';
const CLIENT = '10.181.0.3';
const VIP = '10.181.0.100';

const macOf = (args: string[]): string => (JSON.parse(sh('ip', ['-j', ...args])) as Array<{ address: string }>)[0]!.address;
const neighbour = (ns: Netns, address: string): string | undefined =>
  (JSON.parse(sh('ip', ['-n', ns.name, '-j', 'neigh', 'show', address])) as Array<{ lladdr?: string }>)[0]?.lladdr;

describe('daemon: an arriving address is announced even with nobody to notify', function () {
  this.timeout(60_000);
  let bridge = '';
  let devA = '';
  let old: (Netns & { dev: string }) | undefined;
  let client: (Netns & { dev: string }) | undefined;
  let d: DaemonProcess | undefined;

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
    bridge = uniqueName('ldbr');
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('link', 'set', bridge, 'up');
    devA = uniqueName('vaa');
    const port = uniqueName('vap');
    ip('link', 'add', devA, 'type', 'veth', 'peer', 'name', port);
    ip('link', 'set', port, 'master', bridge, 'up');
    ip('link', 'set', devA, 'up');
    ip('addr', 'add', `${A}/24`, 'dev', devA);
    old = bridgedNamespace(bridge, [`${OLD}/24`]);
    client = bridgedNamespace(bridge, [`${CLIENT}/24`]);
    client.exec('sysctl', ['-qw', `net.ipv4.neigh.${client.dev}.locktime=0`]);
  });
  after(() => {
    d?.cleanup();
    client?.dispose();
    old?.dispose();
    if (devA) sh('ip', ['link', 'del', devA], { allowFail: true });
    if (bridge) sh('ip', ['link', 'del', bridge], { allowFail: true });
  });

  it("the client's stale neighbour entry names this node right after the arrival", async () => {
    d = spawnDaemon(['--address', `${VIP}/32`]);
    await d.started();
    const macA = macOf(['link', 'show', devA]);
    const macOld = macOf(['-n', old!.name, 'link', 'show', old!.dev]);
    // The address was on the old node, and the client talked to it there.
    ip('-n', client!.name, 'neigh', 'replace', VIP, 'lladdr', macOld, 'dev', client!.dev, 'nud', 'reachable');
    ip('addr', 'add', `${VIP}/24`, 'dev', devA);
    const up = await d.waitLog((l) => l.msg.startsWith(`${VIP} arrived`));
    assert.equal(up.monitors, 0, 'no host to notify');
    for (let i = 0; i < 100 && neighbour(client!, VIP) !== macA; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(neighbour(client!, VIP), macA, 'the client learnt the new node');
  });
});
