// A floating address moved between two nodes the way clusters move it — real keepalived (VRRP
// on a bridge, with lockdrop's example keepalived.conf and notify script) and resource-agents'
// IPaddr2 — with lockdropd on both nodes over one shared state directory: the old node drops
// the client's locks, the new one opens grace for that address alone, tells the client
// (SM_NOTIFY from the address) and the client reclaims there.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { StatusReport } from '../../src/control';
import { Lab, lockMany, tryLock, type JsonLines, type LabHost } from '../../src/demo/lab';
import { endLab } from '../support/lab';
import { hasCommand, requireNamespaceRoot } from '../support/netns';
import { REPO, ensureBuilt } from '../daemon/harness';

const VIP = '10.83.0.100';
/** Floating too, but never moves: its clients must see no grace. */
const STAY = '10.83.0.101';
const IPADDR2 = '/usr/lib/ocf/resource.d/heartbeat/IPaddr2';
const NOTIFY_SCRIPT = path.join(REPO, 'contrib', 'keepalived', 'lockdrop-notify');
const CTL = path.join(REPO, 'bin', 'lockdropctl');

interface Node {
  host: LabHost;
  config: string;
  control: string;
  log: JsonLines;
  daemon: ChildProcess;
}

interface Scene {
  lab: Lab;
  dir: string;
  n1: Node;
  n2: Node;
  client: JsonLines;
}

