// `lockdrop store migrate`: a stopped cluster's state from a state directory to a real etcd and
// back to another directory, through the CLI, with what each side then reads compared; refused
// while a node is live, and for an address the target already has.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { NsmStore, type HostRecord } from '../../src/nsm';
import { DirectoryStore, EtcdStore } from '../../src/store';
import { REPO, ensureBuilt } from '../daemon/harness';
import { skipBecause } from '../support/netns';
import { EtcdCluster, hasEtcd } from './etcd-cluster';

const silent = pino({ level: 'silent' });
const V = '10.99.0.7';
const W = 'fd00::9';
const record = (monName: string, address: string, serverAddress: string): HostRecord => ({
  monName, address, serverAddress, local: true, since: 1_700_000_000_000,
  callbacks: [{ myName: 'server', myProg: 100021, myVers: 4, myProc: 16, priv: '00'.repeat(16), callbackAddress: address }],
});

describe('store: lockdrop store migrate, a state directory to etcd and back', function () {
  this.timeout(40_000);
  let cluster: EtcdCluster;
  let root: string;
  before(async function () {
    if (!hasEtcd()) skipBecause(this, 'etcd is not installed (etcd-server: scripts/setup.sh)');
    ensureBuilt();
    cluster = await EtcdCluster.start();
    root = fs.mkdtempSync(path.join(tmpdir(), 'lockdrop-migrate-'));
  });
  after(async () => {
    await cluster?.stop();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });
  const migrate = (from: string, to: string, prefix: string) =>
    spawnSync(process.execPath, [path.join(REPO, 'bin', 'lockdrop'), 'store', 'migrate', '--from', from, '--to', to, '--endpoints', cluster.endpoints.join(','), '--prefix', prefix, '--json'], { encoding: 'utf8' });

  it('moves journals, records and state numbers there and back; what each side reads is the same', async () => {
    const a = path.join(root, 'a');
    const src = await DirectoryStore.open({ stateDir: a, node: 'old-node', log: silent });
    await src.takeOver(V);
    src.append(V, [{ key: 'lock-1', value: Buffer.from('one') }, { key: 'lock-2', value: Buffer.from('two') }, { key: 'lock-1', value: null }, { key: 'lock-3', value: Buffer.alloc(300, 7) }]);
    await src.commit();
    await src.close();
    const nsm = new NsmStore(a, { host: 'old-node' });
    await Promise.all([nsm.put(record('client-a', '10.99.0.20', V)), nsm.put(record('client-b', '10.99.0.21', V)), nsm.writeState(V, 7), nsm.put(record('client-c', 'fd00::20', W)), nsm.writeState(W, 3)]);
    await nsm.flush();

    const out = migrate(a, 'etcd', '/lockdrop/m1');
    assert.equal(out.status, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout).addresses, [
      { address: V, entries: 2, hosts: 2, state: 7 },
      { address: W, entries: 0, hosts: 1, state: 3 },
    ]);
    const e = await EtcdStore.open({ endpoints: cluster.endpoints, prefix: '/lockdrop/m1', node: 'reader', log: silent });
    const seen = new Map<string, Record<string, string>>();
    e.changes$.subscribe((c) => seen.set(c.address, Object.fromEntries(c.records.map((r) => [r.key, r.value?.toString('hex') ?? '']))));
    assert.deepEqual(seen.get(V), { 'lock-2': Buffer.from('two').toString('hex'), 'lock-3': Buffer.alloc(300, 7).toString('hex') });
    assert.deepEqual((await e.readRecords(`nsm/${V}/`)).map(([k]) => k).sort(), ['hosts/client-a%4010.99.0.20.json', 'hosts/client-b%4010.99.0.21.json', 'state']);
    assert.equal(cluster.ctl(['get', '--prefix', '/lockdrop/m1/holder/', '--keys-only']).trim(), '', 'no holder lease left behind');

    // While a node is live on etcd: refused.
    const b = path.join(root, 'b');
    fs.mkdirSync(b);
    const busy = migrate(b, 'etcd', '/lockdrop/m1');
    assert.notEqual(busy.status, 0, busy.stdout + busy.stderr);
    assert.match(busy.stdout + busy.stderr, /the cluster is not stopped: etcd \/lockdrop\/m1: lockdropd live on reader/);
    await e.close();

    // Back, to a new directory; then again onto it: the addresses clash.
    const back = migrate('etcd', b, '/lockdrop/m1');
    assert.equal(back.status, 0, back.stderr);
    const check = await DirectoryStore.open({ stateDir: b, node: 'checker', log: silent });
    assert.deepEqual(Object.fromEntries([...(await check.takeOver(V))].map(([k, v]) => [k, v.toString('hex')])), seen.get(V));
    await check.close();
    for (const addr of [V, W]) {
      const [x, y] = [await new NsmStore(a).load(addr), await new NsmStore(b).load(addr)];
      assert.deepEqual([y.state, y.records.sort((p, q) => p.monName.localeCompare(q.monName))], [x.state, x.records.sort((p, q) => p.monName.localeCompare(q.monName))], `${addr}: the same NSM state and records`);
    }
    const clash = migrate('etcd', b, '/lockdrop/m1');
    assert.notEqual(clash.status, 0);
    assert.match(clash.stdout + clash.stderr, /already has state for 10\.99\.0\.7, fd00::9: not merged/);

    // Bad input: both sides directories, no endpoints.
    const both = migrate(a, b, '/x');
    assert.match(both.stdout + both.stderr, /one side is etcd and the other a state directory/);
    const noEndpoints = spawnSync(process.execPath, [path.join(REPO, 'bin', 'lockdrop'), 'store', 'migrate', '--from', a, '--to', 'etcd'], { encoding: 'utf8' });
    assert.equal(noEndpoints.status, 64);
    assert.match(noEndpoints.stderr, /--endpoints is required/);
  });
});
