// `lockdropctl locks --file PATH` answers who holds a file, whatever handle each client named it
// by (a real export on tmpfs); `--fh` by the wire handle; `lockdropctl log-level` changes the
// daemon's level at run time.
import assert from 'node:assert/strict';
import { NlmClient } from '../../src/nlm';
import type { LockView } from '../../src/control';
import { requireNamespaceRoot } from '../support/netns';
import { ensureBuilt, listing, spawnDaemon, type DaemonProcess } from '../daemon/harness';
import { knfsdHandle, makeFile, mountTmpfs, type Mounted } from '../files/support';

describe('cli: who holds this file; the log level at run time', function () {
  this.timeout(60_000);
  let m: Mounted | undefined;
  let d: DaemonProcess | undefined;
  let c: NlmClient | undefined;

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });
  after(async () => {
    await c?.close();
    d?.cleanup();
    m?.dispose();
  });

  it('locks --file and --fh list the holders of one file only; a path outside every export is an error', async () => {
    m = mountTmpfs();
    const one = makeFile(m.dir, 'one');
    const two = makeFile(m.dir, 'two');
    d = spawnDaemon([], { config: { exports: [{ path: m.dir, fsid: 31, secure: false, rootSquash: false }] } });
    const port = (await d.started()).nlmPort as number;
    c = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'tcp', vers: 4, callerName: 'holder' });
    assert.equal((await c.lock({ fh: knfsdHandle(one, 31), svid: 1, exclusive: true, offset: 0n, length: 10n })).status, 'granted');
    assert.equal((await c.lock({ fh: knfsdHandle(one, 31), svid: 2, exclusive: false, offset: 20n, length: 10n })).status, 'granted');
    assert.equal((await c.lock({ fh: knfsdHandle(two, 31), svid: 3, exclusive: true })).status, 'granted');
    const r = d.ctl(['locks', '--file', one, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const held = listing<LockView>(r.stdout);
    assert.deepEqual(held.map((l) => l.svid).sort(), [1, 2]);
    const byFh = listing<LockView>(d.ctl(['locks', '--fh', knfsdHandle(two, 31).toString('hex').toUpperCase(), '--json']).stdout);
    assert.deepEqual(byFh.map((l) => l.svid), [3]);
    const outside = d.ctl(['locks', '--file', '/etc/hostname']);
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /\/etc\/hostname is in no configured export/);
  });

  it('log-level takes effect at once and says what it replaced; a bad level is a usage error', async () => {
    const r = d!.ctl(['log-level', 'warn', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { level: 'warn', previous: 'info' });
    const mark = d!.logs.length;
    assert.equal(d!.ctl(['drop', '--client', 'holder']).code, 0);
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(d!.logs.slice(mark).filter((l) => l.level < 40).map((l) => l.msg), [], 'no info line at warn');
    assert.equal(d!.ctl(['log-level', 'info']).code, 0);
    assert.equal((await c!.lock({ fh: knfsdHandle(makeFile(m!.dir, 'three'), 31), svid: 4, exclusive: true })).status, 'granted');
    assert.equal(d!.ctl(['drop', '--client', 'holder']).code, 0);
    await d!.waitLog((l) => l.level === 30 && /dropped 1 lock/.test(l.msg) && d!.logs.indexOf(l) > mark);
    assert.equal(d!.ctl(['log-level', 'chatty']).code, 64);
  });
});