let labs = 0;
async function scene(): Promise<Scene> {
  const lab = new Lab(`ldk${process.pid % 1000}${++labs}`, '10.83.0');
  const dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-cluster-'));
  try {
    await lab.start();
    const h1 = await lab.addHost('n1', 1);
    const h2 = await lab.addHost('n2', 2);
    const hc = await lab.addHost('c1', 11);
    lab.exec(h2, 'ip', ['addr', 'add', `${STAY}/24`, 'dev', h2.nic]);
    // One state directory for both nodes, as on shared storage.
    const shared = path.join(dir, 'shared');
    mkdirSync(shared);
    const start = (host: LabHost): Node => {
      const own = path.join(dir, host.name);
      mkdirSync(own, { mode: 0o700 });
      const d = lab.startDaemon(host, own, { stateDir: shared, nlmPort: 4045, nsmPort: 4046, addresses: [VIP, STAY], sources: ['netlink', 'poll'], pollInterval: 1, grace: 30, notify: { timeout: 20 } });
      return { host, config: path.join(own, 'lockdrop.json'), control: d.control, log: d.log, daemon: d.child };
    };
    const n1 = start(h1);
    const n2 = start(h2);
    for (const n of [n1, n2]) await lab.waitForControl(n.host, n.control);
    const client = await lab.startClient(hc);
    return { lab, dir, n1, n2, client };
  } catch (err) {
    await lab.dispose();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}


const status = (s: Scene, n: Node): StatusReport => s.lab.ctl<StatusReport>(n.host, n.control, ['status']);
const at = (st: StatusReport, a: string) => st.addresses.find((x) => x.address === a);


/**
 * After the move from `from` to `to`: `from` dropped the client's locks through the VIP, `to`
 * holds it in grace (and STAY not), the client heard SM_NOTIFY from the VIP and reclaimed all.
 */
async function assertMoved(s: Scene, from: Node, to: Node, locks: number, marks: { from: number; to: number; client: number }): Promise<void> {
  const drop = await from.log.wait('the drop on the old node', (j) => j.address === VIP && typeof j.locks === 'number' && typeof j.ms === 'number', 20_000, marks.from);
  assert.equal(drop.locks, locks);
  const notice = await s.client.wait('SM_NOTIFY at the client', (j) => j.event === 'sm-notify', 30_000, marks.client);
  assert.equal(notice.from, VIP, 'SM_NOTIFY from the address itself');
  const reclaimed = await s.client.wait('the reclaim', (j) => j.event === 'reclaimed', 30_000, marks.client);
  assert.deepEqual([reclaimed.granted, reclaimed.of], [locks, locks]);
  const old = status(s, from);
  assert.equal(at(old, VIP)?.present ?? false, false);
  assert.equal(at(old, VIP)?.locks ?? 0, 0, 'the old node holds none of them');
  const now = status(s, to);
  assert.equal(at(now, VIP)?.present, true);
  assert.equal(at(now, VIP)?.locks, locks, 'the new node holds them, reclaimed');
  // Every lock of the journal reclaimed: the grace of the moved address ended by itself.
  await to.log.wait('the grace ended by itself', (j) => j.address === VIP && new RegExp(`^grace of ${VIP} ended: ${locks} of ${locks} locks? reclaimed by 1 host in`).test(String(j.msg)), 10_000, marks.to);
  assert.equal(at(status(s, to), VIP)?.grace ?? null, null, 'no grace left on the moved address');
  assert.equal(at(now, STAY)?.grace ?? null, null, 'no grace on the address that stayed');
  assert.equal(await tryLock(s.client, VIP, 9_000_000), 'granted', 'a new lock through the moved address at once');
  assert.equal(await tryLock(s.client, STAY, 9_000_000), 'granted', 'one through the other address too');
  // A clean move: the ARP probe of the arrival found nobody else with the address.
  await assert.rejects(to.log.wait('a duplicate', (j) => /answers ARP for it/.test(String(j.msg)), 1, marks.to));
}

describe('cluster: moving an address between two lockdropd nodes over a shared state directory', function () {
  this.timeout(180_000);
  let s: Scene | undefined;

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });
  afterEach(async () => {
    await endLab(s);
    s = undefined;
  });

  /** keepalived on node `n` with lockdrop's example configuration, its output and its notify script's log. */
  const keepalived = (sc: Scene, n: Node): { k: ChildProcess; output: () => string; notified: () => string } => {
    const example = readFileSync(path.join(REPO, 'contrib', 'keepalived', 'keepalived.conf'), 'utf8');
    const conf = example
      .replace('interface eth0', `interface ${n.host.nic}`)
      .replaceAll('192.0.2.10', VIP)
      .replace('"/usr/bin/lockdropctl ', `"${process.execPath} ${CTL} --config ${n.config} `)
      .replace('"/usr/lib/lockdrop/keepalived-notify ', `"${path.join(sc.dir, `notify-${n.host.name}`)} --config ${n.config} `);
    const file = path.join(sc.dir, `keepalived-${n.host.name}.conf`);
    // keepalived drops a notify script's output: a wrapper keeps it for the test to read.
    const log = path.join(sc.dir, `notify-${n.host.name}.log`);
    writeFileSync(path.join(sc.dir, `notify-${n.host.name}`), `#!/bin/sh\nexec ${NOTIFY_SCRIPT} "$@" >>${log} 2>&1\n`, { mode: 0o755 });
    writeFileSync(file, conf);
    const k = sc.lab.spawn(n.host, 'keepalived', ['--dont-fork', '--log-console', '--log-detail', '--vrrp', '-f', file, '-p', `/run/keepalived.pid`, '-r', '/run/vrrp.pid'], {
      env: { ...process.env, LOCKDROPCTL: CTL },
    });
    let output = '';
    for (const stream of [k.stdout!, k.stderr!]) stream.setEncoding('utf8').on('data', (c: string) => (output += c));
    return { k, output: () => output, notified: () => (existsSync(log) ? readFileSync(log, 'utf8') : '') };
  };
  const until = async (check: () => boolean, what: string, ms = 15_000): Promise<void> => {
    for (let i = 0; i < ms / 100 && !check(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(check(), what);
  };
  const MASTER = /INSTANCE NFS MASTER: lockdropd has 10\.83\.0\.100 held and answering/;

  it("with keepalived (lockdrop's example keepalived.conf, its notify script and track_script)", async function () {
    if (!hasCommand('keepalived')) throw new Error('keepalived is needed (bash scripts/setup.sh installs it)');
    s = await scene();
    // n1 first: it becomes MASTER and takes the VIP.
    const k1 = keepalived(s, s.n1);
    // The notify script on n1 saw MASTER through: lockdropd there serves the VIP.
    await until(() => MASTER.test(k1.notified()), `n1's notify script: ${k1.notified()}; keepalived: ${k1.output()}`);
    assert.equal(at(status(s, s.n1), VIP)?.present, true);
    const k2 = keepalived(s, s.n2);
    await until(() => /INSTANCE NFS BACKUP: lockdropd has 10\.83\.0\.100 released \(locks dropped\)/.test(k2.notified()), `n2's notify script: ${k2.notified()}`);

    assert.deepEqual(await lockMany(s.client, VIP, 12), { granted: 12 });
    assert.deepEqual(await lockMany(s.client, STAY, 3), { granted: 3 });
    const marks = { from: s.n1.log.count, to: s.n2.log.count, client: s.client.count };
    // n1 goes away from VRRP (keepalived stops: it removes the VIP and tells the peer at once).
    k1.k.kill('SIGTERM');
    await assertMoved(s, s.n1, s.n2, 12, marks);
    // Both notify scripts confirmed what lockdropd did: n1 stopped and dropped, n2 serves.
    await until(() => /INSTANCE NFS STOP: lockdropd has 10\.83\.0\.100 released \(locks dropped\)/.test(k1.notified()), `n1's notify script: ${k1.notified()}; keepalived: ${k1.output()}`);
    await until(() => MASTER.test(k2.notified()), `n2's notify script: ${k2.notified()}`);
    // track_script: a lockdropd that stops answering fails keepalived's check (lowering the node's priority).
    s.n2.daemon.kill('SIGSTOP');
    await until(() => /VRRP_Script\(lockdrop\) failed/.test(k2.output()), `keepalived on n2 saw lockdropctl check fail: ${k2.output()}`);
    s.n2.daemon.kill('SIGCONT');
    k2.k.kill('SIGTERM');
  });

  it('with keepalived: the address leaves a node whose lockdropd fails within 10 s, and stays where it went when it is back', async function () {
    if (!hasCommand('keepalived')) throw new Error('keepalived is needed (bash scripts/setup.sh installs it)');
    s = await scene();
    const sc = s;
    const k1 = keepalived(s, s.n1);
    await until(() => MASTER.test(k1.notified()), `n1's notify script: ${k1.notified()}; keepalived: ${k1.output()}`);
    const k2 = keepalived(s, s.n2);
    await until(() => /INSTANCE NFS BACKUP/.test(k2.notified()), `n2's notify script: ${k2.notified()}`);
    const holds = (n: Node): boolean => sc.lab.exec(n.host, 'ip', ['-4', '-o', 'addr', 'show', 'dev', n.host.nic]).includes(`${VIP}/`);
    assert.ok(holds(s.n1) && !holds(s.n2));
    // Hung, the harder case to notice: the control socket accepts, nothing answers.
    const t0 = Date.now();
    s.n1.daemon.kill('SIGSTOP');
    await until(() => holds(sc.n2) && !holds(sc.n1), `the address moved to n2; keepalived n1: ${k1.output()}; n2: ${k2.output()}`, 20_000);
    const ms = Date.now() - t0;
    assert.ok(ms < 10_000, `the address moved ${ms} ms after lockdropd failed on n1`);
    await until(() => MASTER.test(k2.notified()), `n2's notify script: ${k2.notified()}`);
    // Back on n1: same priority as n2 again, no preemption, no second move (and grace).
    s.n1.daemon.kill('SIGCONT');
    await until(() => (k1.output().match(/VRRP_Script\(lockdrop\) succeeded/g) ?? []).length >= 2, `n1's check passes again: ${k1.output()}`);
    await new Promise((r) => setTimeout(r, 4_000));
    assert.ok(holds(sc.n2) && !holds(sc.n1), 'the address stayed on n2');
    k1.k.kill('SIGTERM');
    k2.k.kill('SIGTERM');
  });

  it("with resource-agents' IPaddr2 (stop on one node, start on the other)", async function () {
    if (!existsSync(IPADDR2)) throw new Error(`${IPADDR2} is needed (resource-agents; bash scripts/setup.sh installs it)`);
    s = await scene();
    const ipaddr2 = (n: Node, op: 'start' | 'stop') =>
      s!.lab.exec(n.host, IPADDR2, [op], { ...process.env, OCF_ROOT: '/usr/lib/ocf', OCF_RESOURCE_INSTANCE: 'vip', OCF_RESKEY_ip: VIP, OCF_RESKEY_cidr_netmask: '24', OCF_RESKEY_nic: n.host.nic });
    ipaddr2(s.n1, 'start');
    for (let i = 0; i < 100 && !at(status(s, s.n1), VIP)?.present; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await lockMany(s.client, VIP, 10), { granted: 10 });
    const marks = { from: s.n1.log.count, to: s.n2.log.count, client: s.client.count };
    ipaddr2(s.n1, 'stop');
    ipaddr2(s.n2, 'start');
    await assertMoved(s, s.n1, s.n2, 10, marks);
  });
});
