// lockdropd with exports on real files: bad exports refused at start (exit 78) naming the export,
// `lockdropctl drop --export` leaving nothing open so that a real umount succeeds, reloads that
// add and remove exports, and two daemons on two nodes (network namespaces) over one directory:
// a lock through node A's address conflicts with one through node B's, and a drop on A lets B's
// queued waiter in.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NlmClient } from '../../src/nlm';
import type { StatusReport } from '../../src/control';
import { requireNamespaceRoot, sh, startRpcbind, vethNamespace, type Netns } from '../support/netns';
import { ensureBuilt, spawnDaemon, type DaemonProcess } from '../daemon/harness';
import { nofileLimit } from '../../src/addon/files';
import { validateConfig } from '../../src/daemon/config';
import { fileBudget } from '../../src/daemon/files';
import { knfsdHandle, makeFile, mountTmpfs } from './support';

const status = (d: DaemonProcess): StatusReport => JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;

describe('files: lockdropd on real exports', function () {
  this.timeout(90_000);
  let stopRpcbind: () => Promise<void>;
  const cleanups: (() => unknown)[] = [];
  before(async function () {
    requireNamespaceRoot(this);
    ensureBuilt();
    stopRpcbind = await startRpcbind();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  after(async () => stopRpcbind?.());

  it('refuses exports it cannot lock on: a missing path, handles with no decoder (exit 78, naming the export)', async () => {
    const missing = spawnDaemon([], { config: { exports: [{ path: '/srv/not-here', fsid: 1 }] } });
    cleanups.push(() => missing.cleanup());
    assert.equal(await missing.exited, 78);
    assert.match(missing.stderr, /export \/srv\/not-here: the path does not exist/);
    const m = mountTmpfs();
    cleanups.push(() => m.dispose());
    const opaque = spawnDaemon([], { config: { exports: [{ path: m.dir, fhPrefix: ['abcd'] }] } });
    cleanups.push(() => opaque.cleanup());
    assert.equal(await opaque.exited, 78);
    assert.match(opaque.stderr, new RegExp(`export ${m.dir}: its handles are matched by fhPrefix only`));
  });

  it('a handle of no export answers stale_fh (v4) and denied_nolocks (v3) beside exports on real files, as knfsd does; with memory-only exports unknownHandles decides', async () => {
    const m = mountTmpfs();
    cleanups.push(() => m.dispose());
    const d = spawnDaemon([], { config: { exports: [{ path: m.dir, fsid: 23, secure: false, rootSquash: false }] } });
    cleanups.push(() => d.cleanup());
    const port = (await d.started()).nlmPort as number;
    const clients = await Promise.all([4, 3].map((vers) => NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'udp', vers: vers as 3 | 4, callerName: 'stray-client' })));
    cleanups.push(() => Promise.all(clients.map((c) => c.close())));
    const [v4, v3] = clients as [NlmClient, NlmClient];
    const stray = knfsdHandle(makeFile(m.dir, 'stray'), 99); // a real file, through an fsid no export has
    assert.equal((await v4.lock({ fh: stray, svid: 1, exclusive: true })).status, 'stale_fh');
    assert.equal((await v4.test({ fh: stray, svid: 1, exclusive: true })).status, 'stale_fh');
    assert.equal((await v3.lock({ fh: stray, svid: 1, exclusive: false })).status, 'denied_nolocks');
    assert.equal((await v4.lock({ fh: knfsdHandle(makeFile(m.dir, 'known'), 23), svid: 1, exclusive: true })).status, 'granted', 'its own export locks');
    assert.equal(status(d).locks, 1, 'nothing held in memory for the stray handle');
    await d.stop();

    const memory = spawnDaemon([], { config: { exports: [{ path: '/srv/seven', fsid: 7, secure: false, fileLocks: false }] } });
    cleanups.push(() => memory.cleanup());
    const mport = (await memory.started()).nlmPort as number;
    const c = await NlmClient.create({ server: { address: '127.0.0.1', port: mport }, transport: 'udp', vers: 4, callerName: 'stray-client' });
    cleanups.push(() => c.close());
    assert.equal((await c.lock({ fh: stray, svid: 2, exclusive: true })).status, 'granted', 'unknownHandles: allow (the default) with no export on real files');
  });

  it('drop --export closes every file of the export: umount succeeds at once; reload removes and adds exports', async () => {
    const a = mountTmpfs();
    const b = mountTmpfs();
    cleanups.push(() => a.dispose(), () => b.dispose());
    const config = (exports: unknown[]) => ({ exports });
    const d = spawnDaemon([], { config: { ...config([{ path: a.dir, fsid: 21, secure: false, rootSquash: false }, { path: b.dir, fsid: 22, secure: false, rootSquash: false }]), maxOpenFiles: 20 } });
    cleanups.push(() => d.cleanup());
    const port = (await d.started()).nlmPort as number;
    assert.deepEqual(status(d).files.exports.sort(), [a.dir, b.dir].sort());
    assert.equal(status(d).files.maxOpen, 20);
    const c = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'tcp', vers: 4, callerName: 'drop-client' });
    cleanups.push(() => c.close());
    for (let i = 0; i < 4; i++) {
      assert.equal((await c.lock({ fh: knfsdHandle(makeFile(a.dir, `a${i}`), 21), svid: i, exclusive: true })).status, 'granted');
      assert.equal((await c.lock({ fh: knfsdHandle(makeFile(b.dir, `b${i}`), 22), svid: i, exclusive: true })).status, 'granted');
    }
    assert.equal(status(d).files.open, 8);
    assert.throws(() => sh('umount', [a.dir]), /busy/i, 'held files keep the filesystem busy');
    const drop = d.ctl(['drop', '--export', a.dir, '--json']);
    assert.equal(drop.code, 0, drop.stderr);
    assert.equal((JSON.parse(drop.stdout) as { locks: number }).locks, 4);
    sh('umount', [a.dir]);
    sh('mount', ['-t', 'tmpfs', 'ld-files', a.dir]); // the same path again, for the reload below
    assert.equal(status(d).files.open, 4, "the other export's files stay open and locked");

    // Reload without b (and without maxOpenFiles: the budget a fresh start gives, from the fd
    // limit lockdropd raises to the hard one): b's locks are dropped and its files closed; a's export comes back.
    const fileOf = join(d.dir, 'lockdrop.yaml');
    writeFileSync(fileOf, JSON.stringify(config([{ path: a.dir, fsid: 21, secure: false, rootSquash: false }])));
    d.child.kill('SIGHUP');
    await d.waitLog((l) => /configuration reloaded: exports/.test(l.msg));
    assert.deepEqual(status(d).files.exports, [a.dir]);
    assert.equal(status(d).files.maxOpen, fileBudget(validateConfig({}, 'test'), nofileLimit().hard));
    assert.equal(status(d).files.open, 0);
    assert.equal(status(d).locks, 0);
    sh('umount', [b.dir]);
    sh('mount', ['-t', 'tmpfs', 'ld-files', b.dir]);
    assert.equal((await c.lock({ fh: knfsdHandle(makeFile(a.dir, 'again'), 21), svid: 9, exclusive: true })).status, 'granted');

    // A reload naming a path that does not exist is refused, keeping what runs.
    writeFileSync(fileOf, JSON.stringify(config([{ path: a.dir, fsid: 21, secure: false, rootSquash: false }, { path: '/srv/gone', fsid: 23 }])));
    d.child.kill('SIGHUP');
    await d.waitLog((l) => /reload refused/.test(l.msg) && JSON.stringify(l).includes('/srv/gone'));
    assert.deepEqual(status(d).files.exports, [a.dir]);
    assert.equal(status(d).locks, 1);
    assert.equal(await d.stop(), 0);
  });

  it('active-active: two lockdropd on two nodes over one directory see each other\'s locks; a drop on A lets B\'s waiter in', async () => {
    const shared = mountTmpfs();
    cleanups.push(() => shared.dispose());
    const nodes: Netns[] = [vethNamespace('10.77.1.1', '10.77.1.2'), vethNamespace('10.77.2.1', '10.77.2.2')];
    cleanups.push(() => nodes.forEach((n) => n.dispose()));
    const exports = [{ path: shared.dir, fsid: 31, secure: false, rootSquash: false }];
    const [a, b] = nodes.map((n) => spawnDaemon(['--grace', '1'], { netns: n.name, config: { exports } }));
    cleanups.push(() => a!.cleanup(), () => b!.cleanup());
    const [pa, pb] = [(await a!.started()).nlmPort as number, (await b!.started()).nlmPort as number];
    // Each node holds its address: wait until it serves it (no recorded hosts: no grace).
    for (const [d, addr] of [[a!, '10.77.1.2'], [b!, '10.77.2.2']] as const) {
      for (let i = 0; i < 100 && !status(d).addresses.some((s) => s.address === addr && s.present); i++) await new Promise((r) => setTimeout(r, 50));
    }
    const file = makeFile(shared.dir, 'data');
    const fh = knfsdHandle(file, 31);
    const x = await NlmClient.create({ server: { address: '10.77.1.2', port: pa }, transport: 'udp', vers: 4, callerName: 'client-x', source: '10.77.1.1' });
    const y = await NlmClient.create({ server: { address: '10.77.2.2', port: pb }, transport: 'udp', vers: 4, callerName: 'client-y', source: '10.77.2.1', callback: { rpcbind: true } });
    cleanups.push(() => x.close(), () => y.close());
    assert.equal((await x.lock({ fh, svid: 1, exclusive: true, offset: 0n, length: 100n })).status, 'granted', 'through node A');
    assert.equal((await y.lock({ fh, svid: 1, exclusive: true, offset: 50n, length: 10n })).status, 'denied', 'through node B: held on the file by A');
    assert.equal((await y.lock({ fh, svid: 1, exclusive: false, offset: 200n, length: 10n })).status, 'granted', 'a range A does not hold');
    assert.equal((await x.lock({ fh, svid: 1, exclusive: true, offset: 205n, length: 1n })).status, 'denied', 'through node A: held on the file by B');
    const t = await y.test({ fh, svid: 1, exclusive: true, offset: 0n, length: 10n });
    assert.deepEqual([t.status, t.holder?.svid, t.holder?.offset, t.holder?.length], ['denied', 0, 0n, 100n], 'B sees A\'s lock as held outside');
    assert.equal((await y.lock({ fh, svid: 2, exclusive: true, offset: 0n, length: 10n, block: true })).status, 'blocked');
    const granted = y.waitGranted({ svid: 2 }, 5_000);
    const drop = a!.ctl(['drop', '--ip', '10.77.1.2', '--json']);
    assert.equal(drop.code, 0, drop.stderr);
    assert.equal((JSON.parse(drop.stdout) as { locks: number }).locks, 1);
    await granted;
    assert.equal(status(b!).locks, 2, "B now holds y's waiter too");
    assert.equal((await x.lock({ fh, svid: 1, exclusive: false, offset: 0n, length: 1n })).status, 'denied', 'A sees B\'s new lock');
  });
});
