// A crash is a failover to itself (issue 24, item 2): lockdropd killed -9 under load loses its
// descriptions (the kernel lets every lock go at once), and the restarted one takes its floating
// address's journal over as a taking-over node does: placeholders on the files, a grace for that
// address alone, SM_NOTIFY; the clients reclaim, and the grace ends by itself once every lock is
// back. Real processes: lockdropd in a network namespace with a floating address, NLM clients
// and a status monitor (registered with a real rpcbind) on the other end of a veth pair.
import assert from 'node:assert/strict';
import { NlmClient } from '../../src/nlm';
import { serveStatusMonitor } from '../../src/demo/statd-responder';
import type { StatusReport } from '../../src/control';
import { startRpcbind, vethNamespace } from '../support/netns';
import { daemonDir, daemonSuite, spawnDaemon, type DaemonProcess } from '../daemon/harness';
import { knfsdHandle, makeFile, mountTmpfs } from '../files/support';

const CLIENT = '10.78.1.1';
const VIP = '10.78.1.2';
// The second scene's own pair: the first one's namespace lives until the suite ends.
const CLIENT2 = '10.78.2.1';
const VIP2 = '10.78.2.2';
const FSID = 42;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const status = (d: DaemonProcess): StatusReport => JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;

describe('restart: kill -9 is a failover to itself', function () {
  this.timeout(120_000);
  const cleanups = daemonSuite();

  it('under load: every lock reclaimed after SM_NOTIFY, the grace of the address ended by itself', async () => {
    const stopRpcbind = await startRpcbind();
    cleanups.push(stopRpcbind);
    const m = mountTmpfs();
    cleanups.push(() => m.dispose());
    const ns = vethNamespace(CLIENT, VIP);
    cleanups.push(() => ns.dispose());
    const dir = daemonDir();
    const config = { exports: [{ path: m.dir, fsid: FSID, secure: false, rootSquash: false }] };
    const start = (): DaemonProcess => {
      const d = spawnDaemon(['--grace', '60', '--nlm-port', '4045', '--nsm-port', '4046'], { dir, config, netns: ns.name });
      cleanups.push(async () => {
        d.cleanup();
        await d.exited;
      });
      return d;
    };
    const first = start();
    await first.started();
    for (let i = 0; i < 100 && !status(first).addresses.some((a) => a.address === VIP && a.present); i++) await sleep(50);

    const fhs = Array.from({ length: 8 }, (_, i) => knfsdHandle(makeFile(m.dir, `f${i}`), FSID));
    const loadFh = knfsdHandle(makeFile(m.dir, 'load'), FSID);
    const k = await NlmClient.create({ server: { address: VIP, port: 4045 }, transport: 'udp', vers: 4, callerName: 'client-k', source: CLIENT });
    const z = await NlmClient.create({ server: { address: VIP, port: 4045 }, transport: 'udp', vers: 4, callerName: 'client-z', source: CLIENT, timeoutMs: 1_000 });
    cleanups.push(() => k.close(), () => z.close());
    for (const fh of fhs) assert.equal((await k.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 100n })).status, 'granted');

    // z locks and unlocks throughout; what it holds at any moment is what it reclaims.
    let zHolds: bigint | null = null;
    let running = true;
    const zLoop = (async () => {
      for (let i = 0; running; i++) {
        const offset = BigInt(i % 32);
        try {
          if ((await z.lock({ fh: loadFh, svid: 2, exclusive: true, offset, length: 1n })).status === 'granted') zHolds = offset;
          if ((await z.unlock({ fh: loadFh, svid: 2, offset, length: 1n })).status === 'granted') zHolds = null;
        } catch {
          await sleep(20); // the daemon is down: as a client, try again
        }
      }
    })();

    // Every SM_NOTIFY reclaims what its client holds, at once.
    const reclaims: Promise<string>[] = [];
    const statd = await serveStatusMonitor([CLIENT], () => {
      reclaims.push((async () => {
        const statuses = await Promise.all(fhs.map((fh) => k.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 100n, reclaim: true }).then((r) => r.status)));
        const held = zHolds;
        if (held !== null) statuses.push((await z.lock({ fh: loadFh, svid: 2, exclusive: true, offset: held, length: 1n, reclaim: true })).status);
        return statuses.join(',');
      })());
    });
    cleanups.push(() => statd.close());

    await sleep(300);
    first.child.kill('SIGKILL');
    await first.exited;
    const t0 = performance.now();
    const second = start();
    await second.started();
    const ended = await second.waitLog((l) => l.address === VIP && /^grace of 10\.78\.1\.2 ended: (\d+) of \1 locks? reclaimed by \d hosts? in/.test(l.msg), 30_000);
    const ms = performance.now() - t0;
    running = false;
    await zLoop;
    assert.ok(reclaims.length >= 1, 'SM_NOTIFY reached the clients');
    for (const r of await Promise.all(reclaims)) assert.ok(r.split(',').every((s) => s === 'granted'), `every reclaim granted: ${r}`);
    assert.ok(Number(ended.locks) >= 8, `client k's eight locks among the reclaimed (${ended.locks})`);
    const s = status(second);
    assert.deepEqual(s.addresses.filter((a) => a.grace !== null).map((a) => a.address), [], 'no grace left');
    assert.ok(s.locks >= 8);
    process.stdout.write(`      kill -9 to grace ended by itself: ${ms.toFixed(0)} ms (${ended.locks} locks)\n`);
  });

  it('a planned restart resumes the floating address as it was (no grace, no arrival); its journal is written on, so a kill -9 after it loses nothing', async () => {
    const stopRpcbind = await startRpcbind();
    cleanups.push(stopRpcbind);
    const m = mountTmpfs();
    cleanups.push(() => m.dispose());
    const ns = vethNamespace(CLIENT2, VIP2);
    cleanups.push(() => ns.dispose());
    const dir = daemonDir();
    const config = { exports: [{ path: m.dir, fsid: FSID, secure: false, rootSquash: false }] };
    const start = (): DaemonProcess => {
      const d = spawnDaemon(['--grace', '60', '--nlm-port', '4045', '--nsm-port', '4046'], { dir, config, netns: ns.name });
      cleanups.push(async () => {
        d.cleanup();
        await d.exited;
      });
      return d;
    };
    const first = start();
    await first.started();
    for (let i = 0; i < 100 && !status(first).addresses.some((a) => a.address === VIP2 && a.present); i++) await sleep(50);
    const fhs = Array.from({ length: 5 }, (_, i) => knfsdHandle(makeFile(m.dir, `g${i}`), FSID));
    const k = await NlmClient.create({ server: { address: VIP2, port: 4045 }, transport: 'udp', vers: 4, callerName: 'client-k', source: CLIENT2 });
    cleanups.push(() => k.close());
    for (const fh of fhs.slice(0, 4)) assert.equal((await k.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 100n })).status, 'granted');
    const notices: number[] = [];
    const statd = await serveStatusMonitor([CLIENT2], (n) => notices.push(n.state));
    cleanups.push(() => statd.close());

    const r = first.ctl(['restart', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const pid = (JSON.parse(r.stdout) as { pid: number }).pid;
    cleanups.push(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    await first.waitLog((l) => l.pid === pid && l.msg === `${VIP2} resumed after a planned restart: no grace, state unchanged, nobody notified`);
    const s = status(first);
    const vip = s.addresses.find((a) => a.address === VIP2)!;
    assert.deepEqual([vip.present, vip.grace, vip.locks], [true, null, 4], 'held as before: no grace');
    assert.equal(first.logs.filter((l) => l.pid === pid && / arrived: /.test(l.msg)).length, 0, 'no arrival, no SM_NOTIFY');
    // The restarted process writes the address's journal: a lock taken now survives a crash too.
    assert.equal((await k.lock({ fh: fhs[4]!, svid: 1, exclusive: true, offset: 0n, length: 100n })).status, 'granted');
    assert.deepEqual(notices, []);
    process.kill(pid, 'SIGKILL');
    await sleep(200);
    const third = start();
    await third.started();
    await sleep(500);
    assert.equal(notices.length, 1, 'SM_NOTIFY after the crash');
    for (const fh of fhs) assert.equal((await k.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 100n, reclaim: true })).status, 'granted');
    await third.waitLog((l) => l.address === VIP2 && /^grace of 10\.78\.2\.2 ended: 5 of 5 locks reclaimed by 1 host in/.test(l.msg), 10_000);
  });
});
