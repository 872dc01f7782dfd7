// `exportsFrom: knfsd` with Debian's own exportfs: lockdropd serves what exportfs writes to etab
// (no nfsd needed: without /proc/fs/nfsd mounted exportfs only rewrites etab), names an export
// without fsid= by its filesystem's uuid as knfsd's handles do, serves an export added later,
// and on `exportfs -u` drops the export's locks and closes its files, so that `umount` succeeds
// right after — the seed thread's first proposal, tied to exportfs at last.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { nameToHandle } from '../../src/addon/files';
import type { ExportView, LockView } from '../../src/control';
import { uuidBytes } from '../../src/exports';
import { NlmClient } from '../../src/nlm';
import { hasCommand, sh, skipBecause } from '../support/netns';
import { daemonSuite, listing, spawnDaemon, type DaemonProcess } from '../daemon/harness';
import { knfsdHandle, makeFile, mountExt4, mountTmpfs } from '../files/support';

/** knfsd's handle of a file on a filesystem's root export named by uuid (FSID_UUID16, fh_fileid_type = the kernel handle's type). */
function uuidHandle(path: string, uuid: string): Buffer {
  const k = nameToHandle(path);
  return Buffer.concat([Buffer.from([1, 0, 6, k.type]), uuidBytes(uuid), k.handle]);
}

async function until<T>(what: string, f: () => T | undefined, ms = 5_000): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  for (;;) {
    const v = f();
    if (v !== undefined) return { value: v, ms: Date.now() - start };
    if (Date.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('exports: following knfsd (exportfs, etab) end to end', function () {
  this.timeout(60_000);
  const cleanups = daemonSuite();
  let d: DaemonProcess;
  let c: NlmClient;

  before(async function () {
    if (!hasCommand('exportfs')) skipBecause(this, 'exportfs missing (nfs-kernel-server: scripts/setup.sh installs it)');
    // etab in this test's private mount namespace only: the machine's stays as it is.
    mkdirSync('/var/lib/nfs', { recursive: true });
    sh('mount', ['-t', 'tmpfs', 'lockdrop-nfs-state', '/var/lib/nfs']);
    cleanups.push(() => sh('umount', ['/var/lib/nfs']));
    writeFileSync('/var/lib/nfs/etab', '');
  });

  const locks = (): LockView[] => listing<LockView>(d.ctl(['locks', '--json']).stdout);

  it('serves an export exportfs added, named by the uuid knfsd puts in its handles; exportfs -u frees its filesystem at once', async () => {
    const fs = mountExt4();
    let mounted = true;
    cleanups.push(() => mounted && fs.dispose());
    const blkidUuid = execFileSync('blkid', ['-o', 'value', '-s', 'UUID', fs.device], { encoding: 'utf8' }).trim();
    sh('exportfs', ['-o', 'rw,insecure,no_root_squash,no_subtree_check', `127.0.0.1:${fs.dir}`]);
    // The configuration names another path; its own exports stay served beside knfsd's.
    const mem = mountTmpfs();
    cleanups.push(() => mem.dispose());
    d = spawnDaemon([], { config: { exportsFrom: 'knfsd', exports: [{ path: mem.dir, fsid: 90, secure: false, rootSquash: false }] } });
    cleanups.push(() => d.cleanup());
    const port = (await d.started()).nlmPort as number;
    c = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'tcp', vers: 4, callerName: 'follow-client' });
    cleanups.push(() => c.close());

    assert.deepEqual(listing<ExportView>(d.ctl(['exports', '--json']).stdout).map((e) => [e.path, e.from]), [[mem.dir, 'config'], [fs.dir, 'knfsd']]);
    const followed = listing<ExportView>(d.ctl(['exports', '--json']).stdout)[1]!;
    assert.equal(followed.uuid, blkidUuid.replace(/-/g, ''), "the filesystem's blkid uuid, as mountd hands it to knfsd");
    assert.deepEqual([followed.clients, followed.secure, followed.fsRoot], [['127.0.0.1'], false, true]);
    assert.match(d.ctl(['exports']).stdout, /following knfsd's \/var\/lib\/nfs\/etab/);

    const fh = uuidHandle(makeFile(fs.dir, 'data'), blkidUuid);
    assert.equal((await c.lock({ fh, svid: 1, exclusive: true })).status, 'granted');
    assert.equal(locks()[0]!.export, fs.dir);
    assert.throws(() => sh('umount', [fs.dir]), /busy/i, 'a held lock keeps the filesystem busy');

    const t0 = Date.now();
    sh('exportfs', ['-u', `127.0.0.1:${fs.dir}`]);
    const line = await d.waitLog((l) => /exports from knfsd .*removed/.test(l.msg));
    assert.deepEqual(locks(), []);
    sh('umount', [fs.dir]); // at the first try: nothing of it is open any more
    mounted = false;
    console.log(`      exportfs -u → its locks dropped and files closed ${(typeof line.time === "string" ? Date.parse(line.time) : (line.time as number)) - t0} ms after exportfs started (inotify on etab)`);
    assert.equal(d.child.exitCode, null);
  });

  it('an export added later is served; its handles by fsid= lock on its files', async () => {
    const t = mountTmpfs();
    cleanups.push(() => t.dispose());
    const fh = knfsdHandle(makeFile(t.dir, 'f'), 31);
    assert.equal((await c.lock({ fh, svid: 2, exclusive: true })).status, 'stale_fh', 'a handle of no export, while exports are configured');
    sh('exportfs', ['-o', 'rw,fsid=31,insecure,no_root_squash,no_subtree_check', `*:${t.dir}`]);
    await until('the new export served', () => (listing<{ path: string }>(d.ctl(['exports', '--json']).stdout).some((e) => e.path === t.dir) ? true : undefined));
    assert.equal((await c.lock({ fh, svid: 2, exclusive: true })).status, 'granted');
    assert.equal(locks().find((l) => l.svid === 2)?.export, t.dir);
    // On the file: a local OFD lock test sees lockdrop's lock (through /proc/locks, the kernel's view).
    assert.match(execFileSync('cat', ['/proc/locks'], { encoding: 'utf8' }), /OFDLCK\s+ADVISORY\s+WRITE/);
    sh('exportfs', ['-u', `*:${t.dir}`]);
    await until('its lock dropped', () => (locks().some((l) => l.svid === 2) ? undefined : true));
  });

  it('a table that cannot be read keeps the exports served before', async () => {
    const t = mountTmpfs();
    cleanups.push(() => t.dispose());
    sh('exportfs', ['-o', 'rw,fsid=32,insecure,no_root_squash,no_subtree_check', `*:${t.dir}`]);
    await until('served', () => (listing<{ path: string }>(d.ctl(['exports', '--json']).stdout).some((e) => e.path === t.dir) ? true : undefined));
    // Written as exportfs writes (a new file renamed over etab): a reader never sees it half-written.
    writeFileSync('/var/lib/nfs/etab.tmp', 'this is not etab\n');
    renameSync('/var/lib/nfs/etab.tmp', '/var/lib/nfs/etab');
    await until('the failure seen', () => (/last look failed/.test(d.ctl(['exports']).stdout) ? true : undefined));
    assert.ok(listing<{ path: string }>(d.ctl(['exports', '--json']).stdout).some((e) => e.path === t.dir));
    sh('exportfs', ['-ua']);
    await until('unexported', () => (listing<{ path: string }>(d.ctl(['exports', '--json']).stdout).some((e) => e.path === t.dir) ? undefined : true));
  });
});
