// Issue 19's basic scene, deterministic: client X holds range R of a real file through VIP1 on
// node A; client Y, a client of VIP2 on node B, asks for R and waits; VIP1 moves to B. X must
// reclaim R on B, and Y must not be given R before (nor after: X holds it again).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { knfsdHandle } from '../../src/exports';
import { Lab } from '../../src/demo/lab';
import { ensureBuilt } from '../daemon/harness';
import { endLab } from '../support/lab';
import { mountTmpfs, type Mounted } from '../support/files';
import { nameToHandle } from '../support/name-to-handle';
import { requireNamespaceRoot } from '../support/netns';

const VIP1 = '10.92.0.100';
const VIP2 = '10.92.0.101';
const FSID = 19;

describe('chaos scene (issue 19): a held lock survives its address\'s move', function () {
  this.timeout(120_000);
  let s: { lab: Lab; dir: string } | undefined;
  let fs: Mounted | undefined;

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });
  afterEach(async () => {
    await endLab(s);
    s = undefined;
    fs?.dispose();
    fs = undefined;
  });

  it('X holds R through VIP1 on A, Y (VIP2 on B) waits for R, VIP1 moves to B: X reclaims R, Y never gets it', async () => {
    fs = mountTmpfs(); // before the lab's hosts: their mount namespaces are copies
    const file = path.join(fs.dir, 'data');
    writeFileSync(file, Buffer.alloc(4096));
    const fh = knfsdHandle(FSID, nameToHandle(file)).toString('hex');
    const lab = new Lab(`lds${process.pid % 1000}`, '10.92.0');
    s = { lab, dir: mkdtempSync(path.join(tmpdir(), 'lockdrop-scene-')) };
    await lab.start();
    const a = await lab.addHost('a', 1);
    const b = await lab.addHost('b', 2);
    const hx = await lab.addHost('x', 11);
    const hy = await lab.addHost('y', 12);
    lab.exec(a, 'ip', ['addr', 'add', `${VIP1}/24`, 'dev', a.nic]);
    lab.exec(b, 'ip', ['addr', 'add', `${VIP2}/24`, 'dev', b.nic]);
    const shared = path.join(s.dir, 'shared');
    mkdirSync(shared);
    const nodes = [a, b].map((host) => {
      const own = path.join(s!.dir, host.name);
      mkdirSync(own, { mode: 0o700 });
      return { host, ...lab.startDaemon(host, own, { stateDir: shared, nlmPort: 4045, nsmPort: 4046, addresses: [`${VIP1}/32`, `${VIP2}/32`], sources: ['netlink', 'poll'], pollInterval: 1, grace: 15, leaseSeconds: 3, exports: [{ path: fs!.dir, fsid: FSID, secure: false, rootSquash: false }] }) };
    });
    for (const n of nodes) await lab.waitForControl(n.host, n.control);
    const x = await lab.startClient(hx);
    const y = await lab.startClient(hy);

    // X: bytes 0-99 through VIP1 (node A), kept and reclaimed on SM_NOTIFY by the client host.
    assert.deepEqual((await x.ask({ do: 'lock', server: VIP1, count: 1, fh }, 'locked')).statuses, { granted: 1 });
    // Y: the same bytes through VIP2 (node B), blocking: B waits in the kernel for A's lock.
    const yMark = y.count;
    assert.equal((await y.ask({ do: 'try', server: VIP2, offset: 0, length: 100, block: true, fh }, 'tried')).status, 'blocked');

    const xMark = x.count;
    lab.exec(a, 'ip', ['addr', 'del', `${VIP1}/24`, 'dev', a.nic]);
    lab.exec(b, 'ip', ['addr', 'add', `${VIP1}/24`, 'dev', b.nic]);
    const reclaimed = await x.wait('X reclaims after SM_NOTIFY from VIP1', (j) => j.event === 'reclaimed', 30_000, xMark);
    // Y's GRANTED, if any, came before the reclaim's answer or would within a second after it.
    const yGranted = await y.wait('a GRANTED at Y', (j) => j.event === 'granted', 1_000, yMark).catch(() => undefined);
    assert.deepEqual({ reclaimed: `${reclaimed.granted} of ${reclaimed.of}`, yGranted: yGranted ? `at ${yGranted.at - reclaimed.at} ms from the reclaim` : 'never' }, { reclaimed: '1 of 1', yGranted: 'never' });
  });
});
