// lockdrop's statd against the real nfs-common tools, in network namespaces:
//  - the real sm-notify (run in a client namespace, -v naming the client's address) tells
//    lockdrop the client rebooted, and that client's locks (only) go;
//  - spoofed or stale notices release nothing;
//  - lockdrop's own notify reaches a real rpc.statd in the client namespace (with its own rpcbind);
//  - rpcinfo shows status registered; tshark dissects both directions cleanly.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hostKey, LockTable, type ClientHost, type LockRequest } from '../../src/locks';
import { registerWithRpcbind, RpcClient, type RpcbindRegistration } from '../../src/rpc';
import { encodeStatChge, NSM_PROGRAM, NSM_VERSION, readNfsUtilsStateDir, RpcNsmSender, SM_NOTIFY, type HostRebooted } from '../../src/nsm';
import { hasCommand, requireNamespaceRoot, sh, vethNamespace, type Netns, startRpcbind } from '../support/netns';

import { calloutScript, nfsUtilsDir, nfsUtilsLine, spawnIsolated, startNsm, waitFor, type NsmUnderTest } from './support';

const SERVER = '10.177.0.1'; // the server address (VIP) on our side of the veth
const CLIENT = '10.177.0.2'; // the client host, in its own namespace
const host = (callerName: string, address: string): ClientHost => ({ key: hostKey(callerName, address), callerName, address });
const lockOf = (h: ClientHost, n: number): LockRequest => ({
  fh: Buffer.from(`file-${n}`), owner: { host: h.key, svid: n, oh: Buffer.from('oh') }, exclusive: true, offset: 0n, length: 0n, serverAddress: SERVER,
});

