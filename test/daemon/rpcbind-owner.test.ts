// One lockdropd per rpcbind, against the real rpcbind and real competitors: a second lockdropd
// (another state directory) is refused naming the first; the real rpc.statd holding statd is
// named; takeover is possible when asked; a clean stop leaves another's registration alone; a
// restarted rpcbind gets the registration back; rpcbind missing at start is a warning.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pino } from 'pino';
import { RpcbindKeeper } from '../../src/daemon/rpcbind-owner';
import path from 'node:path';
import type { StatusReport } from '../../src/control';
import { hasCommand, requireNamespaceRoot, sh, startRpcbind } from '../support/netns';
import { daemonDir, ensureBuilt, spawnDaemon, type DaemonProcess } from './harness';

/** rpcinfo -p rows "prog vers proto port" of NLM and statd. */
const registered = (): string[] =>
  sh('rpcinfo', ['-p', '127.0.0.1'], { allowFail: true })
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[0] === '100021' || f[0] === '100024')
    .map((f) => f.slice(0, 4).join(' '))
    .sort();
const portsOf = (rows: string[], prog: string): Set<string> => new Set(rows.filter((r) => r.startsWith(`${prog} `)).map((r) => r.split(' ')[3]!));

describe('daemon: one lockdropd per rpcbind', function () {
  this.timeout(90_000);
  const running: DaemonProcess[] = [];
  let stopRpcbind: (() => Promise<void>) | undefined;

  before(function () {
    requireNamespaceRoot(this);
    if (!hasCommand('rpcbind') || !hasCommand('rpcinfo')) throw new Error('rpcbind and rpcinfo are needed (bash scripts/setup.sh)');
    ensureBuilt();
  });
  beforeEach(async () => {
    stopRpcbind = await startRpcbind();
  });
  afterEach(async () => {
    for (const d of running.splice(0)) d.cleanup();
    await stopRpcbind?.();
  });
  const start = (args: string[]): DaemonProcess => {
    const d = spawnDaemon(['--rpcbind', 'auto', ...args]);
    running.push(d);
    return d;
  };

  it('a second lockdropd on another state directory is refused, naming the first; its failed start leaves the first registered', async () => {
    const first = start([]);
    const s = await first.started();
    const before = registered();
    assert.deepEqual(portsOf(before, '100021'), new Set([String(s.nlmPort)]));
    const second = start([]);
    assert.equal(await second.exited, 1);
    assert.match(second.stderr, new RegExp(`NLM \\(100021\\) on port ${s.nlmPort}/udp\\+tcp and statd \\(100024\\) on port ${s.nsmPort}/udp\\+tcp are registered with rpcbind by lockdropd\\[${first.child.pid}\\]`));
    assert.match(second.stderr, /another lock manager is running \(stop it, or start lockdropd with --rpcbind takeover\)/);
    assert.deepEqual(registered(), before, 'the refused start changed nothing');
    assert.equal((JSON.parse(first.ctl(['status', '--json']).stdout) as StatusReport).rpcbind, true);
  });

  it('takeover: the second one registers over the first, whose clean stop then leaves the second registered; the first reports it lost the registration', async () => {
    // The first in auto mode: it reports the loss and leaves the registration to the second.
    const first = start([]);
    await first.started();
    const second = start(['--rpcbind', 'takeover']);
    const s2 = await second.started();
    assert.ok(second.logs.some((l) => /taking over: .* registered with rpcbind by lockdropd\[\d+\]/.test(l.msg)));
    assert.deepEqual(portsOf(registered(), '100021'), new Set([String(s2.nlmPort)]));
    await first.waitLog((l) => /another lock manager took the registration over/.test(l.msg), 15_000);
    assert.equal((JSON.parse(first.ctl(['status', '--json']).stdout) as StatusReport).rpcbind, false, "the first one's status says so");
    assert.equal(await first.stop(), 0);
    const after = registered();
    assert.deepEqual(portsOf(after, '100021'), new Set([String(s2.nlmPort)]), 'the first one unregistered only what was still its own');
    assert.deepEqual(portsOf(after, '100024'), new Set([String(s2.nsmPort)]));
    assert.equal(await second.stop(), 0);
    assert.deepEqual(registered(), []);
  });

  it("refuses to start beside the real rpc.statd, naming it; a crashed lockdropd's registration (nothing listening) is replaced", async function () {
    if (!hasCommand('rpc.statd')) this.skip();
    const dir = daemonDir();
    for (const d of ['sm', 'sm.bak']) mkdirSync(path.join(dir, 'nfs', d), { recursive: true });
    const statd = spawn('rpc.statd', ['-F', '-P', path.join(dir, 'nfs'), '-p', '40499'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && !portsOf(registered(), '100024').has('40499'); i++) await new Promise((r) => setTimeout(r, 50));
      const refused = start([]);
      assert.equal(await refused.exited, 1);
      assert.match(refused.stderr, /statd \(100024\) on port 40499\/udp\+tcp(\+udp6\+tcp6)? is registered with rpcbind by rpc\.statd\[\d+\]/);
    } finally {
      statd.kill('SIGTERM');
      await new Promise((r) => statd.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
    // A lockdropd killed without a stop leaves its registration behind: the next one takes its place.
    const crashed = start([]);
    const c = await crashed.started();
    crashed.child.kill('SIGKILL');
    await crashed.exited;
    assert.ok(portsOf(registered(), '100021').has(String(c.nlmPort)), 'left behind');
    const next = start([]);
    const n = await next.started();
    assert.deepEqual(portsOf(registered(), '100021'), new Set([String(n.nlmPort)]));
  });

  it('registers again after rpcbind restarts and loses the registration; rpcbind missing at start is a warning, then registered once it answers', async () => {
    const d = start([]);
    const s = await d.started();
    await stopRpcbind!();
    stopRpcbind = undefined;
    // rpcbind -w would restore its registrations on restart; remove them so it starts empty, as after a crash.
    sh('rm', ['-rf', '/run/rpcbind']);
    await d.waitLog((l) => l.level === 40 && /rpcbind is not reachable/.test(l.msg), 15_000);
    assert.equal((JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport).rpcbind, false);
    stopRpcbind = await startRpcbind();
    await d.waitLog((l) => /registered again|registered with rpcbind/.test(l.msg) && l.time !== undefined && d.logs.indexOf(l) > d.logs.findIndex((x) => /rpcbind is not reachable/.test(x.msg)), 15_000);
    assert.deepEqual(portsOf(registered(), '100021'), new Set([String(s.nlmPort)]));
    assert.equal((JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport).rpcbind, true);
    assert.equal(await d.stop(), 0);

    // No rpcbind at all at start: a warning (not info), and the daemon still starts.
    await stopRpcbind();
    stopRpcbind = undefined;
    const lonely = start([]);
    await lonely.started();
    assert.ok(lonely.logs.some((l) => l.level === 40 && /rpcbind is not reachable/.test(l.msg)), JSON.stringify(lonely.logs.map((l) => l.msg)));
  });

  it("checks at once when rpc.nfsd writes knfsd's control files: NLM the kernel unregistered is back within milliseconds, not at the next period", async () => {
    const nfsd = mkdtempSync(path.join(tmpdir(), 'lockdrop-nfsd-'));
    writeFileSync(path.join(nfsd, 'threads'), '0\n');
    const entries = () => [{ prog: 100021, vers: 4, protocol: 'udp' as const, port: 40111 }, { prog: 100021, vers: 4, protocol: 'tcp' as const, port: 40111 }];
    // A period far longer than the test: only the write can bring the registration back.
    const keeper = new RpcbindKeeper({ mode: 'takeover', entries, log: pino({ level: 'silent' }), intervalMs: 600_000, nfsdDir: nfsd });
    try {
      await keeper.start();
      assert.deepEqual(portsOf(registered(), '100021'), new Set(['40111']));
      // What the kernel's svc_unregister does when nfsd starts its lockd: every NLM version unset.
      sh('rpcinfo', ['-d', '100021', '4']);
      assert.deepEqual(portsOf(registered(), '100021'), new Set());
      const t0 = Date.now();
      writeFileSync(path.join(nfsd, 'threads'), '8\n'); // rpc.nfsd starting nfsd
      while (!portsOf(registered(), '100021').has('40111')) {
        assert.ok(Date.now() - t0 < 3_000, 'registered again within 3 s');
        await new Promise((r) => setTimeout(r, 10));
      }
      console.log(`      registered again ${Date.now() - t0} ms after the write to threads`);
    } finally {
      await keeper.stop();
      rmSync(nfsd, { recursive: true, force: true });
    }
    assert.deepEqual(registered(), []);
  });
});
