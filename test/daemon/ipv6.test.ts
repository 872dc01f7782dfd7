// IPv6 end to end through lockdropd: locks through a floating IPv6 address, GRANTED to an IPv6
// client (its callbacks found through rpcbind as udp6), the operator naming the address in any
// spelling (`drop --ip 2001:DB8:0:0:0:0:0:1` drops what was taken through 2001:db8::1), and
// SM_NOTIFY to IPv6 clients (their statd found through rpcbind v4 GETADDR).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NlmClient } from '../../src/nlm';
import { decodeStatChge, encodeVoid, NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, type StatChge } from '../../src/nsm';
import { registerWithRpcbind, RpcServer, type CallContext, type Procedure, type RpcbindRegistration } from '../../src/rpc';
import type { LockView } from '../../src/control';
import { hasCommand, requireNamespaceRoot, startRpcbind, testInterface } from '../support/netns';
import { ensureBuilt, LOCKDROPCTL, spawnDaemon, type DaemonProcess } from './harness';

const run = promisify(execFile);

const VIP = '2001:db8::1';
const VIP_AS_TYPED = '2001:DB8:0:0:0:0:0:1';
const HOLDER = '2001:db8::3';
const WAITER = '2001:db8::2';
const fh = Buffer.from('01000601ab000000cd000000', 'hex');

describe('daemon: IPv6 clients end to end', function () {
  this.timeout(60_000);
  let d: DaemonProcess;
  let nlmPort: number;
  let iface: ReturnType<typeof testInterface> | undefined;
  let stopRpcbind: (() => Promise<void>) | undefined;
  let statd: RpcServer | undefined;
  let statdReg: RpcbindRegistration | undefined;
  const notices: Array<{ to: string; from: string; args: StatChge }> = [];

  before(async function () {
    requireNamespaceRoot(this);
    if (!hasCommand('rpcbind')) this.skip();
    ensureBuilt();
    iface = testInterface([VIP, HOLDER, WAITER]);
    stopRpcbind = await startRpcbind();
    // The clients' statd: on both client addresses, registered as udp6 with their rpcbind.
    statd = new RpcServer();
    statd.register({ prog: NSM_PROGRAM, vers: NSM_VERSION, procedures: new Map([[SM_NOTIFY, {
      name: 'SM_NOTIFY', decodeArgs: decodeStatChge, encodeResult: encodeVoid,
      handle: (args, ctx: CallContext) => void notices.push({ to: ctx.local.address, from: ctx.peer.address, args }),
    } satisfies Procedure<StatChge, undefined>]]) });
    for (const a of [WAITER, HOLDER]) await statd.addAddress(a);
    statdReg = await registerWithRpcbind([{ prog: NSM_PROGRAM, vers: NSM_VERSION, protocol: 'udp', port: statd.port }], { mode: 'auto', ipv6: true });
    assert.ok(statdReg.registered, statdReg.reason);
    d = spawnDaemon(['--address', `${VIP}/128`]);
    nlmPort = (await d.started()).nlmPort as number;
    await d.waitLog((l) => l.msg.startsWith(`${VIP} arrived`));
  });
  after(async () => {
    d?.cleanup();
    await statdReg?.unregister();
    await statd?.close();
    await stopRpcbind?.();
    iface?.dispose();
  });

  const locks = (args: string[] = []): LockView[] => d.ctl(['locks', '--json', ...args]).stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as LockView);

  it('grants a blocked IPv6 client through GRANTED; the operator names the address in any spelling', async () => {
    const holder = await NlmClient.create({ server: { address: VIP, port: nlmPort }, transport: 'udp', vers: 4, callerName: 'v6-holder', source: HOLDER });
    const waiter = await NlmClient.create({ server: { address: VIP, port: nlmPort }, transport: 'tcp', vers: 4, callerName: 'v6-waiter', source: WAITER, callback: { rpcbind: true } });
    try {
      assert.equal((await holder.lock({ fh, svid: 1, offset: 0n, length: 100n })).status, 'granted');
      assert.equal((await waiter.lock({ fh, svid: 2, offset: 0n, length: 100n, block: true })).status, 'blocked');
      assert.equal((await holder.unlock({ fh, svid: 1, offset: 0n, length: 100n })).status, 'granted');
      const g = await waiter.waitGranted({ svid: 2 }, 10_000);
      assert.equal(g.from.address, VIP, 'GRANTED comes from the address the lock was taken through');
      assert.deepEqual(locks().map((l) => [l.server, l.client]), [[VIP, `v6-waiter@${WAITER}`]]);
      assert.equal((await holder.lock({ fh, svid: 1, offset: 200n, length: 1n })).status, 'granted');

      assert.equal(locks(['--ip', VIP_AS_TYPED]).length, 2, 'locks --ip in the operator\'s spelling');
      const r = d.ctl(['drop', '--ip', VIP_AS_TYPED, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout) as { target: string; locks: number };
      assert.equal(report.target, VIP);
      assert.equal(report.locks, 2);
      assert.deepEqual(locks(), []);
      const bad = d.ctl(['drop', '--ip', '2001:db8::g']);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /not an IP address/);
    } finally {
      await holder.close();
      await waiter.close();
    }
  });

  it('sends SM_NOTIFY to IPv6 clients from the address, finding their statd through rpcbind (udp6)', async () => {
    // Not d.ctl: that blocks this process, where the clients' statd answers.
    const r = await run(process.execPath, [LOCKDROPCTL, 'notify', '--ip', VIP_AS_TYPED, '--json', '--control', d.control], { timeout: 20_000 });
    const out = JSON.parse(r.stdout) as { address: string; notified: string[]; failed: string[] };
    assert.equal(out.address, VIP);
    assert.deepEqual(out.notified.sort(), [WAITER, HOLDER].sort());
    assert.deepEqual(out.failed, []);
    assert.deepEqual(notices.map((n) => [n.to, n.from, n.args.monName]).sort(), [[WAITER, VIP, VIP], [HOLDER, VIP, VIP]]);
  });
});
