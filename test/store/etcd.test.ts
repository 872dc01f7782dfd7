// The cluster store port's contract against both adapters (a state directory, and a real
// three-member etcd cluster started here), then what only etcd has: the holder lease, a killed
// leader, lost quorum.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ConfigError, validateConfig } from '../../src/daemon/config';
import { EtcdNsmRecords } from '../../src/daemon/etcd-nsm';
import { NsmStore } from '../../src/nsm';
import { DirectoryStore, EtcdStore, HeldError, type ClusterStore, type EtcdStoreOptions } from '../../src/store';
import { skipBecause } from '../support/netns';
import { waitFor } from '../support/wait';
import { EtcdCluster, hasEtcd } from './etcd-cluster';
import { follower, storeContract, V, waitForAsync } from './etcd-contract';

const silent = pino({ level: process.env.STORE_LOG ?? 'silent' });
const LIVENESS_MS = 2_000;

describe('store: the store.etcd configuration', () => {
  const base = { stateDir: '/tmp/x' };
  it('defaults to the state directory; takes endpoints, a prefix, TLS files, a commit timeout', () => {
    assert.equal(validateConfig(base, 'test').store.etcd, undefined);
    assert.deepEqual(validateConfig({ ...base, store: { etcd: { endpoints: ['https://10.0.0.1:2379'], tls: { ca: '/etc/ca.pem', cert: '/etc/c.pem', key: '/etc/c.key' } } } }, 'test').store.etcd, {
      endpoints: ['https://10.0.0.1:2379'], prefix: '/lockdrop/default', tls: { ca: '/etc/ca.pem', cert: '/etc/c.pem', key: '/etc/c.key' }, commitTimeoutMs: 2000,
    });
  });
  it('bad input: clear errors', () => {
    const bad = (etcd: unknown, re: RegExp) => assert.throws(() => validateConfig({ ...base, store: { etcd } }, 'test'), (err: Error) => err instanceof ConfigError && re.test(err.message));
    bad({ endpoints: [] }, /endpoints/);
    bad({ endpoints: ['10.0.0.1:2379'] }, /must be "http\(s\):\/\/host:port"/);
    bad({ endpoints: ['http://a:1'], prefix: 'lockdrop/' }, /absolute key path/);
    bad({ endpoints: ['http://a:1'], tls: { ca: '/ca', cert: '/c' } }, /cert and key go together/);
    bad({ endpoints: ['http://a:1'], commitTimeoutMs: 0 }, /commitTimeoutMs/);
    bad({ endpoints: ['http://a:1'], user: 'x' }, /user/);
  });
});

describe('store contract: a state directory', function () {
  this.timeout(20_000);
  let dir: string;
  const opened: ClusterStore[] = [];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(tmpdir(), 'lockdrop-store-'));
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  storeContract(async (node) => {
    const s = await DirectoryStore.open({ stateDir: dir, node, pollMs: 20, livenessMs: LIVENESS_MS, log: silent });
    opened.push(s);
    return s;
  }, LIVENESS_MS);
});

