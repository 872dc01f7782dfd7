// A refused request leaves a line at info naming the client, its caller_name and machine name,
// the address it came through and the reason — once per client and reason per interval, with a
// count of the ones not written; through the real daemon, a client outside an export's networks,
// a stale handle and a spent fd budget are logged.
import assert from 'node:assert/strict';
import { unlinkSync } from 'node:fs';
import { NlmClient } from '../../src/nlm';
import { RefusalLog } from '../../src/daemon/refusals';
import { knfsdHandle, makeFile, mountTmpfs } from '../files/support';
import { daemonSuite, spawnDaemon, type DaemonProcess } from './harness';

describe('daemon: refused requests are logged', function () {
  this.timeout(60_000);

  it('once per client and reason per interval, then with the count of those not written', () => {
    const lines: Array<{ o: Record<string, unknown>; msg: string }> = [];
    let t = 0;
    const r = new RefusalLog({ info: ((o: Record<string, unknown>, msg: string) => void lines.push({ o, msg })) as never }, 60_000, () => t);
    const from = (client: string, reason = 'network') => r.refused({ client, port: 800, machine: 'host-a', callerName: 'client-a', server: '10.0.0.5', reason, export: '/srv/a' });
    for (let i = 0; i < 5; i++) from('192.0.2.1');
    from('192.0.2.2');
    from('192.0.2.1', 'insecure-port');
    assert.equal(lines.length, 3);
    assert.equal(lines[0]!.msg, 'refused a request from 192.0.2.1 (caller_name "client-a", machine "host-a") through 10.0.0.5 on export /srv/a: its address is not among the export\'s clients');
    assert.equal(lines[0]!.o.callerName, 'client-a');
    t = 60_000;
    from('192.0.2.1');
    assert.equal(lines.length, 4);
    assert.match(lines[3]!.msg, /; 4 more refused since the last line$/);
    assert.equal(lines[3]!.o.suppressed, 4);
  });

  describe('through lockdropd', () => {
    const cleanups = daemonSuite();
    const spawn = (config: Record<string, unknown>): DaemonProcess => {
      const d = spawnDaemon([], { config: { logLevel: 'info', ...config } });
      cleanups.push(async () => {
        await d.stop('SIGKILL');
        d.cleanup();
      });
      return d;
    };

    it('a client outside the export is refused and named at info', async () => {
      const d = spawn({ exports: [{ path: '/srv/seven', fsid: 7, clients: ['192.0.2.0/24'], secure: false, fileLocks: false }] });
      const nlmPort = (await d.started()).nlmPort as number;
      const c = await NlmClient.create({ server: { address: '127.0.0.1', port: nlmPort }, transport: 'udp', vers: 4, callerName: 'outsider' });
      try {
        const fh = Buffer.from('0100010107000000' + '0c0000002a000000', 'hex');
        assert.equal((await c.lock({ fh, svid: 1, exclusive: true })).status, 'failed');
        const line = await d.waitLog((l) => /^refused a request from 127\.0\.0\.1/.test(l.msg));
        assert.equal(line.level, 30);
        assert.equal(line.reason, 'network');
        assert.equal(line.callerName, 'outsider');
        assert.equal(line.export, '/srv/seven');
      } finally {
        await c.close();
      }
    });

    it('a stale handle and a spent fd budget are refused and named at info, a conflict is not', async () => {
      const fs = mountTmpfs();
      cleanups.push(() => fs.dispose());
      const d = spawn({ maxOpenFiles: 2, exports: [{ path: fs.dir, fsid: 41, secure: false, rootSquash: false }] });
      const nlmPort = (await d.started()).nlmPort as number;
      const c = await NlmClient.create({ server: { address: '127.0.0.1', port: nlmPort }, transport: 'udp', vers: 4, callerName: 'refused-client' });
      const refusal = (reason: string) => d.waitLog((l) => /^refused a request from 127\.0\.0\.1 \(caller_name "refused-client", machine /.test(l.msg) && l.reason === reason);
      try {
        const gone = makeFile(fs.dir, 'gone');
        const staleFh = knfsdHandle(gone, 41);
        unlinkSync(gone);
        assert.equal((await c.lock({ fh: staleFh, svid: 1, exclusive: true })).status, 'stale_fh');
        const stale = await refusal('stale-handle');
        assert.equal(stale.level, 30);
        assert.equal(stale.status, 'stale_fh');
        assert.equal(stale.callerName, 'refused-client');
        assert.equal(stale.server, '127.0.0.1');

        // A conflict is lock traffic, not a refusal.
        const held = knfsdHandle(makeFile(fs.dir, 'held'), 41);
        assert.equal((await c.lock({ fh: held, svid: 1, exclusive: true })).status, 'granted');
        assert.equal((await c.lock({ fh: held, svid: 2, exclusive: true })).status, 'denied');

        const answers: string[] = [];
        for (let i = 0; i < 4 && !answers.includes('denied_nolocks'); i++) {
          answers.push((await c.lock({ fh: knfsdHandle(makeFile(fs.dir, `f${i}`), 41), svid: 1, exclusive: true })).status);
        }
        assert.equal(answers.at(-1), 'denied_nolocks', `the budget of 2 is spent: ${answers.join(', ')}`);
        const budget = await refusal('budget');
        assert.equal(budget.status, 'denied_nolocks');
        assert.match(budget.msg as string, /open-file budget/);
        assert.equal(d.logs.filter((l) => /^refused a request/.test(l.msg)).length, 2, 'the conflict left no refusal line');
      } finally {
        await c.close();
      }
    });
  });
});
