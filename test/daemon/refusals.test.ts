// A refused request leaves a line at info naming the client, its machine name, the address it
// came through and the reason — once per client and reason per interval, with a count of the
// ones not written; through the real daemon, a client outside an export's networks is logged.
import assert from 'node:assert/strict';
import { NlmClient } from '../../src/nlm';
import { RefusalLog } from '../../src/daemon/refusals';
import { requireNamespaceRoot } from '../support/netns';
import { ensureBuilt, spawnDaemon, type DaemonProcess } from './harness';

describe('daemon: refused requests are logged', function () {
  this.timeout(60_000);

  it('once per client and reason per interval, then with the count of those not written', () => {
    const lines: Array<{ o: Record<string, unknown>; msg: string }> = [];
    let t = 0;
    const r = new RefusalLog({ info: ((o: Record<string, unknown>, msg: string) => void lines.push({ o, msg })) as never }, 60_000, () => t);
    const from = (client: string, reason = 'network') => r.refused({ client, port: 800, machine: 'host-a', server: '10.0.0.5', reason, export: '/srv/a' });
    for (let i = 0; i < 5; i++) from('192.0.2.1');
    from('192.0.2.2');
    from('192.0.2.1', 'insecure-port');
    assert.equal(lines.length, 3);
    assert.equal(lines[0]!.msg, "refused a request from 192.0.2.1 (host-a) through 10.0.0.5 on export /srv/a: its address is not among the export's clients");
    t = 60_000;
    from('192.0.2.1');
    assert.equal(lines.length, 4);
    assert.match(lines[3]!.msg, /; 4 more refused since the last line$/);
    assert.equal(lines[3]!.o.suppressed, 4);
  });

  describe('through lockdropd', () => {
    let d: DaemonProcess | undefined;
    before(function () {
      requireNamespaceRoot(this);
      ensureBuilt();
    });
    after(() => d?.cleanup());

    it('a client outside the export is refused and named at info', async () => {
      d = spawnDaemon([], { config: { logLevel: 'info', exports: [{ path: '/srv/seven', fsid: 7, clients: ['192.0.2.0/24'], secure: false, fileLocks: false }] } });
      const nlmPort = (await d.started()).nlmPort as number;
      const c = await NlmClient.create({ server: { address: '127.0.0.1', port: nlmPort }, transport: 'udp', vers: 4, callerName: 'outsider' });
      try {
        const fh = Buffer.from('0100010107000000' + '0c0000002a000000', 'hex');
        assert.equal((await c.lock({ fh, svid: 1, exclusive: true })).status, 'failed');
        const line = await d.waitLog((l) => /^refused a request from 127\.0\.0\.1/.test(l.msg));
        assert.equal(line.level, 30);
        assert.equal(line.reason, 'network');
        assert.equal(line.export, '/srv/seven');
      } finally {
        await c.close();
      }
    });
  });
});
