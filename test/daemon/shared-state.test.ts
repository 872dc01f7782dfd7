// Two nodes on one (shared) state directory, each lockdropd in its own UTS namespace (its own host
// name): started at the same moment they both come up (their writes never share a temp file),
// and each keeps its own identity — one node's monitored hosts are not the other's to notify,
// nor a reason for a grace on the other's addresses.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeSmStatRes, encodeMon, NSM_PROGRAM, NSM_VERSION, SM_MON, STAT_SUCC } from '../../src/nsm';
import { RpcClient } from '../../src/rpc';
import type { StatusReport } from '../../src/control';
import { requireNamespaceRoot } from '../support/netns';
import { DaemonProcess, LOCKDROPD, ensureBuilt } from './harness';

describe('daemon: two nodes sharing one state directory', function () {
  this.timeout(90_000);
  let shared: string;
  const running: DaemonProcess[] = [];

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
    shared = mkdtempSync(path.join(tmpdir(), 'lockdrop-shared-'));
  });
  afterEach(() => {
    for (const d of running.splice(0)) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  });
  after(() => rmSync(shared, { recursive: true, force: true }));

  /** lockdropd as node `host`: its own host name, its own control socket, the shared state directory. */
  const node = (host: string): DaemonProcess => {
    const run = path.join(shared, `run-${host}`);
    mkdirSync(run, { recursive: true, mode: 0o700 });
    const control = path.join(run, 'control.sock');
    const args = ['--state-dir', path.join(shared, 'state'), '--control', control, '--rpcbind', 'off', '--sources', 'poll', '--grace', '90'];
    const child = spawn('unshare', ['--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', host, process.execPath, LOCKDROPD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new DaemonProcess(child, run, control);
    running.push(d);
    return d;
  };
  const status = (d: DaemonProcess): StatusReport => JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;

  it('both come up when started together, every time', async () => {
    for (let round = 0; round < 4; round++) {
      const [a, b] = [node('node-a'), node('node-b')];
      await Promise.all([a.started(), b.started()]);
      assert.deepEqual(await Promise.all([a.stop(), b.stop()]), [0, 0]);
    }
    assert.deepEqual(readdirSync(path.join(shared, 'state')).filter((f) => f.startsWith('node-')).sort(), ['node-node-a', 'node-node-b']);
  });

  it("one node's monitored hosts are its own: the other neither notifies them nor opens a grace for them", async () => {
    const a = node('node-a');
    const nsmPort = (await a.started()).nsmPort as number;
    const c = new RpcClient({ transport: 'udp', host: '127.0.0.1', port: nsmPort, timeoutMs: 3000 });
    try {
      const myId = { myName: '127.0.0.1', myProg: 100021, myVers: 4, myProc: 16 };
      const r = (await c.call(NSM_PROGRAM, NSM_VERSION, SM_MON, (w) => encodeMon(w, { monId: { monName: '192.0.2.7', myId }, priv: Buffer.alloc(16) }), decodeSmStatRes)) as { res: number };
      assert.equal(r.res, STAT_SUCC);
    } finally {
      c.close();
    }
    const b = node('node-b');
    await b.started();
    const up = await b.waitLog((l) => /^node: serving/.test(l.msg));
    assert.equal(up.monitors, 0, "node-a's host is not node-b's");
    assert.equal(status(b).addresses.find((x) => x.address === '127.0.0.1')?.grace ?? null, null, 'no grace on node-b');
    assert.equal(await a.stop(), 0);
    const a2 = node('node-a');
    await a2.started();
    assert.equal((await a2.waitLog((l) => /^node: serving/.test(l.msg))).monitors, 1, 'node-a still has its host after a restart');
  });
});
