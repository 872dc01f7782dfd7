// Two lockdropd nodes with private state directories and the etcd store (three members of a real
// etcd cluster, each in a network namespace of its own on the lab's bridge): a move with
// reclaims (the journal and NSM's records come from etcd), the etcd leader killed during a move,
// and a node cut off from etcd (blackhole routes): it refuses new grants and says so, the other
// node does not take its address before its lease expired in etcd, nothing is lost.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { CheckReport, StatusReport } from '../../src/control';
import { Lab, type JsonLines, type LabHost } from '../../src/demo/lab';
import { requireNamespaceRoot, skipBecause } from '../support/netns';
import { REPO, ensureBuilt } from '../daemon/harness';
import { EtcdCluster, hasEtcd } from './etcd-cluster';

const VIP = '10.86.0.100';
/** Stays on n1: the address a new grant is refused through while n1 is cut off. */
const VIP2 = '10.86.0.101';
const LEASE_SECONDS = 4;
const PREFIX = '/lockdrop/two-nodes';

interface Node {
  host: LabHost;
  control: string;
  log: JsonLines;
}

describe('store: two lockdropd nodes on etcd, private state directories', function () {
  this.timeout(150_000);
  let lab: Lab | undefined;
  let cluster: EtcdCluster | undefined;
  let dir: string | undefined;

  before(function () {
    requireNamespaceRoot(this);
    if (!hasEtcd()) skipBecause(this, 'etcd is not installed (etcd-server: scripts/setup.sh)');
    ensureBuilt();
  });
  after(async () => {
    await cluster?.stop();
    await lab?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(lab?.leftovers() ?? [], []);
  });

  it('a move with reclaims; the etcd leader killed during a move; a node cut off from etcd refuses new grants and keeps its address until its lease expired; nothing lost', async () => {
    lab = new Lab(`lde${process.pid % 1000}`, '10.86.0');
    dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-etcd-nodes-'));
    await lab.start();
    const members = [await lab.addHost('e0', 21), await lab.addHost('e1', 22), await lab.addHost('e2', 23)];
    const wrap = (h: LabHost): string[] => ['nsenter', '-t', String(h.anchorPid), '-n', '-m', '-u', '--'];
    cluster = await EtcdCluster.start({ hosts: members.map((m) => m.address), wraps: members.map(wrap), basePort: 2379 });
    const [h1, h2, hc] = [await lab.addHost('n1', 1), await lab.addHost('n2', 2), await lab.addHost('c1', 11)];
    const start = (host: LabHost): Node => {
      const own = path.join(dir!, host.name);
      mkdirSync(own, { mode: 0o700, recursive: true });
      const d = lab!.startDaemon(host, own, {
        nlmPort: 4045, nsmPort: 4046, addresses: [VIP, VIP2], sources: ['netlink', 'poll'], pollInterval: 1, grace: 20, leaseSeconds: LEASE_SECONDS, notify: { timeout: 10 },
        store: { etcd: { endpoints: cluster!.endpoints, prefix: PREFIX, commitTimeoutMs: 1_000 } },
      }, (j) => process.env.ETCD_TEST_LOG && (Number(j.level) >= 40 || j.address === VIP) && process.stderr.write(`${host.name} ${String(j.msg)}\n`));
      return { host, control: d.control, log: d.log };
    };
    const n1 = start(h1);
    const n2 = start(h2);
    for (const n of [n1, n2]) await lab.waitForControl(n.host, n.control);
    const client = await lab.startClient(hc);
    const status = (n: Node) => lab!.ctl<StatusReport>(n.host, n.control, ['status']);
    const check = (n: Node) => JSON.parse(lab!.exec(n.host, 'sh', ['-c', `${process.execPath} ${path.join(REPO, 'bin', 'lockdropctl')} --json --control ${n.control} check || true`])) as CheckReport;
    const add = (n: Node) => lab!.exec(n.host, 'ip', ['addr', 'add', `${VIP}/24`, 'dev', n.host.nic]);
    const del = (n: Node) => lab!.exec(n.host, 'ip', ['addr', 'del', `${VIP}/24`, 'dev', n.host.nic]);
    const keys = (sub: string) => cluster!.ctl(['get', '--prefix', `${PREFIX}/${sub}`, '--keys-only']).split('\n').filter(Boolean);
    const arrive = (n: Node, what: string, mark: number) => n.log.wait(what, (j) => j.address === VIP && / arrived: /.test(String(j.msg)), 20_000, mark);
    const move = async (from: Node, to: Node, what: string): Promise<void> => {
      const mark = to.log.count;
      const clientMark = client.count;
      del(from);
      lab!.exec(hc, 'ip', ['neigh', 'flush', 'all']);
      add(to);
      const arrived = await arrive(to, `${what}: arrival`, mark);
      assert.equal(arrived.monitors, 1, `${what}: the client's NSM record, from etcd`);
      const reclaimed = await client.wait(`${what}: reclaim`, (j) => j.event === 'reclaimed', 20_000, clientMark);
      assert.deepEqual([reclaimed.granted, reclaimed.of], [5, 5], `${what}: every lock reclaimed`);
      await to.log.wait(`${what}: grace ended`, (j) => j.address === VIP && /^grace of .* ended: 5 of 5 locks reclaimed by 1 host/.test(String(j.msg)), 15_000, mark);
    };

    // n1 takes the address; the client's five locks are in etcd before it hears GRANTED.
    add(n1);
    await arrive(n1, 'n1 arrival', 0);
    client.send({ do: 'lock', server: VIP, count: 5 });
    assert.deepEqual((await client.wait('locked', (j) => j.event === 'locked', 20_000)).statuses, { granted: 5 });
    assert.equal(keys(`journal/${VIP}/`).length, 5, 'five journal entries in etcd');
    assert.equal(keys(`nsm/${VIP}/hosts/`).length, 1, "the client's NSM record in etcd");
    assert.deepEqual(keys(`holder/${VIP}`), [`${PREFIX}/holder/${VIP}`]);
    assert.deepEqual(status(n1).store, { kind: 'etcd', ok: true, reason: null });

    // A planned move to n2, whose state directory never saw the address.
    await move(n1, n2, 'move to n2');

    // Back to n1 with the etcd leader killed at the start of the move.
    const leader = cluster.leader();
    await cluster.kill(leader);
    await move(n2, n1, 'move to n1, leader killed');
    cluster.restart(leader);
    await cluster.waitHealthy(10_000);

    // n1 cut off from etcd while it holds VIP (5 locks) and VIP2. VIP goes to n2 at once: n2 waits
    // until n1's lease expired in etcd (its last keep-alive, at most a third of the lease before
    // the cut, left it two thirds at least). Meanwhile n1 keeps its held locks, refuses a new grant
    // through VIP2, and status and check say why.
    lab.exec(h1, 'ip', ['addr', 'add', `${VIP2}/24`, 'dev', h1.nic]);
    await n1.log.wait('VIP2 on n1', (j) => j.address === VIP2 && / arrived: /.test(String(j.msg)), 20_000);
    let clientMark = client.count;
    client.send({ do: 'try', server: VIP2, offset: 40_000, length: 10 });
    assert.equal((await client.wait('a lock through VIP2 (the client monitored there)', (j) => j.event === 'tried', 20_000, clientMark)).status, 'granted');
    for (const m of members) lab.exec(h1, 'ip', ['route', 'add', 'blackhole', `${m.address}/32`]);
    const cutAt = Date.now();
    const cutMark = n1.log.count;
    const n2Mark = n2.log.count;
    clientMark = client.count;
    del(n1);
    lab.exec(hc, 'ip', ['neigh', 'flush', 'all']);
    add(n2);
    await n2.log.wait('n2 waiting for the lease', (j) => j.address === VIP && /its lease in etcd is not this node's/.test(String(j.msg)), 10_000, n2Mark);
    client.send({ do: 'try', server: VIP2, offset: 50_000, length: 10 });
    const tried = await client.wait('a new lock while cut off', (j) => j.event === 'tried', 20_000, clientMark);
    assert.equal(tried.status, 'denied_nolocks');
    await n1.log.wait('the refusal, once for the address', (j) => j.address === VIP2 && /grants refused \(denied_nolocks\)/.test(String(j.msg)), 10_000, cutMark);
    const c = check(n1);
    assert.equal(c.ok, false);
    assert.ok(c.problems.some((p) => /cluster store \(etcd\) cannot make new grants durable/.test(p)), JSON.stringify(c.problems));
    await arrive(n2, 'n2 arrival after the lease expired', n2Mark);
    const waited = Date.now() - cutAt;
    assert.ok(waited >= (LEASE_SECONDS * 1000 * 2) / 3, `n2 took the address ${waited} ms after the cut: not before n1's lease (${LEASE_SECONDS} s) ran out`);
    const reclaimed = await client.wait('reclaim on n2', (j) => j.event === 'reclaimed', 20_000, clientMark);
    assert.deepEqual([reclaimed.granted, reclaimed.of], [5, 5], 'nothing lost');

    // The cut heals: n1 is back (its store ok, check clean of it) and does not claim the address.
    for (const m of members) lab.exec(h1, 'ip', ['route', 'del', 'blackhole', `${m.address}/32`]);
    const deadline = Date.now() + 15_000;
    while (!status(n1).store?.ok && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(status(n1).store, { kind: 'etcd', ok: true, reason: null });
    assert.equal(cluster.ctl(['get', `${PREFIX}/holder/${VIP}`, '--print-value-only']).trim(), h2.netns, 'n2 holds the address');
    assert.equal(keys(`journal/${VIP}/`).length, 5);
  });
});
