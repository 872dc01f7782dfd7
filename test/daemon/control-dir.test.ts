// The control socket's folder must be lockdropd's own: a 0700 folder owned by another user, or a
// symlink to one, would let that user replace the socket lockdropctl and `check` talk to, so
// lockdropd refuses to start (exit 1, naming the folder) rather than listen there.
import assert from 'node:assert/strict';
import { chownSync, mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { requireNamespaceRoot } from '../support/netns';
import { daemonDir, ensureBuilt, spawnDaemon, type DaemonProcess } from './harness';

/** The exit code, or 'started' (then stopped) when it served there. */
const outcome = async (d: DaemonProcess): Promise<number | 'started'> => {
  const r = await Promise.race([d.exited, d.started().then(() => 'started' as const, () => -1)]);
  d.cleanup();
  return r;
};

describe('daemon: the control socket folder is trusted only when it is ours', function () {
  this.timeout(30_000);
  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });

  it('refuses a 0700 folder owned by another user, and a symlink to one', async () => {
    const dir = daemonDir();
    const theirs = path.join(dir, 'theirs');
    mkdirSync(theirs, { mode: 0o700 });
    chownSync(theirs, 65534, 65534);
    const owned = spawnDaemon(['--control', path.join(theirs, 'control.sock')], { dir });
    assert.equal(await outcome(owned), 1);
    assert.match(owned.stderr, new RegExp(`control socket directory ${theirs} is owned by uid 65534`));
    const dir2 = daemonDir();
    const link = path.join(dir2, 'link');
    const ours = path.join(dir2, 'ours');
    mkdirSync(ours, { mode: 0o700 });
    symlinkSync(ours, link);
    const linked = spawnDaemon(['--control', path.join(link, 'control.sock')], { dir: dir2 });
    assert.equal(await outcome(linked), 1);
    assert.match(linked.stderr, new RegExp(`control socket directory ${link} is a symlink`));
  });
});
