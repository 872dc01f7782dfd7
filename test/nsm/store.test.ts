import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NsmStore, parseHostRecord, recordFileName, type HostRecord } from '../../src/nsm';

const rec = (i: number, serverAddress = '10.0.0.5'): HostRecord => ({
  monName: `client${i}`, address: `192.168.${i >> 8}.${i & 255}`, serverAddress, local: true, callbacks: [], since: 1,
});

describe('nsm durable store', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(tmpdir(), 'nsm-store-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes records and the state number and reads them back', async () => {
    const s = new NsmStore(dir);
    await Promise.all([s.put(rec(1)), s.put(rec(2)), s.writeState('10.0.0.5', 7)]);
    assert.equal(readFileSync(path.join(dir, '10.0.0.5', 'state'), 'utf8'), '7\n');
    const got = await new NsmStore(dir).load('10.0.0.5');
    assert.equal(got.state, 7);
    assert.deepEqual(got.records.sort((a, b) => a.monName.localeCompare(b.monName)), [rec(1), rec(2)]);
    assert.deepEqual(got.skipped, []);
    assert.deepEqual(await s.addresses(), ['10.0.0.5']);
  });

  it('group-commits a burst: far fewer directory fsyncs than records', async () => {
    const s = new NsmStore(dir);
    await Promise.all(Array.from({ length: 500 }, (_, i) => s.put(rec(i))));
    assert.equal(readdirSync(s.hostsDir('10.0.0.5')).length, 500);
    assert.ok(s.dirSyncs < 20, `dir fsyncs: ${s.dirSyncs}`);
  });

  it('removes records, last write in a batch wins', async () => {
    const s = new NsmStore(dir);
    await s.put(rec(1));
    const a = s.put({ ...rec(1), state: 9 });
    const b = s.remove(rec(1));
    await Promise.all([a, b]);
    assert.deepEqual((await s.load('10.0.0.5')).records, []);
    await s.remove(rec(1)); // already gone: fine
  });

  it('skips torn, empty and corrupt records by path, keeps good ones and never deletes them', async () => {
    const s = new NsmStore(dir);
    await s.put(rec(1));
    const hosts = s.hostsDir('10.0.0.5');
    const good = JSON.stringify(rec(2));
    const files = {
      torn: good.slice(0, good.length / 2),
      empty: '',
      garbage: '\u0000\u0001binary',
      wrongShape: JSON.stringify({ monName: 'x' }),
      otherAddress: JSON.stringify(rec(3, '10.9.9.9')),
    };
    for (const [n, t] of Object.entries(files)) writeFileSync(path.join(hosts, `${n}.json`), t);
    writeFileSync(path.join(hosts, '.leftover.json.tmp'), 'half');
    const got = await s.load('10.0.0.5');
    assert.deepEqual(got.records, [rec(1)]);
    assert.deepEqual(got.skipped.map((k) => path.basename(k.path)).sort(), Object.keys(files).map((n) => `${n}.json`).sort());
    const left = readdirSync(hosts).sort();
    assert.deepEqual(left, [...Object.keys(files).map((n) => `${n}.json`), recordFileName('client1', rec(1).address)].sort());
  });

  it('a record passes the plain check exactly when it is what the schema allows; a bad one is refused with the reason', () => {
    const cb = { myName: 'me', myProg: 100021, myVers: 4, myProc: 16, priv: '00'.repeat(16), callbackAddress: '127.0.0.1' };
    const good: HostRecord[] = [rec(1), { ...rec(2), state: -3 }, { ...rec(3), callbacks: [cb, { ...cb, myName: '' }] }];
    for (const r of good) assert.deepEqual(parseHostRecord(JSON.stringify(r)), r);
    const bad: [unknown, RegExp][] = [
      [[rec(1)], /invalid record/], [null, /invalid record/], [{ ...rec(1), extra: 1 }, /invalid record/],
      [{ ...rec(1), monName: '' }, /monName/], [{ ...rec(1), monName: 'x'.repeat(1025) }, /monName/],
      [{ ...rec(1), address: 'host' }, /address/], [{ ...rec(1), serverAddress: 5 }, /serverAddress/],
      [{ ...rec(1), state: 1.5 }, /state/], [{ ...rec(1), state: 2 ** 31 }, /state/], [{ ...rec(1), local: 'yes' }, /local/],
      [{ ...rec(1), since: '1' }, /since/], [{ ...rec(1), callbacks: {} }, /callbacks/],
      [{ ...rec(1), callbacks: [{ ...cb, priv: 'AA'.repeat(16) }] }, /callbacks.0.priv/],
      [{ ...rec(1), callbacks: [{ ...cb, extra: true }] }, /callbacks.0/], [{ ...rec(1), callbacks: [{ ...cb, myProc: -(2 ** 31) - 1 }] }, /myProc/],
      [{ ...rec(1), callbacks: [cb, { ...cb, callbackAddress: '1.2.3' }] }, /callbacks.1.callbackAddress/],
    ];
    for (const [r, why] of bad) assert.match(parseHostRecord(JSON.stringify(r)) as string, why, JSON.stringify(r));
  });

  it('reports a corrupt state file and carries on', async () => {
    mkdirSync(path.join(dir, '10.0.0.5'), { recursive: true });
    writeFileSync(path.join(dir, '10.0.0.5', 'state'), 'xx');
    const got = await new NsmStore(dir).load('10.0.0.5');
    assert.equal(got.state, undefined);
    assert.equal(got.skipped.length, 1);
  });

  it('names files safely whatever the mon_name', () => {
    assert.equal(recordFileName('a/b', '1.2.3.4'), 'a%2Fb%401.2.3.4.json');
    assert.equal(recordFileName('..', '1.2.3.4'), '%2E.%401.2.3.4.json');
    assert.match(recordFileName('x'.repeat(500), '1.2.3.4'), /^[0-9a-f]{64}\.json$/);
  });

  it("keeps the node's own identity (loopback) per host: nodes sharing the directory never share it", async () => {
    const a = new NsmStore(dir, { host: 'node-a' });
    const b = new NsmStore(dir, { host: 'node-b' });
    await Promise.all([a.writeState('127.0.0.1', 3), b.writeState('127.0.0.1', 9), a.put(rec(1, '127.0.0.1'))]);
    assert.equal((await a.load('127.0.0.1')).state, 3);
    assert.deepEqual((await b.load('127.0.0.1')).records, []);
    assert.equal((await b.load('127.0.0.1')).state, 9);
    assert.deepEqual(readdirSync(dir).sort(), ['node-node-a', 'node-node-b']);
    assert.deepEqual(await a.addresses(), [], 'a node folder is no server address');
  });

  it("an older directory's 127.0.0.1 folder becomes the node's of the first host that loads it", async () => {
    mkdirSync(path.join(dir, '127.0.0.1', 'hosts'), { recursive: true });
    writeFileSync(path.join(dir, '127.0.0.1', 'state'), '5\n');
    writeFileSync(path.join(dir, '127.0.0.1', 'hosts', recordFileName('client1', '192.168.0.1')), JSON.stringify(rec(1, '127.0.0.1')));
    const first = await new NsmStore(dir, { host: 'node-a' }).load('127.0.0.1');
    assert.equal(first.state, 5);
    assert.equal(first.records.length, 1);
    const second = await new NsmStore(dir, { host: 'node-b' }).load('127.0.0.1');
    assert.equal(second.state, undefined);
    assert.deepEqual(readdirSync(dir).sort(), ['node-node-a']);
  });

  it('two writers of one file at once never meet in a temp file (every write lands, none fails)', async () => {
    const a = new NsmStore(dir, { host: 'same' });
    const b = new NsmStore(dir, { host: 'same' });
    const writes: Promise<void>[] = [];
    for (let i = 1; i <= 40; i++) writes.push(a.writeState('10.0.0.5', 2 * i + 1), b.writeState('10.0.0.5', 2 * i + 1));
    await Promise.all(writes);
    assert.equal(readFileSync(path.join(dir, '10.0.0.5', 'state'), 'utf8'), '81\n');
    assert.deepEqual(readdirSync(path.join(dir, '10.0.0.5')), ['state'], 'no temp file left');
  });

  it('refuses a server address that would escape the state directory', () => {
    const s = new NsmStore(dir);
    assert.throws(() => s.addressDir('../etc'), RangeError);
    assert.throws(() => s.addressDir(''), RangeError);
  });
});
