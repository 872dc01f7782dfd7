// The node's own addresses and identity through lockdropd:
//  - NLM is served on a local address that is not floating, and a lock taken through it stays
//    when a floating address fails over;
//  - SM_MON over loopback (this node's kernel lockd monitoring a server) with a host name is
//    resolved and filed under 127.0.0.1; one state number for every non-floating address;
//  - after a restart the node's identity has a new state, its addresses a grace period, and the
//    monitored host (a real rpc.statd in another namespace) gets SM_NOTIFY.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { NlmClient } from '../../src/nlm';
import { decodeSmStatRes, encodeMon, encodeSmName, NSM_PROGRAM, NSM_VERSION, SM_MON, SM_STAT, STAT_SUCC } from '../../src/nsm';
import { RpcClient } from '../../src/rpc';
import type { LockView, MonitorView, StatusReport } from '../../src/control';
import { hasCommand, ip, requireNamespaceRoot, sh, testInterface, vethNamespace, type Netns } from '../support/netns';
import { nfsUtilsDir, spawnIsolated, waitFor } from '../nsm/support';
import { ensureBuilt, listing, spawnDaemon, type DaemonProcess } from './harness';

const OWN = '10.178.0.1'; // this node's own address (not floating), on a veth to the peer
const PEER = '10.178.0.2'; // an NFS server this node's kernel lockd locks with: it runs rpc.statd
const VIP = '10.99.0.5';
const fh = Buffer.from('0100010101000000ee000000', 'hex');

describe('daemon: the node\'s own addresses and identity', function () {
  this.timeout(90_000);
  let d: DaemonProcess;
  let ns: Netns;
  let vip: ReturnType<typeof testInterface>;
  let statd: ReturnType<Netns['spawn']> | undefined;
  let statdLog = '';
  let hostsBound = false;
  let nsmPort = 0;

  before(async function () {
    requireNamespaceRoot(this);
    for (const c of ['rpcbind', 'rpc.statd', 'unshare']) if (!hasCommand(c)) this.skip();
    ensureBuilt();
    ns = vethNamespace(OWN, PEER);
    vip = testInterface([VIP]);
    // The peer's name, for the resolver (the test's mount namespace is private to this run).
    const hosts = path.join(tmpdir(), `lockdrop-node-hosts-${process.pid}`);
    writeFileSync(hosts, `${readFileSync('/etc/hosts', 'utf8')}\n${PEER} nfs-server.test\n`);
    sh('mount', ['--bind', hosts, '/etc/hosts']);
    hostsBound = true;
    d = spawnDaemon(['--address', `${VIP}/32`]);
    nsmPort = (await d.started()).nsmPort as number;
    await d.waitLog((l) => l.msg.startsWith(`${VIP} arrived`));
  });
  after(() => {
    statd?.kill('SIGKILL');
    d?.cleanup();
    vip?.dispose();
    ns?.dispose();
    if (hostsBound) sh('umount', ['/etc/hosts'], { allowFail: true });
  });

  const locks = (): LockView[] => d.ctl(['locks', '--json']).stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as LockView);
  const nsmCall = async <R>(to: string, proc: number, enc: Parameters<RpcClient['call']>[3], dec: Parameters<RpcClient['call']>[4]): Promise<R> => {
    const c = new RpcClient({ transport: 'udp', host: to, port: nsmPort, timeoutMs: 3000 });
    try {
      return (await c.call(NSM_PROGRAM, NSM_VERSION, proc, enc, dec)) as R;
    } finally {
      c.close();
    }
  };

  it('serves NLM on a non-floating address; its locks stay when a floating address fails over', async () => {
    const nlmPort = (JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport).nlmPort;
    const own = await NlmClient.create({ server: { address: OWN, port: nlmPort }, transport: 'tcp', vers: 4, callerName: 'local-app' });
    const floating = await NlmClient.create({ server: { address: VIP, port: nlmPort }, transport: 'udp', vers: 4, callerName: 'vip-app' });
    try {
      assert.equal((await own.lock({ fh, svid: 1, offset: 0n, length: 10n })).status, 'granted');
      assert.equal((await floating.lock({ fh, svid: 2, offset: 10n, length: 10n })).status, 'granted');
      assert.deepEqual(locks().map((l) => l.server).sort(), [OWN, VIP].sort());
      ip('addr', 'del', `${VIP}/32`, 'dev', vip.name);
      await d.waitLog((l) => l.msg.startsWith(`${VIP} removed`));
      assert.deepEqual(locks().map((l) => l.server), [OWN], 'only the floating address\'s lock dropped');
      assert.equal((await own.lock({ fh, svid: 1, offset: 20n, length: 10n })).status, 'granted', 'still served');
    } finally {
      await own.close();
      await floating.close();
    }
  });

  it('SM_MON over loopback resolves a host name and files it under the node; one state for the node\'s addresses', async () => {
    const myId = { myName: '127.0.0.1', myProg: 100021, myVers: 4, myProc: 16 };
    const res = await nsmCall<{ res: number; state: number }>('127.0.0.1', SM_MON, (w) => encodeMon(w, { monId: { monName: 'nfs-server.test', myId }, priv: Buffer.alloc(16, 1) }), decodeSmStatRes);
    assert.equal(res.res, STAT_SUCC);
    const monitors = listing<MonitorView>(d.ctl(['monitors', '--json']).stdout);
    assert.deepEqual(monitors.filter((m) => m.host === 'nfs-server.test').map((m) => [m.server, m.address]), [['127.0.0.1', PEER]]);
    const viaOwnAddress = listing<MonitorView>(d.ctl(['monitors', '--ip', OWN, '--json']).stdout);
    assert.deepEqual(viaOwnAddress.map((m) => m.host).sort(), ['local-app', 'nfs-server.test'], 'an own address shows the node\'s records');
    const viaOwn = await nsmCall<{ state: number }>(OWN, SM_STAT, (w) => encodeSmName(w, 'x'), decodeSmStatRes);
    assert.equal(viaOwn.state, res.state, 'the node\'s own addresses share its state number');
  });

  it('after a restart: a new state, grace on the node\'s addresses, and SM_NOTIFY to the real rpc.statd it monitors', async () => {
    const before = (await nsmCall<{ state: number }>('127.0.0.1', SM_STAT, (w) => encodeSmName(w, 'x'), decodeSmStatRes)).state;
    statd = spawnIsolated(ns, `rpcbind -f -w & for i in $(seq 100); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done; exec rpc.statd -F -d -L -P ${nfsUtilsDir(path.join(d.dir, 'peer-statd'))}`);
    statd.stderr!.on('data', (c) => (statdLog += c));
    await waitFor('rpc.statd to start', () => /Waiting for client connections/.test(statdLog));
    assert.equal(await d.stop(), 0);
    d = spawnDaemon(['--address', `${VIP}/32`], { dir: d.dir });
    nsmPort = (await d.started()).nsmPort as number;
    const up = await d.waitLog((l) => /^node: serving/.test(l.msg));
    assert.equal(up.state, before + 2);
    assert.equal(up.monitors, 2, 'the server its lockd monitors, and the client that locked through its own address');
    // Named by the node's host name, as sm-notify names it.
    await waitFor('SM_NOTIFY at the peer', () => new RegExp(`Received SM_NOTIFY from ${hostname()}, state: ${before + 2}`).test(statdLog), 15_000);
    const status = JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;
    const grace = new Map(status.addresses.map((a) => [a.address, a.grace]));
    assert.ok(grace.get('127.0.0.1') && grace.get(OWN), `grace on the node's addresses: ${JSON.stringify(status.addresses)}`);
  });
});