describe('nsm with the real nfs-common tools', function () {
  this.timeout(60_000);
  let dir: string;
  let ns: Netns;
  let stopRpcbind: () => Promise<void>;
  let u: NsmUnderTest;
  let reg: RpcbindRegistration;
  let capture: ChildProcess;
  let captureFile: string;
  /** The capture's frames so far, one line each: source, RPC program(s), procedure(s). */
  let captured = '';
  const events: HostRebooted[] = [];
  const table = new LockTable();
  const client1 = host('client1', CLIENT);
  const bystander = host('other', '10.177.0.3');

  before(async function () {
    requireNamespaceRoot(this);
    for (const c of ['rpcbind', 'rpcinfo', 'sm-notify', 'rpc.statd', 'unshare']) if (!hasCommand(c)) this.skip();
    dir = mkdtempSync(path.join(tmpdir(), 'nsm-nfs-common-'));
    stopRpcbind = await startRpcbind();
    ns = vethNamespace(SERVER, CLIENT);
    writeFileSync(path.join(dir, 'hosts'), `127.0.0.1 localhost\n${CLIENT} client1\n${SERVER} server\n`);
    u = await startNsm(path.join(dir, 'state'), [SERVER, '127.0.0.1'], { sender: new RpcNsmSender({ backoffMs: 200 }) });
    if (hasCommand('tshark')) {
      captureFile = path.join(dir, 'nsm.pcap');
      // Besides the file, each frame's source, RPC program and procedure on stdout as captured (-P -l).
      capture = spawn('tshark', ['-i', 'any', '-f', `host ${CLIENT}`, '-w', captureFile, '-P', '-l', '-T', 'fields', '-e', 'ip.src', '-e', 'rpc.program', '-e', 'rpc.procedure', '-d', `udp.port==${u.port},rpc`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      capture.stderr!.on('data', (d) => (err += d));
      capture.stdout!.on('data', (d) => (captured += d));
      await waitFor('tshark to capture', () => /Capturing on/.test(err));
    }
    reg = await registerWithRpcbind([
      { prog: NSM_PROGRAM, vers: NSM_VERSION, protocol: 'udp', port: u.port },
      { prog: NSM_PROGRAM, vers: NSM_VERSION, protocol: 'tcp', port: u.port },
    ], { mode: 'auto' });
    u.nsm.rebooted$.subscribe((e) => {
      events.push(e);
      table.dropByHost(hostKey(e.monName, e.address)); // the daemon's wiring
    });
  });

  after(async () => {
    capture?.kill('SIGINT');
    await reg?.unregister();
    await u?.close();
    ns?.dispose();
    await stopRpcbind?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Runs the real sm-notify in the client namespace, as client1 (reverse-resolved through a hosts
   * file). Asynchronously: our statd answers from this very process.
   */
  async function smNotify(flags: string[]): Promise<string> {
    const smDir = nfsUtilsDir(path.join(dir, 'client-sm'));
    if (!existsSync(path.join(smDir, 'sm', SERVER))) writeFileSync(path.join(smDir, 'sm', SERVER), nfsUtilsLine(SERVER, 'client1'));
    const child = ns.spawn('unshare', ['--mount', 'sh', '-c',
      `mount --bind ${path.join(dir, 'hosts')} /etc/hosts && exec sm-notify -d -f -m 1 -v ${CLIENT} -P ${smDir} ${flags.join(' ')} 2>&1`]);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await new Promise((r) => child.once('exit', r));
    clearTimeout(timer);
    if (code !== 0) throw new Error(`sm-notify failed (${String(code)}): ${out}`);
    return out;
  }

  it('registers status with rpcbind (rpcinfo -p)', () => {
    assert.ok(reg.registered, reg.reason);
    assert.match(sh('rpcinfo', ['-p']), new RegExp(`100024\\s+1\\s+udp\\s+${u.port}\\s+status`));
  });

  it('the real sm-notify delivers a reboot, which releases exactly that client\'s locks', async () => {
    assert.equal(await u.nsm.monitor(client1, SERVER), true);
    assert.equal(await u.nsm.monitor(bystander, SERVER), true);
    assert.equal(table.lock(lockOf(client1, 1), { block: false, reclaim: false }), 'granted');
    assert.equal(table.lock(lockOf(bystander, 2), { block: false, reclaim: false }), 'granted');
    const out = await smNotify([]);
    assert.match(out, /notified successfully/);
    const e = await waitFor('the reboot event', () => events[0]);
    assert.equal(e.monName, 'client1');
    assert.equal(e.address, CLIENT);
    assert.deepEqual(e.serverAddresses, [SERVER]);
    assert.deepEqual([...table.locks({ host: client1.key })], []);
    assert.equal([...table.locks({ host: bystander.key })].length, 1);
    // Handled: its record goes (nothing needs it until it locks again); the bystander's stays.
    assert.deepEqual(u.nsm.records(SERVER).map((r) => r.monName), ['other']);
    // The reader understands the real tool's binary state file: the number it just sent us.
    assert.equal((await readNfsUtilsStateDir(path.join(dir, 'client-sm'), SERVER)).state, e.state);
  });

  it('a spoofed SM_NOTIFY (right name, wrong address) or a stale one (same state) releases nothing', async () => {
    // client1, back from its reboot, locks again (monitored again first, as the lock manager does).
    assert.equal(await u.nsm.monitor(client1, SERVER), true);
    assert.equal(table.lock(lockOf(client1, 3), { block: false, reclaim: false }), 'granted');
    const before = events.length;
    const verdicts: string[] = [];
    const judge = u.nsm.hostNotified.bind(u.nsm);
    u.nsm.hostNotified = async (args, from) => {
      const v = await judge(args, from);
      verdicts.push(v);
      return v;
    };
    // Right name, wrong source: from the server's own side of the veth.
    const spoof = new RpcClient({ transport: 'udp', host: SERVER, port: u.port, source: '127.0.0.1', timeoutMs: 3000 });
    await spoof.call(NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, (w) => encodeStatChge(w, { monName: 'client1', state: 1001 }));
    spoof.close();
    // Right name and address, unchanged state: the real sm-notify without a state update (-n).
    assert.match(await smNotify(['-n']), /notified successfully/);
    await waitFor('both verdicts', () => verdicts.includes('stale-state'));
    assert.deepEqual([...new Set(verdicts)], ['wrong-address', 'stale-state']);
    assert.equal(events.length, before);
    assert.equal([...table.locks({ host: client1.key })].length, 1);
  });

  it('the real sm-notify naming the host in another case releases it (nfs-utils matching)', async () => {
    const names: string[] = [];
    const judge = u.nsm.hostNotified.bind(u.nsm);
    u.nsm.hostNotified = async (args, from) => {
      names.push(args.monName);
      return judge(args, from);
    };
    const before = events.length;
    assert.equal([...table.locks({ host: client1.key })].length, 1);
    assert.match(await smNotify(['-v', 'CLIENT1']), /notified successfully/);
    await waitFor('the reboot event', () => events.length > before);
    assert.deepEqual(names, ['CLIENT1']);
    assert.equal(events.at(-1)!.monName, 'client1', 'released as the lock manager keyed it');
    assert.deepEqual([...table.locks({ host: client1.key })], []);
    u.nsm.hostNotified = judge;
    assert.equal(await u.nsm.monitor(client1, SERVER), true); // client1 locks again
  });

  it('lockdrop\'s notify reaches a real rpc.statd in the client namespace', async () => {
    const statdDir = nfsUtilsDir(path.join(dir, 'client-statd'));
    const calloutLog = path.join(dir, 'callout.log');
    const script = calloutScript(dir, calloutLog);
    const statd = spawnIsolated(ns, `rpcbind -f -w & for i in $(seq 100); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done; exec rpc.statd -F -d -L -P ${statdDir} -H ${script}`);
    let log = '';
    statd.stderr!.on('data', (d) => (log += d));
    statd.stdout!.on('data', (d) => (log += d));
    try {
      await waitFor('rpc.statd to start', () => /Waiting for client connections/.test(log)).catch((err: Error) => {
        throw new Error(`${err.message}: ${log}`);
      });
      const state = await u.nsm.bumpState(SERVER);
      const rep = await u.nsm.notify(SERVER, { timeoutMs: 3_000 });
      assert.deepEqual(rep.notified, [CLIENT]);
      assert.deepEqual(rep.failed, ['10.177.0.3']); // the bystander has no host at all: reported, record kept
      assert.equal(u.nsm.records(SERVER).length, 2);
      await waitFor('the ha-callout', () => existsSync(calloutLog) && readFileSync(calloutLog, 'utf8').includes(`sm-notify ${SERVER} ${SERVER} ${state}`));
      assert.match(log, new RegExp(`Received SM_NOTIFY from ${SERVER.replace(/\./g, '\\.')}, state: ${state}`));
      const theirs = Number(/Local NSM state number: (\d+)/.exec(log)?.[1]);
      assert.equal((await readNfsUtilsStateDir(statdDir, SERVER)).state, theirs, 'rpc.statd\'s own state file reads back');
    } finally {
      statd.kill('SIGKILL');
    }
  });

  it('tshark dissects both directions with no malformed-packet marks', async function () {
    if (!capture) this.skip();
    const notifiesFrom = (a: string): number => captured.split('\n').filter((l) => {
      const [src, prog, proc] = l.split('\t');
      return src === a && prog?.split(',').includes(String(NSM_PROGRAM)) && proc?.split(',').includes(String(SM_NOTIFY));
    }).length;
    await waitFor('SM_NOTIFY both ways in the capture', () => notifiesFrom(CLIENT) >= 2 && notifiesFrom(SERVER) >= 2);
    const done = new Promise((r) => capture.once('exit', r));
    capture.kill('SIGINT');
    await done;
    const text = sh('tshark', ['-r', captureFile, '-V', '-d', `udp.port==${u.port},rpc`]);
    assert.doesNotMatch(text, /Malformed/i);
    assert.doesNotMatch(text, /Expert Info \(Error/);
    const notifies = text.split(/\nFrame /).filter((f) => /Network Status Monitor/.test(f) && /Procedure: NOTIFY \(6\)/.test(f));
    const from = (a: string): number => notifies.filter((f) => new RegExp(`Source Address: ${a.replace(/\./g, '\\.')}`).test(f)).length;
    assert.ok(from(CLIENT) >= 2, `SM_NOTIFY calls and replies from the client: ${from(CLIENT)}`);
    assert.ok(from(SERVER) >= 2, `SM_NOTIFY calls and replies from lockdrop: ${from(SERVER)}`);
    assert.match(text, /Name: client1/);
  });
});
