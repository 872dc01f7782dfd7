// Narrowing `addresses` by reload (docs/daemon.md): from the default (every address floating) to a
// list that still names a present address X, X keeps its locks and keeps being served; an address
// the list lets go (Z) becomes one of the node's own: served, its locks kept, never "removed".
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { NlmClient } from '../../src/nlm';
import type { LockView, StatusReport } from '../../src/control';
import { ip, requireNamespaceRoot, testInterface } from '../support/netns';
import { ensureBuilt, listing, spawnDaemon, type DaemonProcess } from './harness';

const X = '10.84.0.1'; // stays floating
const Y = '10.84.0.2'; // named by the new list, not present
const Z = '10.84.0.3'; // floating before, the node's own after
const fh = Buffer.from('0100010101000000ee000000', 'hex');

describe('daemon: narrowing addresses by reload', function () {
  this.timeout(60_000);
  let d: DaemonProcess | undefined;
  let nic: ReturnType<typeof testInterface> | undefined;

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });
  after(() => {
    d?.cleanup();
    nic?.dispose();
  });

  it('keeps the locks of every address and serves them all: X floating, Z the node\'s own', async () => {
    nic = testInterface([X, Z]);
    d = spawnDaemon([], { config: { logLevel: 'info' } });
    const nlmPort = (await d.started()).nlmPort as number;
    await d.waitLog((l) => l.msg.startsWith(`${X} arrived`));
    await d.waitLog((l) => l.msg.startsWith(`${Z} arrived`));
    const viaX = await NlmClient.create({ server: { address: X, port: nlmPort }, transport: 'udp', vers: 4, callerName: 'client-x' });
    const viaZ = await NlmClient.create({ server: { address: Z, port: nlmPort }, transport: 'tcp', vers: 4, callerName: 'client-z' });
    try {
      assert.equal((await viaX.lock({ fh, svid: 1, offset: 0n, length: 10n })).status, 'granted');
      assert.equal((await viaZ.lock({ fh, svid: 2, offset: 10n, length: 10n })).status, 'granted');

      writeFileSync(path.join(d.dir, 'lockdrop.yaml'), JSON.stringify({ logLevel: 'info', addresses: [X, Y] }));
      const r = d.ctl(['reload']);
      assert.equal(r.code, 0, r.stderr);
      await new Promise((res) => setTimeout(res, 600)); // a few poll rounds
      const after = [(await viaX.lock({ fh, svid: 1, offset: 20n, length: 10n })).status, (await viaZ.lock({ fh, svid: 2, offset: 30n, length: 10n })).status];
      assert.deepEqual(after, ['granted', 'granted'], `X still served, Z served as an own address: ${d.logs.filter((l) => l.level >= 40).map((l) => JSON.stringify(l)).join(' | ')}`);
      const servers = listing<LockView>(d.ctl(['locks', '--json']).stdout).map((l) => l.server).sort();
      assert.deepEqual(servers, [X, X, Z, Z], 'narrowing dropped no lock');
      await d.waitLog((l) => l.msg === `${Z} is no longer floating: served as one of the node's own addresses, its locks kept` && l.locks === 1);
      assert.ok(!d.logs.some((l) => l.msg.startsWith(`${X} removed`) || l.msg.startsWith(`${Z} removed`)), `no address reported removed: ${d.logs.map((l) => l.msg).join(' | ')}`);
      assert.equal((await viaX.unlock({ fh, svid: 1, offset: 0n, length: 10n })).status, 'granted');
      // Z leaves the machine: no drop (the node's own), and the daemon's health check ignores it.
      ip('addr', 'del', `${Z}/32`, 'dev', nic!.name);
      await new Promise((res) => setTimeout(res, 600));
      assert.equal(listing<LockView>(d.ctl(['locks', '--json', '--ip', Z]).stdout).length, 2, "Z's locks stay until dropped by hand");
      const status = JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;
      assert.deepEqual(status.addresses.filter((a) => a.present).map((a) => a.address), [X]);
      const check = d.ctl(['check']);
      assert.equal(check.code, 0, check.stdout + check.stderr);
    } finally {
      await viaX.close();
      await viaZ.close();
    }
  });
});
