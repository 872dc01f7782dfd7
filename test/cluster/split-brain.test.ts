// Split brain with two lockdropd nodes over one state directory: an address that arrives on a
// node while the other node holds its lease gets no listeners, grace or SM_NOTIFY there — an
// error, a metric, a status line — until the holder lets go (the address leaves it: the lease is
// released at once) or dies (the lease expires after leaseSeconds without a renewal).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { CheckReport, StatusReport } from '../../src/control';
import { Lab, type JsonLines, type LabHost } from '../../src/demo/lab';
import { requireNamespaceRoot } from '../support/netns';
import { REPO, ensureBuilt } from '../daemon/harness';

const VIP = '10.85.0.100';
const LEASE_SECONDS = 2;

interface Node {
  host: LabHost;
  control: string;
  log: JsonLines;
  daemon: ChildProcess;
  metricsPort: number;
}

describe('cluster: split brain, two lockdropd nodes on one state directory', function () {
  this.timeout(120_000);
  let lab: Lab | undefined;
  let dir: string | undefined;

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });
  after(async () => {
    await lab?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(lab?.leftovers() ?? [], []);
  });

  it('the second node with the address waits for the lease: no grace, no notify; it takes over when the holder lets go, or when the holder dies and its lease expires', async () => {
    lab = new Lab(`ldb${process.pid % 1000}`, '10.85.0');
    dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-split-'));
    await lab.start();
    const [h1, h2, hc] = [await lab.addHost('n1', 1), await lab.addHost('n2', 2), await lab.addHost('c1', 11)];
    const shared = path.join(dir, 'shared');
    mkdirSync(shared);
    const start = (host: LabHost, metricsPort: number): Node => {
      const own = path.join(dir!, host.name);
      mkdirSync(own, { mode: 0o700, recursive: true });
      const d = lab!.startDaemon(host, own, { stateDir: shared, nlmPort: 4045, nsmPort: 4046, addresses: [VIP], sources: ['netlink', 'poll'], pollInterval: 1, grace: 20, leaseSeconds: LEASE_SECONDS, notify: { timeout: 10 }, metrics: `127.0.0.1:${metricsPort}` });
      return { host, control: d.control, log: d.log, daemon: d.child, metricsPort };
    };
    const n1 = start(h1, 9464);
    const n2 = start(h2, 9464);
    for (const n of [n1, n2]) await lab.waitForControl(n.host, n.control);
    const client = await lab.startClient(hc);
    const status = (n: Node) => lab!.ctl<StatusReport>(n.host, n.control, ['status']);
    const at = (n: Node) => status(n).addresses.find((a) => a.address === VIP);
    const add = (n: Node) => lab!.exec(n.host, 'ip', ['addr', 'add', `${VIP}/24`, 'dev', n.host.nic]);
    const del = (n: Node) => lab!.exec(n.host, 'ip', ['addr', 'del', `${VIP}/24`, 'dev', n.host.nic]);
    const metric = (n: Node, name: string) => {
      const text = lab!.exec(n.host, process.execPath, ['-e', `fetch('http://127.0.0.1:${n.metricsPort}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`]);
      return text.split('\n').filter((l) => l.startsWith(`${name}{`) && l.includes(`address="${VIP}"`)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
    };

    // n1 takes the address: its lease, its locks.
    add(n1);
    await n1.log.wait('n1 arrival', (j) => j.address === VIP && / arrived: /.test(String(j.msg)), 15_000);
    const holder = JSON.parse(readFileSync(path.join(shared, VIP, 'holder'), 'utf8')) as { node: string };
    assert.equal(holder.node, h1.netns, 'the lease names n1 (its host name)');
    const mark = client.count;
    client.send({ do: 'lock', server: VIP, count: 5 });
    assert.deepEqual((await client.wait('locked', (j) => j.event === 'locked', 20_000, mark)).statuses, { granted: 5 });

    // The same address on n2 as well: refused there, loudly.
    const n2Mark = n2.log.count;
    const clientMark = client.count;
    add(n2);
    const conflict = await n2.log.wait('the conflict', (j) => j.address === VIP && j.level === 50 && /holds its lease/.test(String(j.msg)), 15_000, n2Mark);
    assert.equal(conflict.holder, h1.netns);
    assert.equal(at(n2)?.heldBy, h1.netns);
    assert.equal(at(n2)?.grace ?? null, null, 'no grace on n2');
    assert.equal(metric(n2, 'lockdrop_lease_conflicts_total'), 1);
    // And the ARP probe saw n1 answer for it.
    const dad = await n2.log.wait('the ARP probe', (j) => j.address === VIP && /another host \([0-9a-f:]{17}\) answers ARP for it/i.test(String(j.msg)), 10_000, n2Mark);
    assert.equal(dad.level, 50);
    assert.equal(metric(n2, 'lockdrop_duplicate_addresses_total'), 1);
    // Monitors see it: lockdropctl check fails on n2, naming the holder.
    const check = JSON.parse(lab.exec(n2.host, 'sh', ['-c', `${process.execPath} ${path.join(REPO, 'bin', 'lockdropctl')} --json --control ${n2.control} check || true`])) as CheckReport;
    assert.equal(check.ok, false);
    assert.ok(check.problems.includes(`${VIP} is on this node but ${h1.netns} holds its lease: not served here`), JSON.stringify(check.problems));
    // Two lease lengths with the holder alive and renewing: still waiting, nobody told the client anything.
    await new Promise((r) => setTimeout(r, 2 * LEASE_SECONDS * 1000 + 500));
    assert.equal(at(n2)?.heldBy, h1.netns, 'n1 keeps renewing: n2 keeps waiting');
    assert.equal(client.count, clientMark, 'no SM_NOTIFY from n2 while n1 holds the lease');
    await assert.rejects(n2.log.wait('an arrival on n2', (j) => j.address === VIP && / arrived: /.test(String(j.msg)), 1, n2Mark), 'n2 did not apply the arrival');

    // n1 lets go (the address leaves it): n2 takes the lease at once, opens grace, tells the client, which reclaims there.
    const takeMark = n2.log.count;
    del(n1);
    lab.exec(hc, 'ip', ['neigh', 'flush', 'all']);
    await n2.log.wait('the takeover', (j) => j.address === VIP && /lease taken over from/.test(String(j.msg)), 15_000, takeMark);
    const arrived = await n2.log.wait('n2 arrival', (j) => j.address === VIP && / arrived: /.test(String(j.msg)), 15_000, takeMark);
    assert.equal(arrived.monitors, 1, "n1's record of the client, from the shared directory");
    const notice = await client.wait('SM_NOTIFY from n2', (j) => j.event === 'sm-notify', 20_000, clientMark);
    assert.equal(notice.from, VIP);
    const reclaimed = await client.wait('reclaim', (j) => j.event === 'reclaimed', 20_000, clientMark);
    assert.deepEqual([reclaimed.granted, reclaimed.of], [5, 5]);
    assert.equal(at(n2)?.heldBy, null);
    // The journal said what to reclaim: all of it back, the grace ended by itself.
    await n2.log.wait('the grace ended', (j) => j.address === VIP && /^grace of .* ended: 5 of 5 locks reclaimed by 1 host/.test(String(j.msg)), 10_000, takeMark);
    assert.equal(at(n2)?.grace ?? null, null);
    assert.equal(JSON.parse(readFileSync(path.join(shared, VIP, 'holder'), 'utf8')).node, h2.netns);

    // Now n1 gets it back while n2 holds it, and n2 dies without letting go: n1 waits out the lease.
    const n1Mark = n1.log.count;
    add(n1);
    await n1.log.wait('the conflict on n1', (j) => j.address === VIP && /holds its lease/.test(String(j.msg)), 15_000, n1Mark);
    n2.daemon.kill('SIGKILL'); // nsenter execs the daemon: this is its pid
    const killedAt = Date.now();
    await n1.log.wait('the expiry', (j) => j.address === VIP && /lease taken over from/.test(String(j.msg)), 20_000, n1Mark);
    const waited = Date.now() - killedAt;
    assert.ok(waited >= LEASE_SECONDS * 1000 - 500, `n1 waited for the lease to expire (${waited} ms)`);
    await n1.log.wait('n1 arrival again', (j) => j.address === VIP && / arrived: /.test(String(j.msg)), 15_000, n1Mark);
  });
});
