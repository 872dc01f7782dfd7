// Exports end to end: NLM locks over the wire on knfsd-style handles of several fsid types (kept in
// memory: these exports name no real files — test/files has the real-file ones);
// `lockdropctl drop --export` / `--fsid` release exactly that export's locks; the export policy
// refuses clients outside an export's networks and unprivileged ports on secure exports.
import assert from 'node:assert/strict';
import { NlmClient } from '../../src/nlm';
import type { LockView } from '../../src/control';
import { requireNamespaceRoot } from '../support/netns';
import { ensureBuilt, spawnDaemon, type DaemonProcess } from '../daemon/harness';

const UUID = '6f1c2a55-0b3e-4d2a-9c61-8e2f4b7d1a03';
const fileid = (ino: number) => Buffer.from(Uint32Array.of(ino, 7).buffer).toString('hex');
const handles = {
  // FSID_UUID16 (6): header 01 00 06 01, the 16-byte uuid, then the file id
  a: (ino: number) => Buffer.from(`01000601${UUID.replace(/-/g, '')}${fileid(ino)}`, 'hex'),
  // FSID_NUM (1): header 01 00 01 01, fsid 3 little-endian
  b: (ino: number) => Buffer.from(`0100010103000000${fileid(ino)}`, 'hex'),
  // FSID_DEV (0): header 01 00 00 01, htonl(8 << 16 | 17), root inode 2
  c: (ino: number) => Buffer.from(`0100000100080011${'02000000'}${fileid(ino)}`, 'hex'),
  // FSID_NUM fsid 4: the export only 10.0.0.0/8 may use
  d: (ino: number) => Buffer.from(`0100010104000000${fileid(ino)}`, 'hex'),
  // FSID_NUM fsid 5: a secure export
  e: (ino: number) => Buffer.from(`0100010105000000${fileid(ino)}`, 'hex'),
};

describe('exports: drop --export with knfsd handles, and the export policy', function () {
  this.timeout(60_000);
  let d: DaemonProcess;
  let port: number;
  const clients: NlmClient[] = [];
  const client = async (callerName: string, extra: { sourcePort?: number } = {}) => {
    const c = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'udp', vers: 4, callerName, ...extra });
    clients.push(c);
    return c;
  };
  const locks = (...args: string[]): LockView[] =>
    d.ctl(['locks', '--json', ...args]).stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as LockView);

  before(async function () {
    requireNamespaceRoot(this);
    ensureBuilt();
    d = spawnDaemon([], {
      config: {
        unknownHandles: 'deny',
        exports: [
          { path: '/srv/a', uuid: UUID, secure: false, fileLocks: false },
          { path: '/srv/b', fsid: 3, secure: false, fileLocks: false },
          { path: '/srv/c', dev: '8:17', secure: false, fileLocks: false },
          { path: '/srv/d', fsid: 4, clients: ['10.0.0.0/8'], secure: false, fileLocks: false },
          { path: '/srv/e', fsid: 5, clients: ['127.0.0.0/8'], fileLocks: false },
        ],
      },
    });
    port = (await d.started()).nlmPort as number;
  });
  after(async () => {
    for (const c of clients) await c.close();
    d?.cleanup();
  });

  it('maps every lock to its export and drops exactly one export', async () => {
    const x = await client('xray');
    const y = await client('yankee', {});
    for (const [i, c] of [x, y].entries()) {
      for (const e of ['a', 'b', 'c'] as const) {
        assert.equal((await c.lock({ fh: handles[e](100 + i), svid: 1, exclusive: true })).status, 'granted', `${e} ${i}`);
        assert.equal((await c.lock({ fh: handles[e](200), svid: 2, exclusive: false, offset: BigInt(i * 10), length: 5n })).status, 'granted');
      }
    }
    // A waiter on /srv/b, blocked behind yankee's lock there: untouched by dropping /srv/a.
    assert.equal((await x.lock({ fh: handles.b(101), svid: 3, exclusive: true, block: true })).status, 'blocked');
    const byExport = (l: LockView[]) => Object.fromEntries(['/srv/a', '/srv/b', '/srv/c'].map((p) => [p, l.filter((v) => v.export === p).length]));
    assert.deepEqual(byExport(locks()), { '/srv/a': 4, '/srv/b': 4, '/srv/c': 4 });

    const drop = d.ctl(['drop', '--export', '/srv/a', '--json']);
    assert.equal(drop.code, 0, drop.stderr);
    const r = JSON.parse(drop.stdout) as { locks: number; clients: number; blocked: number };
    assert.deepEqual([r.locks, r.clients, r.blocked], [4, 2, 0]);
    assert.deepEqual(byExport(locks()), { '/srv/a': 0, '/srv/b': 4, '/srv/c': 4 });
    assert.equal(JSON.parse(d.ctl(['status', '--json']).stdout).blocked, 1, 'the /srv/b waiter still waits');

    const fsid = JSON.parse(d.ctl(['drop', '--fsid', '3', '--json']).stdout) as { target: string; locks: number; blocked: number };
    assert.deepEqual([fsid.target, fsid.locks, fsid.blocked], ['export /srv/b', 4, 1]);
    assert.deepEqual(byExport(locks()), { '/srv/a': 0, '/srv/b': 0, '/srv/c': 4 });
    assert.equal(locks('--export', '/srv/c').length, 4);
    assert.match(d.ctl(['drop', '--export', '/srv/nowhere']).stderr, /no export \/srv\/nowhere is configured/);
  });

  it('refuses clients outside the export networks, unprivileged ports on secure exports, unknown handles', async () => {
    const c = await client('zulu');
    assert.equal((await c.lock({ fh: handles.d(1), svid: 1, exclusive: true })).status, 'failed', '127.0.0.1 is not in 10.0.0.0/8');
    assert.equal((await c.lock({ fh: handles.e(1), svid: 1, exclusive: true })).status, 'failed', 'unprivileged source port');
    assert.equal((await c.lock({ fh: Buffer.from('deadbeef', 'hex'), svid: 1, exclusive: true })).status, 'stale_fh', 'no export: as knfsd answers a handle of no export');
    const privileged = await client('zulu', { sourcePort: 811 });
    assert.equal((await privileged.lock({ fh: handles.e(1), svid: 1, exclusive: true })).status, 'granted');
    assert.equal(locks('--export', '/srv/d').length, 0);
  });
});
