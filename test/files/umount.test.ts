// An export with no held lock and no pending wait pins nothing: resource-agents' real Filesystem
// agent stops (unmounts) a loop-mounted ext4 while lockdropd runs, on its first umount — with its
// default force_unmount it would otherwise SIGTERM lockdropd, losing every lock of every address.
// Mounted again under the same path, the export locks again.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { NlmClient } from '../../src/nlm';
import { sh } from '../support/netns';
import { daemonSuite, spawnDaemon, type DaemonProcess } from '../daemon/harness';
import { knfsdHandle, makeFile, mountExt4 } from './support';

const AGENT = '/usr/lib/ocf/resource.d/heartbeat/Filesystem';

describe('files: an idle export does not keep its filesystem mounted', function () {
  this.timeout(60_000);
  const cleanups = daemonSuite();

  it("resource-agents' Filesystem stop unmounts it at its first try, lockdropd untouched; mounted again, it locks again", async () => {
    const fs = mountExt4();
    const image = join(dirname(fs.dir), 'fs.img');
    let mounted = true;
    cleanups.push(() => (mounted ? fs.dispose() : rmSync(dirname(fs.dir), { recursive: true, force: true })));
    // The agent insists on modprobe (to load the filesystem's module), which this machine lacks: ext4 is loaded.
    const bin = mkdtempSync(join(tmpdir(), 'lockdrop-bin-'));
    cleanups.push(() => rmSync(bin, { recursive: true, force: true }));
    writeFileSync(join(bin, 'modprobe'), '#!/bin/sh\nexit 0\n');
    chmodSync(join(bin, 'modprobe'), 0o755);
    const agent = (action: string) => spawnSync(AGENT, [action], {
      encoding: 'utf8',
      timeout: 30_000,
      env: {
        ...process.env, PATH: `${bin}:${process.env.PATH}`, OCF_ROOT: '/usr/lib/ocf', OCF_RESKEY_fstype: 'ext4', OCF_RESKEY_CRM_meta_timeout: '6000',
        OCF_RESKEY_directory: fs.dir, OCF_RESKEY_device: sh('findmnt', ['-n', '-o', 'SOURCE', '--mountpoint', fs.dir]).trim(),
      },
    });
    const stopsAtOnce = (): void => {
      const stop = agent('stop');
      assert.equal(stop.status, 0, stop.stderr);
      mounted = false;
      assert.doesNotMatch(stop.stderr, /sending signal|Couldn't unmount/, 'unmounted at the first try, nobody signalled');
      assert.equal(d.child.exitCode, null, 'lockdropd still runs');
      assert.equal(d.child.signalCode, null);
    };

    const d: DaemonProcess = spawnDaemon([], { config: { exports: [{ path: fs.dir, fsid: 31, secure: false, rootSquash: false }] } });
    cleanups.push(() => d.cleanup());
    const port = (await d.started()).nlmPort as number;
    const c = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'tcp', vers: 4, callerName: 'umount-client' });
    cleanups.push(() => c.close());
    const fh = knfsdHandle(makeFile(fs.dir, 'data'), 31);
    assert.equal((await c.lock({ fh, svid: 1, exclusive: true })).status, 'granted');
    assert.throws(() => sh('umount', [fs.dir]), /busy/i, 'a held lock keeps the filesystem busy');
    // The address leaves (as IPaddr2 stop makes it): its locks are dropped, and the filesystem is free at once.
    assert.equal(d.ctl(['drop', '--ip', '127.0.0.1']).code, 0);
    stopsAtOnce();

    // The same filesystem mounted again under the same path (a new loop device): its files lock again.
    sh('mount', ['-o', 'loop', image, fs.dir]);
    mounted = true;
    assert.equal((await c.lock({ fh, svid: 1, exclusive: true })).status, 'granted', 'the handle of before names the file again');
    const other = knfsdHandle(makeFile(fs.dir, 'new'), 31);
    assert.equal((await c.lock({ fh: other, svid: 1, exclusive: false })).status, 'granted');
    assert.equal((await c.test({ fh, svid: 2, exclusive: true })).status, 'denied');
    // Unlocked by the client: the export's root closes a moment after its last lock (100 ms).
    assert.equal((await c.unlock({ fh, svid: 1 })).status, 'granted');
    assert.equal((await c.unlock({ fh: other, svid: 1 })).status, 'granted');
    await new Promise((resolve) => setTimeout(resolve, 300));
    stopsAtOnce();
  });
});
