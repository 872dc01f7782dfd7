// The daemon's wiring of "a client rebooted": SM_NOTIFY into statd → Nsm.rebooted$ →
// LockTable.dropByHost, releasing exactly that host's locks; a spoofed notice releases nothing.
import assert from 'node:assert/strict';
import { NlmClient } from '../../src/nlm';
import { NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, encodeStatChge } from '../../src/nsm';
import { RpcClient } from '../../src/rpc';
import { XdrWriter } from '../../src/xdr';
import type { LockView } from '../../src/control';
import { setTimeout as sleep } from 'node:timers/promises';
import { ip, requireNamespaceRoot, sh, startRpcbind, uniqueName } from '../support/netns';
import { ensureBuilt, listing, spawnDaemon, type DaemonProcess } from './harness';

describe('daemon: a client reboot releases its locks', function () {
  this.timeout(60_000);
  let d: DaemonProcess;
  let nlmPort: number;
  let nsmPort: number;
  let link = '';

  before(async function () {
    requireNamespaceRoot(this);
    ensureBuilt();
    // A second local address for the spoofer (same name, other source address).
    link = uniqueName('ldr');
    ip('link', 'add', link, 'type', 'veth', 'peer', 'name', `${link}p`);
    ip('link', 'set', link, 'up');
    ip('addr', 'add', '10.88.0.9/32', 'dev', link);
    d = spawnDaemon(['--address', '10.99.0.0/16']);
    const s = await d.started();
    nlmPort = s.nlmPort as number;
    nsmPort = s.nsmPort as number;
  });
  after(() => {
    d?.cleanup();
    if (link) sh('ip', ['link', 'del', link], { allowFail: true });
  });

  const notify = async (monName: string, state: number, source?: string) => {
    const c = new RpcClient({ transport: 'udp', host: '127.0.0.1', port: nsmPort, source, timeoutMs: 3_000 });
    try {
      await c.call(NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, (w: XdrWriter) => encodeStatChge(w, { monName, state }));
    } finally {
      c.close();
    }
  };
  const holders = (): string[] => [...new Set(d.ctl(['locks', '--json']).stdout.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as LockView).client))].sort();

  it('drops the rebooted host only, and only for a notice from its address with a new state', async () => {
    const server = { address: '127.0.0.1', port: nlmPort };
    const a = await NlmClient.create({ server, transport: 'udp', vers: 4, callerName: 'host-a' });
    const b = await NlmClient.create({ server, transport: 'udp', vers: 4, callerName: 'host-b' });
    try {
      const fh = Buffer.from('0100010101000000ff000000', 'hex');
      assert.equal((await a.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 10n })).status, 'granted');
      assert.equal((await b.lock({ fh, svid: 2, exclusive: true, offset: 10n, length: 10n })).status, 'granted');
      assert.deepEqual(holders(), ['host-a@127.0.0.1', 'host-b@127.0.0.1']);

      await notify('host-a', 3, '10.88.0.9'); // right name, wrong address
      await d.waitLog((l) => l.msg === 'nsm: SM_NOTIFY ignored' && l.verdict === 'wrong-address');
      assert.deepEqual(holders(), ['host-a@127.0.0.1', 'host-b@127.0.0.1']);

      await notify('HOST-A', 3); // statd matches names ignoring case, as nfs-utils
      const dropped = await d.waitLog((l) => /host-a@127\.0\.0\.1 rebooted/.test(l.msg));
      assert.equal(dropped.locks, 1);
      assert.deepEqual(holders(), ['host-b@127.0.0.1']);

      await notify('host-b', 5);
      await d.waitLog((l) => /host-b@127\.0\.0\.1 rebooted/.test(l.msg));
      assert.deepEqual(holders(), []);
      // Handled: nothing needs their records any more.
      assert.deepEqual(listing(d.ctl(['monitors', '--json']).stdout), []);
      // host-b locks again; a late copy of its notice (the same state) is stale and releases nothing.
      assert.equal((await b.lock({ fh, svid: 2, exclusive: true, offset: 10n, length: 10n })).status, 'granted');
      await notify('host-b', 5);
      await d.waitLog((l) => l.msg === 'nsm: SM_NOTIFY ignored' && l.verdict === 'stale-state');
      assert.deepEqual(holders(), ['host-b@127.0.0.1']);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a reboot stops the host\'s pending GRANTED: none follows, and what it locks afterwards holds', async () => {
    const stopRpcbind = await startRpcbind(); // the client host's portmapper, where the daemon finds its callback
    const server = { address: '127.0.0.1', port: nlmPort };
    const d1 = await NlmClient.create({ server, transport: 'udp', vers: 4, callerName: 'host-d' });
    // host-c's lock manager takes the GRANTED but its answer never comes: the grant stays pending (retried every 1 s, 2 s, …).
    const c = await NlmClient.create({ server, transport: 'udp', vers: 4, callerName: 'host-c', callback: { rpcbind: true, reply: 'none' } });
    try {
      const fh = Buffer.from('0100010101000000fe000000', 'hex');
      assert.equal((await d1.lock({ fh, svid: 1 })).status, 'granted');
      assert.equal((await c.lock({ fh, svid: 2, block: true })).status, 'blocked');
      await d1.unlock({ fh, svid: 1 });
      await c.waitGranted({ svid: 2 });
      await notify('host-c', 7);
      await d.waitLog((l) => /host-c@127\.0\.0\.1 rebooted/.test(l.msg));
      let granted = 0;
      c.on('granted', () => void granted++);
      c.answerGranted('denied'); // rebooted: it waits for nothing
      await sleep(3_500); // past the next two retries the grant would have had
      assert.equal(granted, 0, 'no GRANTED after the reboot');
      assert.equal((await c.lock({ fh, svid: 2 })).status, 'granted'); // locks again after its reboot
      assert.equal((await d1.lock({ fh, svid: 1 })).status, 'denied', 'host-c holds its new lock');
    } finally {
      await c.close();
      await d1.close();
      await stopRpcbind();
    }
  });
});
