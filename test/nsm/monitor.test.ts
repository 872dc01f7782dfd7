import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { hostKey, type ClientHost } from '../../src/locks/types';
import {
  Nsm, NsmStore, NODE_IDENTITY, nextUpState, readNfsUtilsStateDir, parseNfsUtilsLine, STAT_FAIL, STAT_SUCC,
  type HostRebooted, type MonitorCallback, type NotifyRequest, type NsmSender, type SmStatus,
} from '../../src/nsm';

const host = (callerName: string, address: string): ClientHost => ({ key: hostKey(callerName, address), callerName, address });
const VIP = '10.0.0.5';

class FakeSender implements NsmSender {
  requests: NotifyRequest[] = [];
  callbacks: Array<{ cb: MonitorCallback; status: SmStatus }> = [];
  constructor(private readonly answering: (address: string) => boolean = () => true) {}
  async notifyHosts(req: NotifyRequest): Promise<void> {
    this.requests.push(req);
    for (const t of req.targets) if (this.answering(t.address)) req.onNotified(t.address);
  }
  async statusCallback(cb: MonitorCallback, status: SmStatus): Promise<void> {
    this.callbacks.push({ cb, status });
  }
}

describe('nsm monitor', () => {
  let dir: string;
  let store: NsmStore;
  let puts: number;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'nsm-mon-'));
    store = new NsmStore(dir);
    puts = 0;
    const put = store.put.bind(store);
    store.put = (r) => { puts++; return put(r); };
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const hostFiles = (addr = VIP): string[] => readdirSync(store.hostsDir(addr));

  it('records a host once: a second monitor, even concurrent, writes nothing', async () => {
    const nsm = new Nsm({ store });
    const h = host('alpha', '192.168.1.10');
    const [a, b] = await Promise.all([nsm.monitor(h, VIP), nsm.monitor(h, VIP)]);
    assert.equal(a, true);
    assert.equal(b, true);
    assert.equal(puts, 1);
    assert.equal(nsm.monitor(h, VIP), true, 'already monitored answers synchronously');
    assert.equal(puts, 1);
    assert.equal(hostFiles().length, 1);
    await nsm.monitor(h, '10.0.0.6'); // another server address is another record
    assert.equal(puts, 2);
  });

  it('answers false (never throws) when the record cannot be written', async () => {
    writeFileSync(path.join(dir, '10.0.0.7'), 'a file where the address folder should be');
    const nsm = new Nsm({ store });
    assert.equal(await nsm.monitor(host('alpha', '192.168.1.10'), '10.0.0.7'), false);
    assert.deepEqual(nsm.records('10.0.0.7'), []);
    const res = await nsm.rpcMonitor({ monId: { monName: '192.168.1.10', myId: { myName: 'x', myProg: 1, myVers: 1, myProc: 1 } }, priv: Buffer.alloc(16) }, '10.0.0.7', '127.0.0.1');
    assert.equal(res.res, STAT_FAIL);
  });

  it('unmonitor forgets the host in memory and on disk', async () => {
    const nsm = new Nsm({ store });
    const h = host('alpha', '::ffff:192.168.1.10');
    await nsm.monitor(h, VIP);
    assert.equal(nsm.records(VIP)[0]!.address, '192.168.1.10');
    await nsm.unmonitor(h, VIP);
    assert.deepEqual(nsm.records(VIP), []);
    assert.deepEqual(hostFiles(), []);
  });

  it('keeps IPv6 server addresses and normalises mapped IPv4 hosts', async () => {
    const nsm = new Nsm({ store });
    await nsm.monitor(host('v6', '::FFFF:192.168.1.50'), 'FD00::5');
    await nsm.monitor(host('v6b', 'FD00::77'), 'fd00::5');
    assert.deepEqual(nsm.records('fd00::5').map((r) => r.address).sort(), ['192.168.1.50', 'fd00::77']);
    assert.equal((await new NsmStore(dir).load('fd00::5')).records.length, 2);
  });

  it('stopMonitoring forgets the address in memory but keeps its records for the next owner', async () => {
    const nsm = new Nsm({ store });
    await nsm.monitor(host('alpha', '192.168.1.10'), VIP);
    nsm.stopMonitoring(VIP);
    assert.deepEqual(nsm.addresses(), []);
    assert.equal(hostFiles().length, 1);
    const other = new Nsm({ store: new NsmStore(dir) });
    const rep = await other.activate(VIP);
    assert.equal(rep.records, 1);
  });

  it('bumps the state number to the next odd one, durably', async () => {
    assert.equal(nextUpState(undefined), 1);
    assert.equal(nextUpState(4), 5);
    assert.equal(nextUpState(0x7fffffff), 1);
    const nsm = new Nsm({ store });
    assert.equal(await nsm.bumpState(VIP), 1);
    assert.equal(await nsm.bumpState(VIP), 3);
    assert.equal(await new Nsm({ store: new NsmStore(dir) }).bumpState(VIP), 5);
    const fresh = new Nsm({ store: new NsmStore(dir) });
    assert.deepEqual((await Promise.all([fresh.bumpState(VIP), fresh.bumpState(VIP)])).sort(), [7, 9], 'two bumps at once, two numbers');
    assert.deepEqual(await Promise.all([fresh.upState('10.0.0.9'), fresh.upState('10.0.0.9')]), [1, 1], 'a first state is given once');
  });

  it('accepts SM_NOTIFY only from the recorded address and only with a changed state', async () => {
    const sender = new FakeSender();
    const nsm = new Nsm({ store, sender });
    const events: HostRebooted[] = [];
    nsm.rebooted$.subscribe((e) => events.push(e));
    await nsm.monitor(host('alpha', '192.168.1.10'), VIP);
    await nsm.monitor(host('alpha', '192.168.1.10'), '10.0.0.6');
    await nsm.monitor(host('beta', '192.168.1.11'), VIP);

    assert.equal(await nsm.hostNotified({ monName: 'gamma', state: 3 }, '192.168.1.10'), 'unknown-host');
    assert.equal(await nsm.hostNotified({ monName: 'alpha', state: 3 }, '192.168.1.11'), 'wrong-address');
    assert.equal(await nsm.hostNotified({ monName: '192.168.1.10', state: 3 }, '192.168.1.11'), 'wrong-address', 'naming the address, from elsewhere');
    assert.equal(events.length, 0);
    assert.equal(await nsm.hostNotified({ monName: 'alpha', state: 3 }, '::ffff:192.168.1.10'), 'accepted');
    assert.deepEqual(events, [{ monName: 'alpha', address: '192.168.1.10', state: 3, serverAddresses: [VIP, '10.0.0.6'] }]);
    // Handled: the lock manager released alpha, nothing else needed its records.
    assert.deepEqual(nsm.records().map((r) => r.monName), ['beta']);
    assert.equal(hostFiles().length, 1);
    assert.equal(hostFiles('10.0.0.6').length, 0);
    // alpha locks again: monitored (and written) again, knowing its state: a late copy of the notice is stale.
    assert.equal(await nsm.monitor(host('alpha', '192.168.1.10'), VIP), true);
    assert.equal(hostFiles().length, 2);
    assert.equal(await nsm.hostNotified({ monName: 'alpha', state: 3 }, '192.168.1.10'), 'stale-state');
    assert.equal(events.length, 1);
  });

  it('matches SM_NOTIFY as nfs-utils: any case of the name, the host\'s address as the name, an address-named record', async () => {
    const nsm = new Nsm({ store, sender: new FakeSender() });
    const events: HostRebooted[] = [];
    nsm.rebooted$.subscribe((e) => events.push(e));
    await nsm.monitor(host('cli-a', '10.1.0.1'), VIP);
    await nsm.monitor(host('cli-b', '10.1.0.2'), VIP);
    await nsm.monitor(host('10.1.0.3', '10.1.0.3'), VIP); // a kernel lockd that names hosts by address
    await nsm.monitor(host('nat-1', '10.1.0.9'), VIP); // two hosts behind one address
    await nsm.monitor(host('nat-2', '10.1.0.9'), VIP);
    await nsm.monitor(host('cli-6', '2001:db8::6'), VIP);

    assert.equal(await nsm.hostNotified({ monName: 'CLI-A', state: 5 }, '10.1.0.1'), 'accepted');
    assert.equal(await nsm.hostNotified({ monName: '10.1.0.2', state: 5 }, '10.1.0.2'), 'accepted');
    assert.equal(await nsm.hostNotified({ monName: 'client3.example', state: 5 }, '10.1.0.3'), 'accepted');
    assert.equal(await nsm.hostNotified({ monName: 'NAT-2', state: 5 }, '10.1.0.9'), 'accepted');
    assert.equal(await nsm.hostNotified({ monName: '2001:DB8:0:0:0:0:0:6', state: 5 }, '2001:db8::6'), 'accepted');
    assert.deepEqual(events.map((e) => `${e.monName}@${e.address}`), ['cli-a@10.1.0.1', 'cli-b@10.1.0.2', '10.1.0.3@10.1.0.3', 'nat-2@10.1.0.9', 'cli-6@2001:db8::6']);
    assert.deepEqual(nsm.records().map((r) => r.monName), ['nat-1'], 'the other host behind the same address keeps its locks');
  });

  it('keeps a rebooted host\'s record while an RPC monitor needs it; a repeat notice is stale, also after a restart', async () => {
    const sender = new FakeSender();
    const nsm = new Nsm({ store, sender });
    const myId = { myName: 'kernel', myProg: 100021, myVers: 4, myProc: 16 };
    await nsm.monitor(host('alpha', '192.168.1.10'), VIP);
    await nsm.rpcMonitor({ monId: { monName: 'alpha', myId }, priv: Buffer.alloc(16) }, VIP, '127.0.0.1').then((r) => assert.equal(r.res, STAT_FAIL, 'no resolver: a name cannot be monitored'));
    await nsm.rpcMonitor({ monId: { monName: '192.168.1.10', myId }, priv: Buffer.alloc(16) }, VIP, '127.0.0.1');
    assert.equal(await nsm.hostNotified({ monName: 'alpha', state: 7 }, '192.168.1.10'), 'accepted');
    await new Promise((r) => setImmediate(r));
    assert.equal(sender.callbacks.length, 1);
    assert.deepEqual(nsm.records(VIP).map((r) => [r.monName, r.state, r.local]), [['192.168.1.10', 7, false]]);
    assert.equal(await nsm.hostNotified({ monName: '192.168.1.10', state: 7 }, '192.168.1.10'), 'stale-state');
    const again = new Nsm({ store: new NsmStore(dir) });
    await again.activate(VIP);
    assert.equal(await again.hostNotified({ monName: '192.168.1.10', state: 7 }, '192.168.1.10'), 'stale-state', 'the new state is durable');
  });

  it('files several server addresses under one identity: one state number, unmonitored when no address needs the host', async () => {
    const nsm = new Nsm({ store, identity: (a) => (a === VIP ? VIP : NODE_IDENTITY) });
    const h = host('alpha', '192.168.1.10');
    await nsm.monitor(h, '192.168.5.5');
    await nsm.monitor(h, '127.0.0.1');
    assert.deepEqual(nsm.addresses(), [NODE_IDENTITY]);
    assert.equal(hostFiles(NODE_IDENTITY).length, 1);
    assert.equal(await nsm.upState('192.168.5.5'), await nsm.upState('127.0.0.1'));
    await nsm.unmonitor(h, '192.168.5.5');
    assert.equal(nsm.records(NODE_IDENTITY).length, 1, 'still monitored through 127.0.0.1');
    await nsm.unmonitor(h, '127.0.0.1');
    assert.deepEqual(nsm.records(NODE_IDENTITY), []);
    assert.equal(nsm.monNameOf(NODE_IDENTITY), hostname(), 'the node calls itself by its host name, as sm-notify');
    assert.equal(nsm.monNameOf(VIP), VIP);
  });

  it('notifies every recorded host from the address; forgets answered ones at grace end unless they came back', async () => {
    const sender = new FakeSender((a) => a !== '192.168.1.12');
    const nsm = new Nsm({ store, sender, config: () => ({ monNames: { [VIP]: `srv-${VIP}` } }) });
    for (const [n, a] of [['a', '192.168.1.10'], ['b', '192.168.1.11'], ['c', '192.168.1.12']] as const) await nsm.monitor(host(n, a), VIP);
    nsm.stopMonitoring(VIP); // the address moves away and comes back (or to another node)
    const nsm2 = new Nsm({ store: new NsmStore(dir), sender, config: () => ({ monNames: { [VIP]: `srv-${VIP}` } }) });
    const state = await nsm2.bumpState(VIP);
    const rep = await nsm2.notify(VIP, { timeoutMs: 1000 });
    assert.equal(sender.requests[0]!.from, VIP);
    assert.deepEqual(sender.requests[0]!.args, { monName: `srv-${VIP}`, state });
    assert.deepEqual(rep.notified.sort(), ['192.168.1.10', '192.168.1.11']);
    assert.deepEqual(rep.failed, ['192.168.1.12']);
    await nsm2.monitor(host('a', '192.168.1.10'), VIP); // a reclaims: monitored again
    assert.equal(await nsm2.graceEnded(VIP), 1);
    assert.deepEqual(nsm2.records(VIP).map((r) => r.monName).sort(), ['a', 'c']);
    assert.equal(hostFiles().length, 2);
  });

  it('serves RPC monitors: SM_MON with my_id, callback on reboot, SM_UNMON and SM_UNMON_ALL', async () => {
    const sender = new FakeSender();
    const nsm = new Nsm({ store, sender });
    const myId = { myName: 'kernel', myProg: 100021, myVers: 4, myProc: 16 };
    const priv = Buffer.alloc(16, 7);
    const res = await nsm.rpcMonitor({ monId: { monName: '192.168.1.20', myId }, priv }, VIP, '127.0.0.1');
    assert.equal(res.res, STAT_SUCC);
    assert.equal(res.state % 2, 1);
    const unresolvable = await nsm.rpcMonitor({ monId: { monName: 'no-such-host', myId }, priv }, VIP, '127.0.0.1');
    assert.equal(unresolvable.res, STAT_FAIL);
    assert.equal(await nsm.hostNotified({ monName: '192.168.1.20', state: 8 }, '192.168.1.20'), 'accepted');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(sender.callbacks.map((c) => [c.cb.callbackAddress, c.status]), [['127.0.0.1', { monName: '192.168.1.20', state: 8, priv }]]);
    await nsm.rpcUnmonitor({ monName: '192.168.1.20', myId: { ...myId, myProc: 99 } }, VIP); // not its id
    assert.equal(nsm.records(VIP).length, 1);
    await nsm.rpcUnmonitorAll(myId, VIP);
    assert.equal(nsm.records(VIP).length, 0);
    assert.deepEqual(hostFiles(), []);
  });

  it('keeps both monitors when two SM_MON for one host race', async () => {
    const nsm = new Nsm({ store });
    const id = (myName: string) => ({ myName, myProg: 100021, myVers: 4, myProc: 16 });
    const priv = Buffer.alloc(16);
    await Promise.all(['a', 'b', 'c'].map((n) => nsm.rpcMonitor({ monId: { monName: '192.168.1.40', myId: id(n) }, priv }, VIP, '127.0.0.1')));
    assert.deepEqual(nsm.records(VIP)[0]!.callbacks.map((c) => c.myName).sort(), ['a', 'b', 'c']);
    const onDisk = await new NsmStore(dir).load(VIP);
    assert.deepEqual(onDisk.records[0]!.callbacks.map((c) => c.myName).sort(), ['a', 'b', 'c']);
  });

  it('imports an nfs-utils state directory (sm, sm.bak, binary state)', async () => {
    const src = path.join(dir, 'nfs');
    mkdirSync(path.join(src, 'sm'), { recursive: true });
    mkdirSync(path.join(src, 'sm.bak'), { recursive: true });
    const state = Buffer.alloc(4);
    state.writeInt32LE(41);
    writeFileSync(path.join(src, 'state'), state);
    const priv = '0102030405060708090a0b0c0d0e0f10';
    writeFileSync(path.join(src, 'sm', '192.168.1.30'), `0100007f 000186b5 00000004 00000010 ${priv} 192.168.1.30 server\n`);
    writeFileSync(path.join(src, 'sm.bak', 'client9'), `0100007f 000186b5 00000004 00000010 ${priv} 192.168.1.31 server\n`);
    writeFileSync(path.join(src, 'sm', 'broken'), 'not a record\n');
    writeFileSync(path.join(src, 'sm', 'empty'), '');
    const parsed = parseNfsUtilsLine(`0100007f 000186b5 00000004 00000010 ${priv} cl server`);
    assert.deepEqual(parsed, { callbackAddress: '127.0.0.1', prog: 100021, vers: 4, proc: 16, priv: Buffer.from(priv, 'hex'), monName: 'cl', myName: 'server' });

    const read = await readNfsUtilsStateDir(src, VIP);
    assert.equal(read.state, 41);
    assert.deepEqual(read.skipped.map((s) => path.basename(s.path)).sort(), ['broken', 'empty']);
    const nsm = new Nsm({ store });
    const imp = await nsm.importNfsUtils(src, VIP);
    assert.equal(imp.records, 2);
    assert.deepEqual(nsm.records(VIP).map((r) => [r.monName, r.address, r.local]).sort(), [['192.168.1.30', '192.168.1.30', true], ['192.168.1.31', '192.168.1.31', true]]);
    assert.equal(await nsm.bumpState(VIP), 43);
  });
});
