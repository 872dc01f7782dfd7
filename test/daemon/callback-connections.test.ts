// GRANTED callback connections do not outlive the address they were sent from (issue 21.10): a
// floating address leaves, and lockdropd's TCP connection from it to a client's callback port
// closes with it (before, it stayed established, an fd held for nothing).
import assert from 'node:assert/strict';
import { NlmClient } from '../../src/nlm';
import type { StatusReport } from '../../src/control';
import { sh, startRpcbind, vethNamespace } from '../support/netns';
import { waitFor } from '../support/wait';
import { daemonSuite, spawnDaemon } from './harness';

const HOST = '10.77.6.1';
const VIP = '10.77.6.2';

describe('daemon: GRANTED callback connections close with their address', function () {
  this.timeout(60_000);
  const cleanups = daemonSuite();

  it('a connection from a floating address to a callback port closes when the address leaves', async () => {
    const stopRpcbind = await startRpcbind();
    cleanups.push(stopRpcbind);
    const n = vethNamespace(HOST, VIP);
    cleanups.push(() => n.dispose());
    const d = spawnDaemon([], { netns: n.name });
    cleanups.push(() => d.cleanup());
    const port = (await d.started()).nlmPort as number;
    const status = (): StatusReport => JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;
    await waitFor(`${VIP} served`, () => status().addresses.some((s) => s.address === VIP && s.present));
    const c = await NlmClient.create({ server: { address: VIP, port }, transport: 'tcp', vers: 4, callerName: 'callback-client', source: HOST, callback: { rpcbind: true } });
    cleanups.push(() => c.close());
    const fh = Buffer.from('0100010163000000aabbccdd', 'hex');
    assert.equal((await c.lock({ fh, svid: 1, exclusive: true })).status, 'granted');
    assert.equal((await c.lock({ fh, svid: 2, exclusive: true, block: true })).status, 'blocked');
    const granted = c.waitGranted({ svid: 2 });
    assert.equal((await c.unlock({ fh, svid: 1 })).status, 'granted');
    await granted;
    // lockdropd's side, in its namespace: connections from the address to the callback port.
    const callbacks = (): number => sh('ip', ['netns', 'exec', n.name, 'ss', '-Htn', 'state', 'established', `( src ${VIP} and dport = :${c.callbackPort} )`]).split('\n').filter((l) => l.trim()).length;
    assert.equal(callbacks(), 1, 'the GRANTED went over TCP from the address');
    sh('ip', ['-n', n.name, 'addr', 'flush', 'to', `${VIP}/32`]);
    await waitFor(`${VIP} gone`, () => status().addresses.every((s) => s.address !== VIP || !s.present));
    await waitFor('the callback connection closed', () => callbacks() === 0, 3_000);
  });
});