describe('store contract: etcd (three members)', function () {
  this.timeout(30_000);
  let cluster: EtcdCluster;
  let prefix: string;
  let n = 0;
  const opened: EtcdStore[] = [];
  const open = async (node: string, o: Partial<EtcdStoreOptions> = {}): Promise<EtcdStore> => {
    const s = await EtcdStore.open({ endpoints: cluster.endpoints, prefix, node, livenessMs: LIVENESS_MS, commitTimeoutMs: 1_000, log: silent, ...o });
    opened.push(s);
    return s;
  };
  before(async function () {
    if (!hasEtcd()) skipBecause(this, 'etcd is not installed (etcd-server: scripts/setup.sh)');
    this.timeout(20_000);
    cluster = await EtcdCluster.start();
  });
  after(async () => {
    await cluster?.stop();
  });
  beforeEach(() => {
    prefix = `/lockdrop/test-${++n}`;
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });

  storeContract((node) => open(node), LIVENESS_MS);

  it('holder lease: a second node cannot take over a held address; it can once the holder is gone (killed -9: its lease runs out, no revoke)', async () => {
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', path.join(__dirname, 'etcd-child.ts'), cluster.endpoints.join(','), prefix, 'node-a', String(LIVENESS_MS), V], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        child.on('exit', (code) => reject(new Error(`the child exited ${code}`)));
      });
      const b = await open('node-b');
      await assert.rejects(b.takeOver(V), (err: Error) => err instanceof HeldError && err.message === 'node-a holds the lease of 10.99.0.7');
      assert.equal(b.holderOf(V), 'node-a');
      const t0 = performance.now();
      child.kill('SIGKILL');
      const live = await waitForAsync('b to take V over', async () => {
        try {
          return await b.takeOver(V);
        } catch (err) {
          if (!(err instanceof HeldError)) throw err;
          return undefined;
        }
      }, LIVENESS_MS + 3_000);
      const ms = performance.now() - t0;
      assert.ok(ms >= LIVENESS_MS - 600, `taken after ${ms.toFixed(0)} ms: not before node-a's lease (${LIVENESS_MS} ms) ran out`);
      assert.deepEqual(Object.fromEntries([...live].map(([k, v]) => [k, v.toString()])), { held: '1' }, 'the journal survives its holder');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('bad input in etcd: keys lockdrop did not write are ignored, a corrupt NSM record or state number is skipped with its reason, no crash', async () => {
    cluster.ctl(['put', `${prefix}/journal/not-an-address/k`, 'x']);
    cluster.ctl(['put', `${prefix}/journal/FD00::1/k`, 'x']);
    cluster.ctl(['put', `${prefix}/journal/${V}`, 'no entry key']);
    cluster.ctl(['put', `${prefix}/holder/../etc`, 'x']);
    cluster.ctl(['put', `${prefix}/elsewhere`, 'x']);
    cluster.ctl(['put', `${prefix}/journal/${V}/good`, 'g']);
    cluster.ctl(['put', `${prefix}/nsm/${V}/state`, 'seven']);
    cluster.ctl(['put', `${prefix}/nsm/${V}/hosts/bad.json`, '{"monName": 1}']);
    cluster.ctl(['put', `${prefix}/nsm/${V}/hosts/torn.json`, '{"monName": "a", "addr']);
    const a = await open('node-a');
    const fa = follower(a);
    assert.deepEqual([...fa.view.keys()], [V]);
    assert.deepEqual(fa.of(V), { good: 'g' });
    cluster.ctl(['put', `${prefix}/journal/not-an-address/k2`, 'x']); // through the watch too
    cluster.ctl(['put', `${prefix}/journal/${V}/later`, 'l']);
    await waitFor('the watched entry', () => fa.of(V).later === 'l', 3_000);
    assert.deepEqual([...fa.view.keys()], [V]);
    const nsm = new EtcdNsmRecords(a, new NsmStore('/nonexistent/lockdrop-nsm') /* loopback only: never touched here */);
    const loaded = await nsm.load(V);
    assert.equal(loaded.state, undefined);
    assert.deepEqual(loaded.records, []);
    assert.deepEqual(loaded.skipped.map((s) => [s.path.replace(prefix, ''), s.reason.split(':')[0]]).sort(), [
      [`etcd nsm/${V}/hosts/bad.json`, 'invalid record'],
      [`etcd nsm/${V}/hosts/torn.json`, 'torn or corrupt record (not JSON)'],
      [`etcd nsm/${V}/state`, 'corrupt state number'],
    ]);
    assert.throws(() => nsm.writeState(V, 2 ** 40), /not a 32-bit integer/);
    fa.sub.unsubscribe();
  });

  it('the etcd leader killed during commits: every commit resolves or rejects, and every resolved one is there', async () => {
    const a = await open('node-a');
    const b = await open('node-b');
    const fb = follower(b);
    await a.takeOver(V);
    const resolved: string[] = [];
    let rejected = 0;
    const leader = cluster.leader();
    const killing = (async () => {
      await new Promise((r) => setTimeout(r, 100));
      await cluster.kill(leader);
    })();
    for (let i = 0; i < 60; i++) {
      a.append(V, [{ key: `g${i}`, value: Buffer.from(String(i)) }]);
      await a.commit().then(() => resolved.push(`g${i}`), () => rejected++);
      await new Promise((r) => setTimeout(r, 10));
    }
    await killing;
    cluster.restart(leader);
    await cluster.waitHealthy(10_000);
    await a.commit().catch(() => undefined);
    const c = await open('node-c');
    const fc = follower(c);
    for (const k of resolved) assert.ok(k in fc.of(V), `${k} acknowledged but not in etcd`);
    await waitFor('b to follow through the election', () => resolved.every((k) => k in fb.of(V)), 5_000);
    // How many the election refused depends on the machine's load (a benchmark's to say): some before it must have gone through.
    assert.ok(resolved.length >= 1, `${resolved.length} of 60 commits made durable across the election (${rejected} refused)`);
    fb.sub.unsubscribe();
    fc.sub.unsubscribe();
  });

  it('quorum lost: commits reject within the timeout (one error line per address), health() says why; back: what was kept is written', async () => {
    const lines: Array<{ msg: string; level: number }> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => { if (process.env.STORE_LOG) process.stderr.write(s); lines.push(JSON.parse(s) as { msg: string; level: number }); } });
    const a = await open('node-a', { log });
    await a.takeOver(V);
    a.append(V, [{ key: 'before', value: Buffer.from('1') }]);
    await a.commit();
    assert.deepEqual(a.health(), { ok: true });
    const gone = cluster.members.filter((m) => m !== cluster.members[0]);
    for (const m of gone) await cluster.kill(m);
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) {
      a.append(V, [{ key: `during${i}`, value: Buffer.from('x') }]);
      await assert.rejects(a.commit(), /journal of 10\.99\.0\.7: not durable/);
    }
    assert.ok(performance.now() - t0 < 3 * 1_000 + 1_500, `three refusals in ${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal(lines.filter((l) => l.msg.startsWith('journal of 10.99.0.7: grants refused')).length, 1, 'logged once for the address');
    assert.ok(a.counters.refused >= 3);
    await waitFor('health() to say etcd is unreachable', () => !a.health().ok, 5_000);
    assert.match(a.health().reason ?? '', /etcd unreachable since/);
    a.append(V, [{ key: 'during0', value: null }]); // a grant taken back: its delete trails
    for (const m of gone) cluster.restart(m);
    await cluster.waitHealthy(10_000);
    await waitForAsync('a to write what it kept', async () => {
      try {
        await a.commit();
        return true;
      } catch {
        return false;
      }
    }, 8_000);
    const b = await open('node-b');
    const fb = follower(b);
    assert.deepEqual(fb.of(V), { before: '1', during1: 'x', during2: 'x' }, 'kept in order and written once etcd was back');
    await waitFor('health() ok again', () => a.health().ok, 5_000);
    fb.sub.unsubscribe();
  });
});
